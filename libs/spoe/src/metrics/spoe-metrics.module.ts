import { DynamicModule, Module } from '@nestjs/common';
import { attachedToEveryServer } from '../module/spoe-servers';
import { SpoeMetrics, SpoeMetricsOptions } from './spoe.metrics';

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
      providers: attachedToEveryServer(SpoeMetrics, () => new SpoeMetrics(options)),
      exports: [SpoeMetrics],
    };
  }
}
