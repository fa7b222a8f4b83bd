import { INestApplication, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { formatAddress, SpoeServer } from 'nestjs-spoe';
import { AddressInfo } from 'node:net';
import { warnOfOpenAdminApi } from './admin/admin-access.guard';
import { AppModule, AppOptions } from './app.module';
import { AGENT_LIMITS, AgentSettings } from './config/agent.config';
import { Lifecycle } from './health/lifecycle';
import { useAgentLogger } from './logging/agent-logging';
import { TlsReloader } from './tls/tls-reloader';

/** A started agent. */
export interface Agent {
  readonly app: INestApplication;
  readonly spoe: SpoeServer;
  /** Base URL of the HTTP side, e.g. `http://127.0.0.1:3000`. */
  readonly httpUrl: string;
  /**
   * The graceful shutdown: readiness turns 503 at once, SPOE keeps serving for SHUTDOWN_GRACE_MS (cut short by
   * {@link Agent.hurry}), then `app.close()` closes HTTP and drains the transport (`SpoeServer.close()`). What Nest's
   * shutdown hooks run on a signal.
   */
  shutdown(signal: string): Promise<void>;
  /** Ends the grace period now (a second signal). */
  hurry(): void;
  /**
   * Reads the TLS files again for new connections (SIGHUP; see TlsReloader), or says there is nothing to reload;
   * whether the files are now in use.
   */
  reloadTls(signal: string): boolean;
}

/**
 * Starts the hybrid app: modules initialised first (the Redis store connects and loads, or startup fails), then the
 * SPOE transport, then HTTP — so that once HTTP answers, readiness can tell the truth about everything else. With
 * `options.supervisor`, the app is a worker of `superviseWorkers`.
 */
export async function startAgent(options: AppOptions = {}): Promise<Agent> {
  const log = new Logger('Agent');
  // Logs wait for the logger that LOG_LEVEL and LOG_FORMAT configure.
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(options), {
    bufferLogs: true,
    abortOnError: false,
    bodyParser: false,
  });
  try {
    // JSON bodies only, and small ones (AGENT_LIMITS): 413 beyond, 400 for malformed JSON (body-parser's errors,
    // through Nest's exception handler). Nest's default parsers read 100 KB, and urlencoded bodies too: what an HTML
    // form on any web page can POST to the admin API on loopback, where JSON needs a CORS preflight it never grants.
    app.useBodyParser('json', { limit: AGENT_LIMITS.maxHttpBodyBytes });
    const config = app.get<ConfigService<AgentSettings, true>>(ConfigService).get('agent', { infer: true });
    useAgentLogger(app, config);
    const spoe = app.get(SpoeServer);
    app.connectMicroservice({ strategy: spoe }, { inheritAppConfig: true });
    await app.init();
    await app.startAllMicroservices();
    await app.listen(config.http.port, config.http.host);
    const httpUrl = urlOf(app.getHttpServer().address() as AddressInfo);
    const tls = spoe.tls ? `, SPOE over ${spoe.tls.requestCert ? 'mutual TLS' : 'TLS'}` : '';
    log.log(
      `ready: SPOE on ${formatAddress(spoe.address)}, HTTP on ${httpUrl}, blocklist ${config.redis ? 'in Redis' : 'in memory'}${tls}`,
    );
    // Under a supervisor, it says so once for all its workers.
    if (!options.supervisor) warnOfOpenAdminApi(config, log);

    const lifecycle = app.get(Lifecycle);
    const reloader = app.get(TlsReloader);
    return {
      app,
      spoe,
      httpUrl,
      shutdown: (signal) => {
        void lifecycle.beginShutdown(signal);
        return app.close();
      },
      hurry: () => lifecycle.hurry(),
      reloadTls: (signal) => reloader.reload(signal),
    };
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
}

function urlOf(address: AddressInfo): string {
  const host = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}
