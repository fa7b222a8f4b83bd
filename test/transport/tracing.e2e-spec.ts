import { CallHandler, Controller, ExecutionContext, Injectable, Logger, NestInterceptor } from '@nestjs/common';
import { UseInterceptors } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { context, propagation, SpanKind, SpanStatusCode, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { currentSpoeContext, SetVar, SpoeOptionsError } from 'nestjs-spoe';
import { SpoeMetricsModule } from 'nestjs-spoe/metrics';
import { SpoeTracing, SpoeTracingModule } from 'nestjs-spoe/tracing';
import { Registry } from 'prom-client';
import { SpoeClient } from 'nestjs-spoe/testing';
import { map, NEVER, Observable } from 'rxjs';
import { startAgent, TestAgent } from '../support/agent';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
/** What a handler's own instrumentation (a database client, a cache) would create: a child of the active span. */
const library = provider.getTracer('a-database-client');

/** Where the handlers saw their span: the active span at the interceptor, before and after an await. */
const seen: Record<string, string | undefined> = {};
const activeSpanId = (): string | undefined => trace.getActiveSpan()?.spanContext().spanId;

@Injectable()
class SeeingInterceptor implements NestInterceptor {
  intercept(_: ExecutionContext, next: CallHandler): Observable<unknown> {
    seen.interceptor = activeSpanId();
    return next.handle().pipe(
      map((value) => {
        seen.pipe = activeSpanId();
        return value;
      }),
    );
  }
}

@Controller()
class TracedController {
  @MessagePattern('check')
  check() {
    seen.checkTrace = trace.getActiveSpan()?.spanContext().traceId;
    library.startSpan('lookup').end();
    return SetVar.txn('ok', 1);
  }

  @MessagePattern('later')
  async later() {
    seen.beforeAwait = activeSpanId();
    await new Promise((resolve) => setTimeout(resolve, 5));
    seen.afterAwait = activeSpanId();
    library.startSpan('query').end();
    // The message context of the transport (messageContext: true) reaches here as well.
    return SetVar.txn('stream', Number(currentSpoeContext()?.getStreamId()));
  }

  @MessagePattern('intercepted')
  @UseInterceptors(SeeingInterceptor)
  intercepted() {
    seen.handler = activeSpanId();
    return SetVar.txn('ok', 1);
  }

  /** The `tenant` entry of the baggage in the handler's context, if any. */
  @MessagePattern('tenant')
  tenant() {
    return SetVar.txn('tenant', propagation.getActiveBaggage()?.getEntry('tenant')?.value ?? 'none');
  }

  @MessagePattern('fails')
  fails(): never {
    throw new RangeError('the store is down');
  }

  @MessagePattern('slow', { deadline: 50 })
  slow() {
    return NEVER;
  }
}

describe('SpoeTracingModule: a span per SPOE message', () => {
  let agent: TestAgent;
  let client: SpoeClient;

  beforeAll(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  });
  afterAll(() => {
    context.disable();
    propagation.disable();
  });

  beforeEach(async () => {
    exporter.reset();
    agent = await startAgent(
      { imports: [SpoeTracingModule.forRoot({ tracerProvider: provider })], controllers: [TracedController] },
      { handlerDeadlineMs: 60_000, messageContext: true },
    );
    client = await SpoeClient.connect({ port: agent.port, engineId: 'engine-under-test' });
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await client.close();
    await agent.close();
  });

  const spans = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === name);
  const only = (name: string): ReadableSpan => {
    const found = spans(name);
    expect(found).toHaveLength(1);
    return found[0];
  };

  it('exports a SERVER span with the message, stream-id, frame-id, engine-id and peer, parent of the handler spans', async () => {
    await client.notifyMessages([{ name: 'check' }], { streamId: 7, frameId: 3 });
    const span = only('spoe check');
    expect(span.kind).toBe(SpanKind.SERVER);
    expect(span.instrumentationScope.name).toBe('nestjs-spoe');
    expect(span.attributes).toEqual({
      'spoe.message': 'check',
      'spoe.stream_id': 7,
      'spoe.frame_id': 3,
      'spoe.engine_id': 'engine-under-test',
      'network.peer.address': '127.0.0.1',
      'network.peer.port': expect.any(Number),
      'spoe.outcome': 'ok',
    });
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.parentSpanContext).toBeUndefined();
    const lookup = only('lookup');
    expect(lookup.spanContext().traceId).toBe(span.spanContext().traceId);
    expect(lookup.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
  });

  it('continues the trace of a traceparent argument (W3C), so that the request trace shows the decision', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentId = '00f067aa0ba902b7';
    await client.notify('check', { traceparent: `00-${traceId}-${parentId}-01`, ip: '192.0.2.1' });
    const span = only('spoe check');
    expect(span.spanContext().traceId).toBe(traceId);
    expect(span.parentSpanContext).toMatchObject({ traceId, spanId: parentId, isRemote: true });
    expect(only('lookup').spanContext().traceId).toBe(traceId);
  });

  it('starts a new trace when the traceparent argument is not a valid one', async () => {
    await client.notify('check', { traceparent: 'not-a-traceparent' });
    expect(only('spoe check').parentSpanContext).toBeUndefined();
  });

  it('gives no span to a message whose traceparent is not sampled, nor a trace of its own, and runs it in that trace', async () => {
    const traceId = '6bf92f3577b34da6a3ce929d0e0e4736';
    for (const flags of ['00', '02']) {
      seen.checkTrace = undefined;
      expect(await client.notify('check', { traceparent: `00-${traceId}-00f067aa0ba902b7-${flags}` })).toEqual([
        expect.objectContaining({ name: 'ok', value: 1 }),
      ]);
      // The handler ran in the trace: its client's span follows the not-sampled decision (ParentBased records none).
      expect(seen.checkTrace).toBe(traceId);
    }
    // The module's tracing starts a trace for every message that carries none (startTraces: true): not for these.
    expect(exporter.getFinishedSpans()).toEqual([]);
    // Sampled, whatever the other bits of its flags: continued, with a span.
    await client.notify('check', { traceparent: `00-${traceId}-00f067aa0ba902b7-03` });
    expect(only('spoe check').spanContext().traceId).toBe(traceId);
    expect(only('lookup').spanContext().traceId).toBe(traceId);
  });

  it('with spanUnsampled: true, gives it a span too, which the sampler decides on; by default, none', async () => {
    const traceId = '7bf92f3577b34da6a3ce929d0e0e4736';
    const recorded = async (spanUnsampled: boolean | undefined): Promise<ReadableSpan[]> => {
      const own = new InMemorySpanExporter();
      const tracing = new SpoeTracing({
        // Records whatever the parent says: the span of a message whose trace is not sampled, if it gets one.
        tracerProvider: new BasicTracerProvider({
          sampler: new AlwaysOnSampler(),
          spanProcessors: [new SimpleSpanProcessor(own)],
        }),
        startTraces: false,
        spanUnsampled,
      });
      tracing.attach(agent.server);
      await client.notify('check', { traceparent: `00-${traceId}-00f067aa0ba902b7-00` });
      tracing.release(agent.server);
      return own.getFinishedSpans();
    };
    expect(await recorded(undefined)).toEqual([]);
    const finished = await recorded(true);
    expect(finished).toHaveLength(1);
    expect(finished[0].spanContext().traceId).toBe(traceId);
    expect(finished[0].parentSpanContext).toMatchObject({
      spanId: '00f067aa0ba902b7',
      traceFlags: TraceFlags.NONE,
      isRemote: true,
    });
    // The handler ran in its span.
    expect(only('lookup').parentSpanContext?.spanId).toBe(finished[0].spanContext().spanId);
  });

  it('gives every message a trace of its own, not the one active where the agent was started', async () => {
    // An app started inside a span (a traced bootstrap), whose context async code started there inherits.
    const bootstrap = library.startSpan('bootstrap');
    const other = await context.with(trace.setSpan(context.active(), bootstrap), () =>
      startAgent({
        imports: [SpoeTracingModule.forRoot({ tracerProvider: provider })],
        controllers: [TracedController],
      }),
    );
    bootstrap.end();
    const peer = await SpoeClient.connect({ port: other.port });
    try {
      await peer.notify('check', {});
      const traceId = '9bf92f3577b34da6a3ce929d0e0e4736';
      await peer.notify('check', { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
      await peer.notify('check', { traceparent: `00-${traceId}-00f067aa0ba902b7-00` });
      expect(seen.checkTrace).toBe(traceId);
      const [started, continued] = spans('spoe check');
      expect(started.parentSpanContext).toBeUndefined();
      expect(started.spanContext().traceId).not.toBe(bootstrap.spanContext().traceId);
      expect(continued.parentSpanContext).toMatchObject({ traceId, spanId: '00f067aa0ba902b7' });
      expect(spans('spoe check')).toHaveLength(2);
    } finally {
      await peer.close();
      await other.close();
    }
  });

  it('reads every field of a composite propagator for a trace that is not sampled (baggage)', async () => {
    propagation.disable();
    propagation.setGlobalPropagator(
      new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
    );
    try {
      // A new agent: its tracing reads the propagator's fields at its first message.
      const other = await startAgent({
        imports: [SpoeTracingModule.forRoot({ tracerProvider: provider })],
        controllers: [TracedController],
      });
      const peer = await SpoeClient.connect({ port: other.port });
      try {
        const traceparent = '00-8bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';
        expect(await peer.notify('tenant', { traceparent, baggage: 'tenant=acme' })).toEqual([
          expect.objectContaining({ name: 'tenant', value: 'acme' }),
        ]);
        expect(await peer.notify('tenant', { traceparent })).toEqual([
          expect.objectContaining({ name: 'tenant', value: 'none' }),
        ]);
        expect(spans('spoe tenant')).toHaveLength(0);
      } finally {
        await peer.close();
        await other.close();
      }
    } finally {
      propagation.disable();
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    }
  });

  it('keeps the span active across await, in interceptors and their Observables, beside the message context', async () => {
    const [actions] = await Promise.all([
      client.notifyMessages([{ name: 'later' }], { streamId: 41, frameId: 1 }),
      client.notifyMessages([{ name: 'intercepted' }], { streamId: 42, frameId: 1 }),
    ]);
    expect(actions).toEqual([expect.objectContaining({ name: 'stream', value: 41 })]);
    const later = only('spoe later');
    expect(seen.beforeAwait).toBe(later.spanContext().spanId);
    expect(seen.afterAwait).toBe(later.spanContext().spanId);
    expect(only('query').parentSpanContext?.spanId).toBe(later.spanContext().spanId);
    const intercepted = only('spoe intercepted').spanContext().spanId;
    expect(seen).toMatchObject({ interceptor: intercepted, handler: intercepted, pipe: intercepted });
  });

  it('marks a failed handler: ERROR status, its exception recorded', async () => {
    await client.notify('fails');
    const span = only('spoe fails');
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'RangeError: the store is down' });
    expect(span.attributes['spoe.outcome']).toBe('failed');
    expect(span.events).toEqual([
      expect.objectContaining({
        name: 'exception',
        attributes: expect.objectContaining({
          'exception.type': 'RangeError',
          'exception.message': 'the store is down',
        }),
      }),
    ]);
  });

  it('marks a passed deadline, and ends the span of every message of a NOTIFY once', async () => {
    await client.notifyMessages([{ name: 'check' }, { name: 'slow' }, { name: 'no-handler' }], {
      streamId: 1,
      frameId: 9,
    });
    const slow = only('spoe slow');
    expect(slow.status).toEqual({ code: SpanStatusCode.ERROR, message: 'deadline passed' });
    expect(slow.attributes['spoe.outcome']).toBe('deadline');
    expect(only('spoe check').attributes).toMatchObject({ 'spoe.frame_id': 9, 'spoe.outcome': 'ok' });
    // A name without a handler gets no span (nor a span name a peer chose).
    expect(
      exporter
        .getFinishedSpans()
        .map((s) => s.name)
        .sort(),
    ).toEqual(['lookup', 'spoe check', 'spoe slow']);
  });

  it('with startTraces: false, traces only the messages that continue a trace', async () => {
    const own = new InMemorySpanExporter();
    const tracing = new SpoeTracing({
      tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(own)] }),
      startTraces: false,
    });
    tracing.attach(agent.server);
    const traceId = '5bf92f3577b34da6a3ce929d0e0e4736';
    expect(await client.notify('check')).toEqual([expect.objectContaining({ name: 'ok', value: 1 })]);
    await client.notify('check', { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    expect(own.getFinishedSpans().map((s) => [s.name, s.spanContext().traceId])).toEqual([['spoe check', traceId]]);
    tracing.release(agent.server);
  });

  it('with startTraces: a number, starts a trace for that share of the messages and continues every trace', async () => {
    const own = new InMemorySpanExporter();
    const tracing = new SpoeTracing({
      tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(own)] }),
      startTraces: 0.25,
    });
    tracing.attach(agent.server);
    const traceId = '5bf92f3577b34da6a3ce929d0e0e4736';
    for (let i = 0; i < 400; i++) {
      expect(await client.notify('check')).toEqual([expect.objectContaining({ name: 'ok', value: 1 })]);
      if (i % 20 === 0) await client.notify('check', { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    }
    tracing.release(agent.server);
    const finished = own.getFinishedSpans();
    // All 20 messages that carry a trace continue it, whatever the share.
    expect(finished.filter((s) => s.spanContext().traceId === traceId)).toHaveLength(20);
    // About a quarter of the 400 others start one, each its own (100 expected; the bounds are 6 standard deviations).
    const started = finished.filter((s) => s.spanContext().traceId !== traceId);
    expect(started.length).toBeGreaterThan(48);
    expect(started.length).toBeLessThan(152);
    expect(started.every((s) => s.parentSpanContext === undefined && s.name === 'spoe check')).toBe(true);
    expect(new Set(started.map((s) => s.spanContext().traceId)).size).toBe(started.length);
  });

  it('refuses a startTraces that is not a boolean or a share', () => {
    for (const startTraces of [1.5, -0.1, Number.NaN, '0.5']) {
      expect(() => new SpoeTracing({ startTraces: startTraces as number })).toThrow(
        new SpoeOptionsError(`startTraces must be a boolean or a number in [0, 1], got ${String(startTraces)}`),
      );
    }
    expect(() => new SpoeTracing({ startTraces: 0 })).not.toThrow();
    expect(() => new SpoeTracing({ startTraces: 1 })).not.toThrow();
  });

  it('works beside SpoeMetricsModule: both attach to the server of the app', async () => {
    const registry = new Registry();
    const both = await startAgent({
      imports: [SpoeTracingModule.forRoot({ tracerProvider: provider }), SpoeMetricsModule.forRoot({ registry })],
      controllers: [TracedController],
    });
    const other = await SpoeClient.connect({ port: both.port });
    try {
      await other.notify('check');
      const counted = (await registry.getSingleMetric('spoe_messages_total')?.get())?.values;
      expect(counted).toEqual([expect.objectContaining({ labels: { message: 'check', outcome: 'ok' }, value: 1 })]);
      expect(spans('spoe check')).toHaveLength(1);
    } finally {
      await other.close();
      await both.close();
    }
  });

  it('traces a server by hand once attached, and nothing once released', async () => {
    const own = new InMemorySpanExporter();
    const tracing = new SpoeTracing({
      tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(own)] }),
    });
    tracing.attach(agent.server);
    await client.notify('check');
    expect(own.getFinishedSpans().map((s) => s.name)).toEqual(['spoe check']);
    tracing.release(agent.server);
    await client.notify('check');
    expect(own.getFinishedSpans()).toHaveLength(1);
    // The module's SpoeTracing traced both.
    expect(spans('spoe check')).toHaveLength(2);
  });
});
