import { Controller, Module } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, BatchSpanProcessor, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { SetVar, SpoeIp, SpoeModule } from 'nestjs-spoe';
import { SpoeTracingModule } from 'nestjs-spoe/tracing';

// Before the app starts: what NodeSDK (@opentelemetry/sdk-node) does for you, spelled out.
export function startTracing(exporter: SpanExporter): BasicTracerProvider {
  const provider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()); // spans follow await
  propagation.setGlobalPropagator(new W3CTraceContextPropagator()); // reads the traceparent argument
  return provider;
}

@Controller()
export class TracedController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp) {
    // Spans started here (a Redis or SQL client's, your own) are children of the message's span.
    return SetVar.txn('ip_score', ip.unmapped().family === 4 ? 0 : 10);
  }
}

@Module({
  imports: [
    SpoeModule.forRootAsync({ useFactory: () => ({ port: Number(process.env.SPOE_PORT ?? 12345) }) }),
    SpoeTracingModule.forRoot(), // a span per message of every SpoeServer of the app
  ],
  controllers: [TracedController],
})
export class TracedAppModule {}
