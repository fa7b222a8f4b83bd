import { DynamicModule, Injectable, Module, OnModuleDestroy } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { SpoeServerObservation } from '../module/spoe-servers';
import { SpoeMetrics, SpoeMetricsOptions } from './spoe.metrics';

const SPOE_METRICS_OPTIONS = Symbol('SPOE_METRICS_OPTIONS');

/** Attaches the app's SpoeMetrics to every SpoeServer of the app. */
@Injectable()
class SpoeMetricsAttacher implements OnModuleDestroy {
  private readonly observation: SpoeServerObservation;

  constructor(modules: ModulesContainer, metrics: SpoeMetrics) {
    this.observation = new SpoeServerObservation(modules, (server) => {
      metrics.attach(server);
      return () => metrics.release(server);
    });
  }

  onModuleDestroy(): void {
    this.observation.close();
  }
}

/**
 * The transport's Prometheus series in a Nest app, in one line: `SpoeMetricsModule.forRoot()` counts every SpoeServer
 * of the app on prom-client's global registry (or the `registry` given, e.g. the one @willsoto/nestjs-prometheus
 * serves), and makes {@link SpoeMetrics} injectable.
 */
@Module({})
export class SpoeMetricsModule {
  static forRoot(options: SpoeMetricsOptions = {}): DynamicModule {
    return {
      module: SpoeMetricsModule,
      global: true,
      providers: [
        { provide: SPOE_METRICS_OPTIONS, useValue: options },
        {
          provide: SpoeMetrics,
          useFactory: (o: SpoeMetricsOptions) => new SpoeMetrics(o),
          inject: [SPOE_METRICS_OPTIONS],
        },
        SpoeMetricsAttacher,
      ],
      exports: [SpoeMetrics],
    };
  }
}
