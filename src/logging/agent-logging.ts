import { DynamicModule, INestApplication, LoggerService, LogLevel } from '@nestjs/common';
import { spoeLogFields } from 'nestjs-spoe';
import { LoggerModule, Params, PinoLogger, Logger as PinoNestLogger } from 'nestjs-pino';
import type { IncomingMessage } from 'node:http';
import type { DestinationStream, Level } from 'pino';
import type { AgentConfig } from '../config/agent.config';

/** pino's level for each of Nest's: the method nestjs-pino's Logger calls for it. */
const PINO_LEVELS = {
  fatal: 'fatal',
  error: 'error',
  warn: 'warn',
  log: 'info',
  debug: 'debug',
  verbose: 'trace',
} as const satisfies Record<LogLevel, Level>;

/** Routes that probes and scrapers call every few seconds: no line per request, even at debug. */
const PROBE_PATH = /^\/(health|metrics)(\/|\?|$)/;

/**
 * nestjs-pino's LoggerModule for LOG_FORMAT=json (none for text: Nest's console logger). Every line about an SPOE
 * message carries it (spoeLogFields, through the `messageContext` the config turns on with json); a line per HTTP
 * request is written at debug, never for the probes, so normal traffic writes nothing at the default level.
 * `destination` replaces stdout (the tests read the lines there).
 */
export function agentLoggerImports(config: AgentConfig, destination?: DestinationStream): DynamicModule[] {
  return config.logFormat === 'json' ? [LoggerModule.forRoot(pinoParams(config, destination))] : [];
}

/** Makes the app's logger the one LOG_FORMAT and LOG_LEVEL ask for; the app's and the library's Logger calls use it. */
export function useAgentLogger(app: INestApplication, config: AgentConfig): void {
  app.useLogger(config.logFormat === 'json' ? app.get(PinoNestLogger) : config.logLevels);
}

/**
 * What the supervisor of SPOE_WORKERS > 1 logs through (`Logger.overrideLogger`): it is not a Nest app, so with json it
 * gets nestjs-pino's logger built by hand, to write the same lines as its workers on the same stdout.
 */
export function supervisorLogger(config: AgentConfig): LoggerService | LogLevel[] {
  if (config.logFormat !== 'json') return config.logLevels;
  const params = pinoParams(config);
  return new PinoNestLogger(new PinoLogger(params), params);
}

function pinoParams(config: AgentConfig, destination?: DestinationStream): Params {
  // logLevels ends with LOG_LEVEL itself; pino drops what is less severe.
  const level = PINO_LEVELS[config.logLevels[config.logLevels.length - 1]];
  return {
    pinoHttp: {
      level,
      mixin: () => spoeLogFields() ?? {},
      useLevel: 'debug',
      autoLogging: { ignore: (request: IncomingMessage) => PROBE_PATH.test(request.url ?? '') },
      // The request line shows the headers: never the admin API's bearer token.
      redact: ['req.headers.authorization'],
      ...(destination && { stream: destination }),
    },
  };
}
