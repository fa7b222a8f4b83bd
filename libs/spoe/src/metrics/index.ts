// 'nestjs-spoe/metrics': Prometheus series of the transport, a subpath so that prom-client stays an optional peer.
export { SpoeMetrics, SPOE_DURATION_BUCKETS, SPOE_UNHANDLED_MESSAGE } from './spoe.metrics';
export type { SpoeMetricsOptions } from './spoe.metrics';
export { SpoeMetricsModule } from './spoe-metrics.module';
