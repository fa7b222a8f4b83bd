import { DynamicModule, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { SpoeModule } from 'nestjs-spoe';
import { SpoeHealthIndicator } from 'nestjs-spoe/health';
import { AGENT_CONFIG, AgentConfig } from './config/agent.config';
import { EchoController } from './diagnostics/echo.controller';
import { HealthController } from './health/health.controller';
import { Lifecycle } from './health/lifecycle';
import { RedisHealthIndicator } from './health/redis.health';
import { BlocklistController } from './reputation/blocklist.controller';
import { BlocklistStore } from './reputation/blocklist.store';
import { MemoryBlocklistStore } from './reputation/memory-blocklist.store';
import { RedisBlocklistStore } from './reputation/redis-blocklist.store';
import { ReputationController } from './reputation/reputation.controller';
import { ReputationService } from './reputation/reputation.service';

/**
 * The example agent: SPOE handlers (`check-client-ip`, `echo`) and an HTTP side (health, blocklist admin API) in one
 * hybrid app. The store is Redis when `REDIS_URL` is set, in memory otherwise; both behind {@link BlocklistStore}.
 */
@Module({})
export class AppModule {
  static forRoot(config: AgentConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [SpoeModule.forRoot(config.spoe), TerminusModule.forRoot({ errorLogStyle: 'pretty' })],
      controllers: [ReputationController, EchoController, BlocklistController, HealthController],
      providers: [
        { provide: AGENT_CONFIG, useValue: config },
        {
          provide: BlocklistStore,
          useFactory: (): BlocklistStore =>
            config.redisUrl !== undefined ? new RedisBlocklistStore(config.redisUrl, config.defaultBlocklist) : new MemoryBlocklistStore(config.defaultBlocklist),
        },
        ReputationService,
        Lifecycle,
        SpoeHealthIndicator,
        RedisHealthIndicator,
      ],
    };
  }
}
