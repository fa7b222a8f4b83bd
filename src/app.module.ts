import { DynamicModule, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { SpoeModule } from 'nestjs-spoe';
import { SpoeHealthIndicator } from 'nestjs-spoe/health';
import { SupervisorLink } from './cluster/worker';
import { AGENT_CONFIG, AgentConfig } from './config/agent.config';
import { EchoController } from './diagnostics/echo.controller';
import { HealthController } from './health/health.controller';
import { Lifecycle } from './health/lifecycle';
import { RedisHealthIndicator } from './health/redis.health';
import { WorkersHealthIndicator } from './health/workers.health';
import { BlocklistController } from './reputation/blocklist.controller';
import { BlocklistStore } from './reputation/blocklist.store';
import { ClusterBlocklistStore } from './reputation/cluster-blocklist.store';
import { MemoryBlocklistStore } from './reputation/memory-blocklist.store';
import { RedisBlocklistStore } from './reputation/redis-blocklist.store';
import { ReputationController } from './reputation/reputation.controller';
import { ReputationService } from './reputation/reputation.service';

/**
 * The example agent: SPOE handlers (`check-client-ip`, `echo`) and an HTTP side (health, blocklist admin API) in one
 * hybrid app. The store is Redis when `REDIS_URL` is set, in memory otherwise — under the supervisor, a replica of
 * the supervisor's blocklist — all behind {@link BlocklistStore}. `supervisor` is given when the app runs as one of
 * the workers of `superviseWorkers` (SPOE_WORKERS > 1).
 */
@Module({})
export class AppModule {
  static forRoot(config: AgentConfig, supervisor?: SupervisorLink): DynamicModule {
    return {
      module: AppModule,
      imports: [SpoeModule.forRoot(config.spoe), TerminusModule.forRoot({ errorLogStyle: 'pretty' })],
      controllers: [ReputationController, EchoController, BlocklistController, HealthController],
      providers: [
        { provide: AGENT_CONFIG, useValue: config },
        ...(supervisor ? [{ provide: SupervisorLink, useValue: supervisor }] : []),
        { provide: BlocklistStore, useFactory: (): BlocklistStore => createStore(config, supervisor) },
        ReputationService,
        Lifecycle,
        SpoeHealthIndicator,
        RedisHealthIndicator,
        WorkersHealthIndicator,
      ],
    };
  }
}

function createStore(config: AgentConfig, supervisor: SupervisorLink | undefined): BlocklistStore {
  if (config.redisUrl !== undefined) return new RedisBlocklistStore(config.redisUrl, config.defaultBlocklist);
  return supervisor ? new ClusterBlocklistStore(supervisor) : new MemoryBlocklistStore(config.defaultBlocklist);
}
