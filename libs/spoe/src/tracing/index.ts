// 'nestjs-spoe/tracing': OpenTelemetry spans of the transport, a subpath so that @opentelemetry/api stays an optional
// peer.
export { SpoeTracing, SPOE_SPAN_ATTRIBUTES, SPOE_TRACER_NAME } from './spoe.tracing';
export type { SpoeTracingOptions } from './spoe.tracing';
export { SpoeTracingModule } from './spoe-tracing.module';
