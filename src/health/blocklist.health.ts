import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { BlocklistStore } from '../reputation/blocklist.store';

/**
 * Terminus indicator of the blocklist store, whichever it is: what the store says of its own health
 * ({@link BlocklistStore.health}), under the key it names ("redis"). Degraded, with the store's details, when the store
 * knows it is (a connection down) or its probe fails or takes longer than the timeout: readiness stays 200, its status
 * "degraded", since the agent still decides every NOTIFY from the blocklist it holds. Nothing at all for a store that
 * depends on nothing that can fail (in memory).
 */
@Injectable()
export class BlocklistHealthIndicator {
  constructor(
    private readonly healthIndicatorService: HealthIndicatorService,
    private readonly store: BlocklistStore,
  ) {}

  async isHealthy(timeoutMs: number): Promise<HealthIndicatorResult> {
    const health = this.store.health();
    if (!health) return {};
    const indicator = this.healthIndicatorService.check(health.key);
    if (health.degraded !== undefined) return indicator.degraded({ ...health.details, message: health.degraded });
    if (!health.probe) return indicator.up(health.details);
    const probe = health.probe;
    const attempt = await indicator.attempt(() => probe()).withTimeout(timeoutMs);
    // The attempt reports the probe's details (or why it failed) and its response time; the store's state goes with
    // both.
    const { status, ...outcome } = attempt[health.key];
    return status === 'up'
      ? indicator.up({ ...health.details, ...outcome })
      : indicator.degraded({ ...health.details, ...outcome });
  }
}
