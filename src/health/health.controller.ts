import { Controller, Get } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { HealthCheck, HealthCheckResult, HealthCheckService, HealthIndicatorFunction } from '@nestjs/terminus';
import { SpoeHealthIndicator } from 'nestjs-spoe/health';
import type { AgentSettings } from '../config/agent.config';
import { BlocklistHealthIndicator } from './blocklist.health';
import { Lifecycle } from './lifecycle';
import { WorkersHealthIndicator } from './workers.health';

/**
 * Liveness: the process answers (restart it when not). Readiness: it should get traffic — not shutting down, SPOE
 * listening and answering a real health-check HELLO, and under the supervisor (SPOE_WORKERS > 1) every worker of the
 * host ready. 503 otherwise, with every indicator's details. The blocklist store (with Redis: connected, PING answered)
 * is reported but never makes it 503: while Redis is away the agent still decides from the blocklist it holds, so its
 * indicator is "degraded" and so is the overall status, with HTTP 200. Indicators with nothing to check (an in-memory
 * store, a single process) add nothing.
 */
@Controller('health')
export class HealthController {
  private readonly readiness: HealthIndicatorFunction[];

  constructor(
    private readonly health: HealthCheckService,
    lifecycle: Lifecycle,
    spoe: SpoeHealthIndicator,
    blocklist: BlocklistHealthIndicator,
    workers: WorkersHealthIndicator,
    config: ConfigService<AgentSettings, true>,
  ) {
    const timeoutMs = config.get('agent', { infer: true }).healthTimeoutMs;
    this.readiness = [
      () => lifecycle.check('lifecycle'),
      () => spoe.isHealthy('spoe', { timeoutMs }),
      () => blocklist.isHealthy(timeoutMs),
      () => workers.isHealthy('workers', timeoutMs),
    ];
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
