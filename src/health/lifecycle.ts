import { BeforeApplicationShutdown, Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { SpoeServer } from 'nestjs-spoe';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentSettings } from '../config/agent.config';

/**
 * Whether the agent still wants traffic, and its grace period. A shutdown caused by a signal (Nest's shutdown hooks,
 * or {@link beginShutdown} before `app.close()`) stops wanting traffic at once — readiness turns 503 so that load
 * balancers route new work elsewhere — while SPOE keeps serving for SHUTDOWN_GRACE_MS, or until {@link hurry}; only
 * then does Nest close HTTP and drain the transport. `app.close()` alone closes at once.
 *
 * Terminus' own grace period (`gracefulShutdownTimeoutMs`) does not fit: it waits on SIGTERM only, cannot be cut
 * short by a second signal, and turns liveness 503 as well.
 */
@Injectable()
export class Lifecycle implements BeforeApplicationShutdown {
  private readonly log = new Logger(Lifecycle.name);
  private readonly graceMs: number;
  private readonly hurried = new AbortController();
  private since: Date | undefined;
  private grace: Promise<void> | undefined;

  constructor(
    private readonly healthIndicatorService: HealthIndicatorService,
    private readonly spoe: SpoeServer,
    config: ConfigService<AgentSettings, true>,
  ) {
    this.graceMs = config.get('agent', { infer: true }).shutdownGraceMs;
  }

  /** Readiness down now; resolves at the end of the grace period. Only the first call counts. */
  beginShutdown(signal: string): Promise<void> {
    return (this.grace ??= (async () => {
      this.since = new Date();
      // HAProxy's health checks (spop-check) fail from now on too: it stops sending new work here.
      this.spoe.refuseHealthChecks();
      this.log.log(`${signal}: readiness is now down; SPOE keeps serving during the grace period`);
      await sleep(this.graceMs, undefined, { signal: this.hurried.signal }).catch(() => undefined);
      this.log.log('grace period over: draining SPOE connections and closing');
    })());
  }

  /**
   * Nest closes HTTP and the transport only after every `beforeApplicationShutdown` hook, and runs the root module's
   * (AppModule's, this one) before those of the modules it imports: terminus' own, which turns liveness 503 as well,
   * runs once the grace period is over.
   */
  async beforeApplicationShutdown(signal?: string): Promise<void> {
    await (signal === undefined ? this.grace : this.beginShutdown(signal));
  }

  /** Ends the grace period now (a second signal). */
  hurry(): void {
    this.hurried.abort();
  }

  /** Terminus indicator: down from the moment shutdown began. */
  check<const Key extends string>(key: Key): HealthIndicatorResult<Key> {
    const indicator = this.healthIndicatorService.check(key);
    return this.since
      ? indicator.down({ state: 'shutting-down', since: this.since.toISOString() })
      : indicator.up({ state: 'serving' });
  }
}
