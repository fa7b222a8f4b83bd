import { Controller, Get, Inject, Optional } from '@nestjs/common';
import { HealthCheck, HealthCheckResult, HealthCheckService, HealthIndicatorFunction } from '@nestjs/terminus';
import { SpoeHealthIndicator } from 'nestjs-spoe/health';
import { SupervisorLink } from '../cluster/worker';
import { AGENT_CONFIG, type AgentConfig } from '../config/agent.config';
import { BlocklistStore } from '../reputation/blocklist.store';
import { RedisBlocklistStore } from '../reputation/redis-blocklist.store';
import { Lifecycle } from './lifecycle';
import { RedisHealthIndicator } from './redis.health';
import { WorkersHealthIndicator } from './workers.health';

/**
 * Liveness: the process answers (restart it when not). Readiness: it should get traffic — not shutting down, SPOE
 * listening and answering a real health-check HELLO, with Redis the shared blocklist reachable, and under the supervisor
 * (SPOE_WORKERS > 1) every worker of the host ready. 503 otherwise, with every indicator's details.
 */
@Controller('health')
export class HealthController {
  private readonly readiness: HealthIndicatorFunction[];

  constructor(
    private readonly health: HealthCheckService,
    lifecycle: Lifecycle,
    spoe: SpoeHealthIndicator,
    redis: RedisHealthIndicator,
    workers: WorkersHealthIndicator,
    store: BlocklistStore,
    @Inject(AGENT_CONFIG) config: AgentConfig,
    @Optional() supervisor?: SupervisorLink,
  ) {
    const timeoutMs = config.healthTimeoutMs;
    this.readiness = [() => lifecycle.check('lifecycle'), () => spoe.isHealthy('spoe', { timeoutMs })];
    if (store instanceof RedisBlocklistStore) this.readiness.push(() => redis.isHealthy('redis', store, timeoutMs));
    if (supervisor) this.readiness.push(() => workers.isHealthy('workers', supervisor, timeoutMs));
  }

  @Get('live')
  @HealthCheck()
  live(): Promise<HealthCheckResult> {
    return this.health.check([]);
  }

  @Get('ready')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check(this.readiness);
  }
}
