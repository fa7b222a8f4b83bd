import { DynamicModule, Injectable, Module, OnModuleDestroy } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { Subscription } from 'rxjs';
import { SpoeServer } from '../server/spoe.server';
import { SpoeMetrics, SpoeMetricsOptions } from './spoe.metrics';

const SPOE_METRICS_OPTIONS = Symbol('SPOE_METRICS_OPTIONS');

/**
 * Attaches the app's SpoeMetrics to every SpoeServer of the app — provided by SpoeModule or built with `new
 * SpoeServer()` — as Nest announces it on `ModulesContainer.getRpcTargetRegistry()`.
 */
@Injectable()
class SpoeMetricsAttacher implements OnModuleDestroy {
  private readonly subscription: Subscription;
  private readonly servers = new Set<SpoeServer>();

  constructor(
    modules: ModulesContainer,
    private readonly metrics: SpoeMetrics,
  ) {
    this.subscription = modules.getRpcTargetRegistry<unknown>().subscribe((target) => {
      if (!(target instanceof SpoeServer)) return;
      this.servers.add(target);
      metrics.attach(target);
    });
  }

  onModuleDestroy(): void {
    this.subscription.unsubscribe();
    for (const server of this.servers) this.metrics.release(server);
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
