import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { RedisBlocklistStore } from '../reputation/redis-blocklist.store';

/** Terminus indicator of the shared blocklist: both Redis connections ready and a PING answered within the timeout. */
@Injectable()
export class RedisHealthIndicator {
  constructor(private readonly healthIndicatorService: HealthIndicatorService) {}

  async isHealthy<const Key extends string>(key: Key, store: RedisBlocklistStore, timeoutMs: number): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.healthIndicatorService.check(key);
    const status = store.status;
    const details = { command: status.command, subscriber: status.subscriber, version: status.version, entries: status.entries };
    if (!status.connected) return indicator.down({ ...details, message: 'Redis is not connected: the blocklist may be stale' });
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no PONG within ${timeoutMs} ms`)), timeoutMs)));
      const pingMs = await Promise.race([store.ping(), timeout]);
      return indicator.up({ ...details, pingMs });
    } catch (error) {
      return indicator.down({ ...details, message: `PING failed: ${(error as Error).message}` });
    } finally {
      clearTimeout(timer);
    }
  }
}
