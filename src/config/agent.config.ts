import type { LogLevel } from '@nestjs/common';
import { availableParallelism } from 'node:os';
import { normalizeSpoeOptions, SpoeOptionsError, SpoeServerOptions, VarScope } from 'nestjs-spoe';
import { Cidr } from '../reputation/cidr';

/** Injection token of the {@link AgentConfig}. */
export const AGENT_CONFIG = Symbol('AGENT_CONFIG');

/** Everything the agent reads from its environment, validated. */
export interface AgentConfig {
  /** Options of the SPOE transport (listen address and limits). */
  readonly spoe: SpoeServerOptions;
  /** Where the HTTP side (health, admin API) listens. */
  readonly http: { readonly host: string; readonly port: number };
  /** Redis connection URL; undefined selects the in-memory blocklist. */
  readonly redisUrl: string | undefined;
  /** Nest logger levels enabled by LOG_LEVEL (that level and the more severe ones). */
  readonly logLevels: LogLevel[];
  /** After SIGTERM, how long readiness reports 503 while SPOE keeps serving, before the drain starts. */
  readonly shutdownGraceMs: number;
  /** Blocklist entries present when the store starts empty (the Redis store seeds them once). */
  readonly defaultBlocklist: readonly Cidr[];
  /** Bound on the active SPOE probe and the Redis PING of the readiness check. */
  readonly healthTimeoutMs: number;
  /** Agent processes on this host: 1 is a single process; more are workers of a supervisor (src/cluster). */
  readonly workers: number;
}

/** The agent's environment variables, their defaults and what they do (the README's configuration reference). */
export const AGENT_ENV = {
  SPOE_HOST: { default: '0.0.0.0', doc: 'Address the SPOE transport listens on.' },
  SPOE_PORT: { default: '12345', doc: 'TCP port of the SPOE transport (0 picks a free one).' },
  SPOE_SOCKET: { default: undefined, doc: 'Unix socket path; when set, SPOE listens there instead of SPOE_HOST:SPOE_PORT.' },
  SPOE_MAX_FRAME_SIZE: { default: '16380', doc: "The agent's max-frame-size (the smaller of it and HAProxy's is used)." },
  SPOE_MAX_IN_FLIGHT: { default: '64', doc: 'NOTIFY frames handled at once per HAProxy connection.' },
  SPOE_HANDLER_DEADLINE_MS: { default: '1000', doc: 'Deadline of each message handler.' },
  SPOE_HELLO_TIMEOUT_MS: { default: '5000', doc: 'Connections that do not complete the HELLO within it are closed.' },
  SPOE_IDLE_TIMEOUT_MS: { default: '300000', doc: 'Idle connections are closed after it (0: never).' },
  SPOE_DRAIN_TIMEOUT_MS: { default: '5000', doc: 'On shutdown, how long in-flight NOTIFY may still finish.' },
  HTTP_HOST: { default: '0.0.0.0', doc: 'Address of the HTTP side (health routes, admin API).' },
  HTTP_PORT: { default: '3000', doc: 'Port of the HTTP side (0 picks a free one).' },
  REDIS_URL: { default: undefined, doc: 'redis:// or rediss:// URL: the blocklist is kept in Redis and shared by every agent. Unset: in memory.' },
  LOG_LEVEL: { default: 'log', doc: 'fatal, error, warn, log, debug or verbose.' },
  SHUTDOWN_GRACE_MS: { default: '5000', doc: 'After SIGTERM, readiness is 503 and SPOE keeps serving this long before draining.' },
  BLOCKLIST: { default: '10.0.0.0/8', doc: 'Comma-separated IPs/CIDRs blocked when the store starts empty ("" for none).' },
  HEALTH_TIMEOUT_MS: { default: '1000', doc: 'Bound on the SPOE health-check HELLO and the Redis PING of /health/ready.' },
  SPOE_WORKERS: { default: '1', doc: 'Agent processes sharing the SPOE and HTTP ports: an integer, or auto (one per CPU). Above 1, a supervisor runs them.' },
} as const satisfies Record<string, { default: string | undefined; doc: string }>;

export type AgentEnvName = keyof typeof AGENT_ENV;

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];
const MAX_WORKERS = 1024;

/** The variable the transport sets when a handler fails: `txn.<var-prefix>.agent_error` in HAProxy. */
export const AGENT_ERROR_VARIABLE = { scope: VarScope.Transaction, name: 'agent_error' } as const;

/** Every problem found in the environment, one per line. */
export class AgentConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'AgentConfigError';
  }
}

/** Reads and validates the environment; throws {@link AgentConfigError} listing every problem at once. */
export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const problems: string[] = [];
  const raw = (name: AgentEnvName): string | undefined => env[name] ?? AGENT_ENV[name].default;
  const int = (name: AgentEnvName, min: number, max: number): number => {
    const text = raw(name)!.trim();
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < min || value > max) {
      problems.push(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(env[name])}`);
      return Number(AGENT_ENV[name].default);
    }
    return value;
  };
  const text = (name: AgentEnvName): string => {
    const value = raw(name)!.trim();
    if (value.length === 0) problems.push(`${name} must not be empty`);
    return value;
  };

  const socket = env.SPOE_SOCKET?.trim() || undefined;
  const spoe: SpoeServerOptions = {
    host: text('SPOE_HOST'),
    port: int('SPOE_PORT', 0, 65535),
    ...(socket !== undefined && { path: socket }),
    maxFrameSize: int('SPOE_MAX_FRAME_SIZE', 256, 0xffffffff),
    maxInFlightPerConnection: int('SPOE_MAX_IN_FLIGHT', 1, 1_000_000),
    handlerDeadlineMs: int('SPOE_HANDLER_DEADLINE_MS', 1, 0x7fffffff),
    helloTimeoutMs: int('SPOE_HELLO_TIMEOUT_MS', 1, 0x7fffffff),
    idleTimeoutMs: int('SPOE_IDLE_TIMEOUT_MS', 0, 0x7fffffff),
    drainTimeoutMs: int('SPOE_DRAIN_TIMEOUT_MS', 0, 0x7fffffff),
    errorVariable: AGENT_ERROR_VARIABLE,
  };
  if (problems.length === 0) {
    try {
      normalizeSpoeOptions(spoe);
    } catch (error) {
      if (!(error instanceof SpoeOptionsError)) throw error;
      problems.push(error.message);
    }
  }

  const http = { host: text('HTTP_HOST'), port: int('HTTP_PORT', 0, 65535) };
  if (socket === undefined && http.port !== 0 && http.port === spoe.port && http.host === spoe.host) {
    problems.push(`HTTP_PORT and SPOE_PORT are both ${http.port}: the HTTP side and the SPOE transport need their own ports`);
  }

  const redisUrl = env.REDIS_URL?.trim() || undefined;
  if (redisUrl !== undefined) {
    let protocol: string | undefined;
    try {
      protocol = new URL(redisUrl).protocol;
    } catch {
      protocol = undefined;
    }
    if (protocol !== 'redis:' && protocol !== 'rediss:') problems.push(`REDIS_URL must be a redis:// or rediss:// URL, got ${JSON.stringify(redactUrl(redisUrl))}`);
  }

  const level = raw('LOG_LEVEL')!.trim().toLowerCase() as LogLevel;
  const levelIndex = LOG_LEVELS.indexOf(level);
  if (levelIndex < 0) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(env.LOG_LEVEL)}`);

  const defaultBlocklist: Cidr[] = [];
  for (const item of raw('BLOCKLIST')!.split(',')) {
    const entry = item.trim();
    if (entry.length === 0) continue;
    try {
      defaultBlocklist.push(Cidr.parse(entry));
    } catch (error) {
      problems.push(`BLOCKLIST: ${(error as Error).message}`);
    }
  }

  const workersText = raw('SPOE_WORKERS')!.trim().toLowerCase();
  let workers = 1;
  if (workersText === 'auto') workers = availableParallelism();
  else if (/^\d+$/.test(workersText) && Number(workersText) >= 1 && Number(workersText) <= MAX_WORKERS) workers = Number(workersText);
  else problems.push(`SPOE_WORKERS must be "auto" or an integer in [1, ${MAX_WORKERS}], got ${JSON.stringify(env.SPOE_WORKERS)}`);

  const config: AgentConfig = {
    spoe,
    http,
    redisUrl,
    logLevels: LOG_LEVELS.slice(0, Math.max(levelIndex, 0) + 1) as LogLevel[],
    shutdownGraceMs: int('SHUTDOWN_GRACE_MS', 0, 0x7fffffff),
    defaultBlocklist,
    healthTimeoutMs: int('HEALTH_TIMEOUT_MS', 1, 0x7fffffff),
    workers,
  };
  if (problems.length > 0) throw new AgentConfigError(problems);
  return config;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}
