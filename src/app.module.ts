import { DynamicModule, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { TerminusModule } from '@nestjs/terminus';
import { SpoeModule } from 'nestjs-spoe';
import { SpoeMetricsModule } from 'nestjs-spoe/metrics';
import type { DestinationStream } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { BlocklistController } from './admin/blocklist.controller';
import { SupervisorLink } from './cluster/worker';
import { AgentSettings, validateAgentEnv } from './config/agent.config';
import { EchoController } from './diagnostics/echo.controller';
import { BlocklistHealthIndicator } from './health/blocklist.health';
import { HealthController } from './health/health.controller';
import { agentLoggerImports } from './logging/agent-logging';
import { MetricsController } from './metrics/metrics.controller';
import { Lifecycle } from './health/lifecycle';
import { WorkersHealthIndicator } from './health/workers.health';
import { BlocklistStore } from './reputation/blocklist.store';
import { ClusterBlocklistStore } from './reputation/cluster-blocklist.store';
import { MemoryBlocklistStore } from './reputation/memory-blocklist.store';
import { RedisBlocklistStore } from './reputation/redis-blocklist.store';
import { ReputationController } from './reputation/reputation.controller';
import { ReputationService } from './reputation/reputation.service';
import { TlsReloader } from './tls/tls-reloader';

/** Options of {@link AppModule.forRoot}. */
export interface AppOptions {
  /**
   * The environment to configure the agent from, instead of process.env: the tests run several agents in one process,
   * each with its own.
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Given when the app runs as one of the workers of `superviseWorkers` (SPOE_WORKERS > 1). */
  readonly supervisor?: SupervisorLink;
  /** Where the lines of LOG_FORMAT=json go instead of stdout: the tests read them. */
  readonly logDestination?: DestinationStream;
}

/**
 * The example agent: SPOE handlers (`check-client-ip`, `echo`) and an HTTP side (health, metrics, blocklist admin API) in one
 * hybrid app, configured from its environment (see AGENT_ENV). The store is Redis when `REDIS_URL` or `REDIS_SENTINELS` is set, in memory
 * otherwise — under the supervisor, a replica of the supervisor's blocklist — all behind {@link BlocklistStore}.
 */
@Module({})
export class AppModule {
  static async forRoot({ env = process.env, supervisor, logDestination }: AppOptions = {}): Promise<DynamicModule> {
    // The environment alone (no .env file), checked by the function that main.ts ran before Nest started. Checked here
    // rather than by ConfigModule, which is given the result: LOG_FORMAT decides which modules the app has.
    const settings = validateAgentEnv(env);
    // A registry per app (the tests run several in one process), with Node's process metrics beside SPOE's.
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, validate: () => settings }),
        SpoeModule.forRootAsync({
          inject: [ConfigService],
          useFactory: (config: ConfigService<AgentSettings, true>) => config.get('agent', { infer: true }).spoe,
        }),
        // A failed health check is logged as a terminal's coloured box, or as its details in JSON for LOG_FORMAT=json.
        TerminusModule.forRoot({ errorLogStyle: settings.agent.logFormat === 'json' ? 'json' : 'pretty' }),
        SpoeMetricsModule.forRoot({ registry }),
        ...agentLoggerImports(settings.agent, logDestination),
      ],
      controllers: [ReputationController, EchoController, BlocklistController, HealthController, MetricsController],
      providers: [
        ...(supervisor ? [{ provide: SupervisorLink, useValue: supervisor }] : []),
        {
          provide: BlocklistStore,
          inject: [ConfigService, { token: SupervisorLink, optional: true }],
          useFactory: createStore,
        },
        ReputationService,
        Lifecycle,
        BlocklistHealthIndicator,
        WorkersHealthIndicator,
        TlsReloader,
      ],
    };
  }
}

function createStore(
  config: ConfigService<AgentSettings, true>,
  supervisor: SupervisorLink | undefined,
): BlocklistStore {
  const { redis, defaultBlocklist } = config.get('agent', { infer: true });
  if (redis !== undefined) return new RedisBlocklistStore(redis, defaultBlocklist);
  return supervisor ? new ClusterBlocklistStore(supervisor) : new MemoryBlocklistStore(defaultBlocklist);
}
