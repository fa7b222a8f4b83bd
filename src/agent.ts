import { INestApplication, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SpoeServer } from 'nestjs-spoe';
import { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppModule } from './app.module';
import { SupervisorLink } from './cluster/worker';
import { AgentConfig } from './config/agent.config';
import { Lifecycle } from './health/lifecycle';

/** A started agent. */
export interface Agent {
  readonly app: INestApplication;
  readonly spoe: SpoeServer;
  /** Base URL of the HTTP side, e.g. `http://127.0.0.1:3000`. */
  readonly httpUrl: string;
  /**
   * The SIGTERM sequence: readiness turns 503 at once, SPOE keeps serving for `shutdownGraceMs` (cut short by
   * {@link Agent.hurry}), then `app.close()` closes HTTP and drains the transport (`SpoeServer.close()`).
   */
  shutdown(signal: string): Promise<void>;
  /** Ends the grace period now (a second signal). */
  hurry(): void;
}

/**
 * Starts the hybrid app: modules initialised first (the Redis store connects and loads, or startup fails), then the
 * SPOE transport, then HTTP — so that once HTTP answers, readiness can tell the truth about everything else. With
 * `supervisor`, the app is a worker of `superviseWorkers` (see AppModule.forRoot).
 */
export async function startAgent(config: AgentConfig, supervisor?: SupervisorLink): Promise<Agent> {
  const log = new Logger('Agent');
  const app = await NestFactory.create(AppModule.forRoot(config, supervisor), { logger: config.logLevels, abortOnError: false });
  try {
    const spoe = app.get(SpoeServer);
    app.connectMicroservice({ strategy: spoe }, { inheritAppConfig: true });
    await app.init();
    await app.startAllMicroservices();
    await app.listen(config.http.port, config.http.host);
    const httpUrl = urlOf(app.getHttpServer().address() as AddressInfo);
    log.log(`ready: SPOE on ${describe(spoe.address)}, HTTP on ${httpUrl}, blocklist ${config.redisUrl ? 'in Redis' : 'in memory'}`);

    const lifecycle = app.get(Lifecycle);
    const hurry = new AbortController();
    let shutdown: Promise<void> | undefined;
    return {
      app,
      spoe,
      httpUrl,
      shutdown(signal) {
        return (shutdown ??= (async () => {
          lifecycle.beginShutdown(signal);
          await sleep(config.shutdownGraceMs, undefined, { signal: hurry.signal }).catch(() => undefined);
          log.log('grace period over: draining SPOE connections and closing');
          await app.close();
        })());
      },
      hurry: () => hurry.abort(),
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

function describe(address: AddressInfo | string | undefined): string {
  if (typeof address === 'string') return `unix:${address}`;
  return address ? `${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}` : 'nowhere';
}
