import 'reflect-metadata';
import {
  CallHandler,
  Controller,
  ExecutionContext,
  Injectable,
  Module,
  ModuleMetadata,
  NestInterceptor,
  PipeTransform,
  Type,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { readFileSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { Observable } from 'rxjs';
import { SetVar, SpoeIp, SpoeModule, SpoeServer, SpoeValue } from '../../libs/spoe/src';
import type { SpoeServerOptions } from '../../libs/spoe/src';

/**
 * The nestjs-spoe agents of `npm run bench:frames`, one per process (`node -r @swc-node/register nest-agents.ts KIND`),
 * each answering `check-client-ip` with set-var sess.ip_score (10 for IPv4, 20 for IPv6) like bench/agents/ceiling.js,
 * and printing `READY <port>`:
 * - `server`: SpoeServer in a Nest microservice with the plainest @MessagePattern handler (the transport's own cost);
 * - `pipeline`: the same with what real applications add around a handler: one global interceptor (a pass-through)
 *   and one pipe validating the `ip` argument (the cost of Nest's enhancer pipeline on top of the transport).
 * - `metrics`: `server` with the transport's Prometheus series (SpoeMetricsModule).
 * - `observed`: `metrics` with OpenTelemetry tracing (SpoeTracingModule) too, continuing the traces HAProxy hands over
 *   (`startTraces: false`), set up as for production: the SDK's tracer provider with a batch processor, the
 *   AsyncLocalStorage context manager, W3C propagation. bench:frames sends a traceparent in every NOTIFY, sampled in
 *   1% of them (an edge that hands on every request's trace context and samples 1%), so that the context manager is in
 *   use and the traceparents not sampled are read, as in production.
 * - `observed-sampled`: `observed` starting a trace for 1% of the messages (`startTraces: 0.01`), every one of which
 *   the SDK records (its default sampler, ParentBased(AlwaysOn)).
 * - `observed-rare`: the same for 0.1% of the messages (`startTraces: 0.001`): 500 traces a second at 500,000 frames
 *   a second, what a tracing backend is commonly sized for.
 * - `observed-all`: `observed` starting a trace for every message (`startTraces: true`, the default), every span
 *   recorded.
 * The exporter drops the batches: sending them (OTLP) is the collector's side of the cost.
 *
 * Any kind serves SPOP over TLS when BENCH_TLS_CERT and BENCH_TLS_KEY name its certificate and key (PEM files), and
 * requires a client certificate signed by BENCH_TLS_CA when that is set too (mutual TLS).
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

/**
 * The module of the `metrics` and `observed…` agents. Loaded only for them: the `server` agent of a baseline tree
 * (bench/support/baseline.ts) runs this script against a library that may have neither metrics nor tracing.
 */
function observedModule(kind: string): Type {
  /* eslint-disable @typescript-eslint/no-require-imports -- loaded for these agents only (see above) */
  const { Registry } = require('prom-client') as typeof import('prom-client');
  const metrics = require('../../libs/spoe/src/metrics') as typeof import('../../libs/spoe/src/metrics');
  const imports: NonNullable<ModuleMetadata['imports']> = [
    SpoeModule,
    metrics.SpoeMetricsModule.forRoot({ registry: new Registry() }),
  ];
  if (kind !== 'metrics') {
    const { context, propagation, trace } = require('@opentelemetry/api') as typeof import('@opentelemetry/api');
    const hooks = require('@opentelemetry/context-async-hooks') as typeof import('@opentelemetry/context-async-hooks');
    const core = require('@opentelemetry/core') as typeof import('@opentelemetry/core');
    const sdk = require('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base');
    const tracing = require('../../libs/spoe/src/tracing') as typeof import('../../libs/spoe/src/tracing');
    /* eslint-enable @typescript-eslint/no-require-imports */
    // Spans are made, batched and handed over; the network export is left out (see `observed`).
    const dropping: import('@opentelemetry/sdk-trace-base').SpanExporter = {
      export: (_spans, done) => done({ code: core.ExportResultCode.SUCCESS }),
      shutdown: () => Promise.resolve(),
    };
    trace.setGlobalTracerProvider(
      new sdk.BasicTracerProvider({ spanProcessors: [new sdk.BatchSpanProcessor(dropping)] }),
    );
    context.setGlobalContextManager(new hooks.AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
    const startTraces = { observed: false, 'observed-sampled': 0.01, 'observed-rare': 0.001, 'observed-all': true }[
      kind
    ];
    imports.push(tracing.SpoeTracingModule.forRoot({ startTraces }));
  }
  @Module({ imports, controllers: [PlainController] })
  class ObservedModule {}
  return ObservedModule;
}

/** The `tls` option the BENCH_TLS_* files describe, if any (see above). */
function tlsFromEnv(): SpoeServerOptions['tls'] {
  const { BENCH_TLS_CERT: cert, BENCH_TLS_KEY: key, BENCH_TLS_CA: ca } = process.env;
  if (!cert || !key) return undefined;
  return {
    cert: readFileSync(cert),
    key: readFileSync(key),
    ...(ca && { ca: readFileSync(ca), requestCert: true }),
  };
}

const KINDS = ['server', 'pipeline', 'metrics', 'observed', 'observed-sampled', 'observed-rare', 'observed-all'];

async function start(kind: string): Promise<number> {
  if (!KINDS.includes(kind)) throw new Error(`unknown agent kind "${kind}" (${KINDS.join(', ')})`);
  const module = kind === 'server' ? ServerModule : kind === 'pipeline' ? PipelineModule : await observedModule(kind);
  const tls = tlsFromEnv();
  // No `tls` key at all without TLS: a baseline's library (bench/support/baseline.ts) may not know the option.
  const server = new SpoeServer({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0), ...(tls && { tls }) });
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
