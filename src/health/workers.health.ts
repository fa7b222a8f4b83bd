import { Injectable, Optional } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { SupervisorLink } from '../cluster/worker';

/**
 * Terminus indicator of a worker under the supervisor (SPOE_WORKERS > 1): the host is ready when all of its workers
 * are, as the supervisor sees them. Down, with each worker's pid and state, while fewer are ready (one is starting,
 * stopping, or being replaced after a crash), when the supervisor is shutting down, or when it does not answer.
 * Nothing at all in a single agent process.
 */
@Injectable()
export class WorkersHealthIndicator {
  constructor(
    private readonly healthIndicatorService: HealthIndicatorService,
    @Optional() private readonly supervisor?: SupervisorLink,
  ) {}

  async isHealthy(key: string, timeoutMs: number): Promise<HealthIndicatorResult> {
    if (!this.supervisor) return {};
    const indicator = this.healthIndicatorService.check(key);
    let status;
    try {
      status = await this.supervisor.request({ kind: 'workers' }, timeoutMs);
    } catch (error) {
      return indicator.down({ message: (error as Error).message });
    }
    const details = { expected: status.expected, ready: status.ready, processes: status.workers };
    if (status.stopping) return indicator.down({ ...details, message: 'the supervisor is shutting down' });
    if (status.ready < status.expected)
      return indicator.down({ ...details, message: `${status.ready} of ${status.expected} workers ready` });
    return indicator.up(details);
  }
}
