import { Injectable, Logger } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';

/**
 * Whether the agent still wants traffic. On SIGTERM it stops wanting it at once — readiness turns 503 so the load
 * balancer routes new work elsewhere — while SPOE keeps serving for the grace period.
 */
@Injectable()
export class Lifecycle {
  private readonly log = new Logger(Lifecycle.name);
  private since: Date | undefined;

  constructor(private readonly healthIndicatorService: HealthIndicatorService) {}

  get shuttingDown(): boolean {
    return this.since !== undefined;
  }

  beginShutdown(signal: string): void {
    if (this.since) return;
    this.since = new Date();
    this.log.log(`${signal}: readiness is now down; SPOE keeps serving during the grace period`);
  }

  /** Terminus indicator: down from the moment shutdown began. */
  check<const Key extends string>(key: Key): HealthIndicatorResult<Key> {
    const indicator = this.healthIndicatorService.check(key);
    return this.since ? indicator.down({ state: 'shutting-down', since: this.since.toISOString() }) : indicator.up({ state: 'serving' });
  }
}
