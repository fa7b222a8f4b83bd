import 'reflect-metadata';
import {
  CallHandler,
  Controller,
  ExecutionContext,
  Injectable,
  Module,
  NestInterceptor,
  PipeTransform,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { AddressInfo } from 'node:net';
import { Observable } from 'rxjs';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  SpanExporter,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { SetVar, SpoeIp, SpoeModule, SpoeServer, SpoeValue } from '../../libs/spoe/src';
import { SpoeMetricsModule } from '../../libs/spoe/src/metrics';
import { SpoeTracingModule } from '../../libs/spoe/src/tracing';

/**
 * The nestjs-spoe agents of `npm run bench:frames`, one per process (`node -r @swc-node/register nest-agents.ts KIND`),
 * each answering `check-client-ip` with set-var sess.ip_score (10 for IPv4, 20 for IPv6) like bench/agents/ceiling.js,
 * and printing `READY <port>`:
 * - `server`: SpoeServer in a Nest microservice with the plainest @MessagePattern handler (the transport's own cost);
 * - `pipeline`: the same with what real applications add around a handler: one global interceptor (a pass-through)
 *   and one pipe validating the `ip` argument (the cost of Nest's enhancer pipeline on top of the transport).
 * - `metrics`: `server` with the transport's Prometheus series (SpoeMetricsModule).
 * - `observed`: `metrics` with OpenTelemetry spans (SpoeTracingModule) too, as an app set up for production would
 *   have them: the SDK's tracer provider with a batch processor, the AsyncLocalStorage context manager, W3C
 *   propagation, and a sampler keeping 1% of the traces that start here (ParentBased(TraceIdRatioBased(0.01)); a
 *   request whose traceparent says sampled is always kept). The exporter drops the batches: sending them (OTLP) is
 *   the collector's side of the cost, in a thread or process of its own.
 * - `observed-all`: `observed` with every span sampled (the SDK's default sampler): the most tracing can cost.
 */

@Controller()
class PlainController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp): SetVar {
    return SetVar.sess('ip_score', ip.family === 4 ? 10 : 20);
  }
}

/** Accepts an IP as sent (IPV4/IPV6) or as a STRING, as a real handler fed by `req.hdr(x-real-ip)` would. */
@Injectable()
class IpPipe implements PipeTransform<SpoeValue | undefined, SpoeIp> {
  transform(value: SpoeValue | undefined): SpoeIp {
    if (value instanceof SpoeIp) return value;
    if (typeof value === 'string') return SpoeIp.parse(value.trim());
    throw new RpcException('argument "ip" must be an IP address');
  }
}

/** Does nothing but be there: what any interceptor costs before its own work (logging, metrics, tracing…). */
@Injectable()
class PassThroughInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle();
  }
}

@Controller()
class PipelineController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip', IpPipe) ip: SpoeIp): SetVar {
    return SetVar.sess('ip_score', ip.family === 4 ? 10 : 20);
  }
}

// SpoeModule, as users are told: handlers then run through nestjs-spoe's pipeline rather than Nest's generic one.
@Module({ imports: [SpoeModule], controllers: [PlainController] })
class ServerModule {}

@Module({ imports: [SpoeModule], controllers: [PipelineController], providers: [IpPipe] })
class PipelineModule {}

/** Spans are made, batched and handed over; the network export is left out (see `observed`). */
const DROPPING_EXPORTER: SpanExporter = {
  export: (_spans, done) => done({ code: ExportResultCode.SUCCESS }),
  shutdown: () => Promise.resolve(),
};

function startTracing(sampleAll: boolean): void {
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({
      spanProcessors: [new BatchSpanProcessor(DROPPING_EXPORTER)],
      ...(!sampleAll && { sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.01) }) }),
    }),
  );
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

@Module({
  imports: [SpoeModule, SpoeMetricsModule.forRoot({ registry: new Registry() })],
  controllers: [PlainController],
})
class MetricsModule {}

@Module({
  imports: [SpoeModule, SpoeMetricsModule.forRoot({ registry: new Registry() }), SpoeTracingModule.forRoot()],
  controllers: [PlainController],
})
class ObservedModule {}

const MODULES: Record<string, unknown> = {
  server: ServerModule,
  pipeline: PipelineModule,
  metrics: MetricsModule,
  observed: ObservedModule,
  'observed-all': ObservedModule,
};

async function start(kind: string): Promise<number> {
  const module = MODULES[kind];
  if (!module) throw new Error(`unknown agent kind "${kind}" (${Object.keys(MODULES).join(', ')})`);
  if (kind.startsWith('observed')) startTracing(kind === 'observed-all');
  const server = new SpoeServer({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
  const app = await NestFactory.createMicroservice(module, {
    strategy: server,
    logger: ['error'],
  });
  if (kind === 'pipeline') app.useGlobalInterceptors(new PassThroughInterceptor());
  await app.listen();
  return (server.address as AddressInfo).port;
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
start(process.argv[2] ?? '').then(
  (port) => console.log(`READY ${port}`),
  (error: Error) => {
    console.error(`nest bench agent: ${error.message}`);
    process.exit(1);
  },
);
