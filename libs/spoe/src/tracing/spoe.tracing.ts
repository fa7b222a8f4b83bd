import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Attributes, Context, Span, TextMapGetter, Tracer, TracerProvider } from '@opentelemetry/api';
import type { SpopId } from '../protocol/frame';
import type { SpoeMessage } from '../protocol/notify';
import type { SpoeConnectionInfo } from '../server/spoe.context';
import type { SpoeMessageOutcome, SpoeMessageScope, SpoeObserver } from '../server/spoe.observer';
import type { SpoeServer } from '../server/spoe.server';
import { SpoeOptionsError } from '../server/spoe.options';
import type { ByteSpan } from '../protocol/notify';
import { TRACEPARENT, Traceparent, traceparentSampled } from './traceparent';

/** Options of {@link SpoeTracing} (and of `SpoeTracingModule.forRoot`). */
export interface SpoeTracingOptions {
  /** Where spans go. Default: the global provider, the one the OpenTelemetry SDK registers (NodeSDK, `register()`). */
  tracerProvider?: TracerProvider;
  /**
   * Continue the trace a message carries in its arguments, read by the global propagator (W3C: `traceparent` and
   * `tracestate`, e.g. `args traceparent=req.hdr(traceparent)` in HAProxy's spoe-message). Default true.
   */
  propagate?: boolean;
  /**
   * Which messages that carry no trace start one. `true` (the default): every one, and the SDK's sampler decides which
   * of those record. A number from 0 to 1: that share of them, chosen at random by the agent before any OpenTelemetry
   * call, and the SDK's sampler then decides on those (keep its default, ParentBased(AlwaysOn), to record them all).
   * `false` (or 0): none; behind an edge that traces the requests it wants traced and hands HAProxy their
   * `traceparent`, only the messages that continue a trace get a span.
   *
   * A message that starts no trace costs no OpenTelemetry call, where the SDK spends about 2 µs deciding not to sample
   * one; its handlers run outside any trace, as without tracing, so the spans their clients may start are roots (set
   * `requireParentSpan` in those instrumentations that have it to leave them out).
   */
  startTraces?: boolean | number;
  /**
   * Whether a message whose W3C `traceparent` says its request is not sampled (trace-flags without the sampled bit)
   * gets a span. Default false: it gets none (the SDK's default sampler, ParentBased, would record none under a parent
   * that is not sampled) and starts no trace (the edge decided); its handlers still run in that trace's context, so
   * that the spans their clients start follow the decision and their calls carry it on, read from the message only if
   * something asks. An edge that hands HAProxy every request's `traceparent`, sampled or not, then costs the agent
   * little more than the sampled ones do, where a span per message, recorded or not, costs more than the transport's
   * own work on it.
   *
   * true: it gets one like any other message, and the SDK's sampler decides whether it records (for a sampler that
   * records the children of parents not sampled).
   */
  spanUnsampled?: boolean;
}

/** The instrumentation scope of the spans: this package. */
export const SPOE_TRACER_NAME = 'nestjs-spoe';

/** Attribute names of a message's span (the peer's are OpenTelemetry's `network.peer.*`). */
export const SPOE_SPAN_ATTRIBUTES = Object.freeze({
  message: 'spoe.message',
  streamId: 'spoe.stream_id',
  frameId: 'spoe.frame_id',
  engineId: 'spoe.engine_id',
  outcome: 'spoe.outcome',
} as const);

// The API's singletons, read once: through the package's exports (getters), every message would pay their lookups.
const CONTEXTS = context;
const PROPAGATION = propagation;
const TRACE = trace;
const SERVER_SPAN = SpanKind.SERVER;
/** The longest count {@link SpoeTracing} keeps between two started traces: V8's small integers go to 2^30 - 1. */
const MAX_GAP_PART = 2 ** 30 - 1;

const EMPTY = Buffer.alloc(0);
/** Where a message's `traceparent` lies: one for every message, as messages are traced one at a time. */
const TRACEPARENT_BYTES: ByteSpan = { buffer: EMPTY, start: 0, end: 0 };
/** The propagation fields read along with `traceparent` when it is not sampled (the rest disable that shortcut). */
const TRACE_CONTEXT_FIELDS = new Set([TRACEPARENT, 'tracestate']);

/** Reads a message's STRING arguments as a propagation carrier (the first argument of a name wins). */
const ARGUMENTS: TextMapGetter<SpoeMessage> = {
  keys: (message) => message.args.map((argument) => argument.name),
  get: (message, key) => {
    const value = message.get(key);
    return typeof value === 'string' ? value : undefined;
  },
};

/**
 * OpenTelemetry spans of the transport ({@link SpoeObserver}): one SERVER span per SPOE message, named
 * `spoe <message>`, around its handlers (guards, interceptors, pipes, filters included), which run in its context —
 * so spans of the database and cache calls they make are its children. A span per message, not per NOTIFY: each
 * message is one decision with its own handler, outcome and, from HAProxy, its own `traceparent`; nearly every NOTIFY
 * carries one message, and the messages of one NOTIFY share its `spoe.stream_id` and `spoe.frame_id`.
 *
 * A message's trace is its own, as an HTTP request's is: read from its arguments into the root context, as
 * OpenTelemetry's HTTP server instrumentation reads a request's headers, and begun there when it carries none; not
 * in the context that happened to be active where the transport reads its socket.
 *
 * Attributes: `spoe.message`, `spoe.stream_id`, `spoe.frame_id`, `spoe.engine_id`, `network.peer.address` and
 * `network.peer.port` (or `network.transport` `unix`), and `spoe.outcome` (ok, failed, deadline). A handler that failed
 * records its exception; a failure or a deadline sets the status to ERROR.
 */
export class SpoeTracing implements SpoeObserver {
  readonly tracer: Tracer;
  private readonly propagate: boolean;
  private readonly spanUnsampled: boolean;
  /** The share of the messages carrying no trace that start one (see {@link SpoeTracingOptions.startTraces}). */
  private readonly startRatio: number;
  /**
   * Counts down the messages carrying no trace, to the next that starts one when {@link gapEnds} (see {@link nextGap}):
   * a small integer, which V8 keeps unboxed.
   */
  private untilStart = 0;
  private gapEnds = false;
  private fields: readonly string[] | undefined;
  /** The length of the shortest of `fields`. */
  private shortestField = Infinity;
  /**
   * Whether `fields` has `traceparent` and `spanUnsampled` is off: then a message whose `traceparent` says not
   * sampled, and which carries none of `otherFields`, gets no span (see {@link UnsampledScope}).
   */
  private readsTraceparent = false;
  /** The fields other than `traceparent` and `tracestate` (of a composite propagator: baggage, B3…). */
  private otherFields: readonly string[] = [];
  private shortestOtherField = Infinity;
  private readonly detach = new Map<SpoeServer, () => void>();
  private readonly connections = new WeakMap<SpoeConnectionInfo, Attributes>();

  constructor(options: SpoeTracingOptions = {}) {
    const provider = options.tracerProvider ?? TRACE.getTracerProvider();
    this.tracer = provider.getTracer(SPOE_TRACER_NAME);
    this.propagate = options.propagate ?? true;
    this.spanUnsampled = options.spanUnsampled ?? false;
    this.startRatio = startRatio(options.startTraces);
    this.nextGap();
  }

  /** Traces the messages `server` handles from now on. */
  attach(server: SpoeServer): void {
    if (!this.detach.has(server)) this.detach.set(server, server.observe(this));
  }

  /** Stops tracing `server`. */
  release(server: SpoeServer): void {
    this.detach.get(server)?.();
    this.detach.delete(server);
  }

  /** @internal */
  messageScope(
    message: SpoeMessage,
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
  ): SpoeMessageScope | undefined {
    let parent: Context | undefined;
    if (this.propagate) {
      const fields = this.fields ?? this.readFields();
      const traceparent = this.readsTraceparent ? message.indexOf(TRACEPARENT) : -1;
      if (traceparent >= 0 && this.notSampled(message, traceparent)) {
        return new UnsampledScope(message);
      }
      if (traceparent >= 0 || message.hasAnyOf(fields, this.shortestField)) {
        parent = PROPAGATION.extract(ROOT_CONTEXT, message, ARGUMENTS);
        if (TRACE.getSpanContext(parent) !== undefined)
          return this.open(message, streamId, frameId, connection, parent);
      }
    }
    if (--this.untilStart > 0) return undefined;
    const starts = this.gapEnds;
    this.nextGap();
    if (!starts) return undefined;
    return this.open(message, streamId, frameId, connection, parent ?? ROOT_CONTEXT);
  }

  /** The span of `message`, child of the span of `parent` if it has one. */
  private open(
    message: SpoeMessage,
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
    parent: Context,
  ): SpoeMessageScope {
    // The sampler sees the message name; the rest is set only on a span that records (most are not, once sampled).
    const span = this.tracer.startSpan(
      `spoe ${message.name}`,
      { kind: SERVER_SPAN, attributes: { [SPOE_SPAN_ATTRIBUTES.message]: message.name } },
      parent,
    );
    if (span.isRecording()) {
      span.setAttributes(this.connectionAttributes(connection));
      span.setAttribute(SPOE_SPAN_ATTRIBUTES.streamId, spanId(streamId));
      span.setAttribute(SPOE_SPAN_ATTRIBUTES.frameId, spanId(frameId));
    }
    return new SpanScope(span, TRACE.setSpan(parent, span));
  }

  /**
   * Draws how many messages carrying no trace come until the next that starts one, the last included: the number of
   * independent draws of probability `startRatio` until one succeeds (geometric), drawn once per started trace rather
   * than a random number per message. A gap beyond a small integer is counted in parts, drawing afresh after each (the
   * same distribution: having waited does not change what remains to wait); with 0, no part ever ends the gap.
   */
  private nextGap(): void {
    const ratio = this.startRatio;
    const gap =
      ratio === 1 ? 1 : ratio === 0 ? Infinity : 1 + Math.floor(Math.log(1 - Math.random()) / Math.log1p(-ratio));
    this.gapEnds = gap <= MAX_GAP_PART;
    this.untilStart = this.gapEnds ? gap : MAX_GAP_PART;
  }

  /** The global propagator's fields, read at the first message. */
  private readFields(): readonly string[] {
    const fields = (this.fields = PROPAGATION.fields());
    this.shortestField = shortest(fields);
    this.readsTraceparent = !this.spanUnsampled && fields.includes(TRACEPARENT);
    this.otherFields = fields.filter((name) => !TRACE_CONTEXT_FIELDS.has(name));
    this.shortestOtherField = shortest(this.otherFields);
    return fields;
  }

  /**
   * Whether `message`'s (first) `traceparent`, argument `index`, is a valid W3C one that says its request is not
   * sampled, and nothing else it carries may bring another trace (another propagator's field): read from its bytes,
   * where the propagator would decode, match and copy it.
   */
  private notSampled(message: SpoeMessage, index: number): boolean {
    const bytes = TRACEPARENT_BYTES;
    if (!message.stringBytesAt(index, bytes)) return false;
    const sampled = traceparentSampled(bytes.buffer, bytes.start, bytes.end);
    bytes.buffer = EMPTY;
    return sampled === Traceparent.NotSampled && !message.hasAnyOf(this.otherFields, this.shortestOtherField);
  }

  /** The attributes of a connection's spans (peer, engine-id), built once per connection. */
  private connectionAttributes(connection: SpoeConnectionInfo): Attributes {
    let attributes = this.connections.get(connection);
    if (!attributes) {
      attributes = peerAttributes(connection.remoteAddress);
      if (connection.engineId !== undefined) attributes[SPOE_SPAN_ATTRIBUTES.engineId] = connection.engineId;
      this.connections.set(connection, attributes);
    }
    return attributes;
  }
}

/**
 * The scope of a message whose `traceparent` says its request is not sampled, and the context its handlers run in:
 * its trace's, as the propagator reads it, but read only when something asks (an instrumentation starting a span, a
 * propagator injecting the trace into a call), which a handler's own code rarely does. The message and its frame are
 * kept until then: its arguments are views on the frame, which stays valid as long as the message is held. One object
 * for both, as every message of such an edge's traffic has one.
 */
class UnsampledScope implements Context, SpoeMessageScope {
  private context: Context | undefined;

  constructor(private message: SpoeMessage | undefined) {}

  run<T>(fn: () => T): T {
    return CONTEXTS.with(this, fn);
  }

  getValue(key: symbol): unknown {
    return this.read().getValue(key);
  }

  setValue(key: symbol, value: unknown): Context {
    return this.read().setValue(key, value);
  }

  deleteValue(key: symbol): Context {
    return this.read().deleteValue(key);
  }

  private read(): Context {
    if (this.context === undefined) {
      this.context = PROPAGATION.extract(ROOT_CONTEXT, this.message!, ARGUMENTS);
      this.message = undefined;
    }
    return this.context;
  }
}

class SpanScope implements SpoeMessageScope {
  constructor(
    private readonly span: Span,
    private readonly context: Context,
  ) {}

  run<T>(fn: () => T): T {
    return CONTEXTS.with(this.context, fn);
  }

  end(outcome: SpoeMessageOutcome, error: unknown): void {
    const span = this.span;
    span.setAttribute(SPOE_SPAN_ATTRIBUTES.outcome, outcome);
    if (outcome === 'failed') {
      if (error instanceof Error) span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: describeFailure(error) });
    } else if (outcome === 'deadline') {
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'deadline passed' });
    }
    span.end();
  }
}

/** The length of the shortest of `names`; Infinity for none. */
function shortest(names: readonly string[]): number {
  let length = Infinity;
  for (const name of names) if (name.length < length) length = name.length;
  return length;
}

function startRatio(startTraces: boolean | number | undefined): number {
  if (startTraces === undefined || startTraces === true) return 1;
  if (startTraces === false) return 0;
  if (typeof startTraces !== 'number' || !(startTraces >= 0 && startTraces <= 1)) {
    throw new SpoeOptionsError(`startTraces must be a boolean or a number in [0, 1], got ${String(startTraces)}`);
  }
  return startTraces;
}

function describeFailure(error: unknown): string {
  if (error === undefined) return 'another message of the NOTIFY failed';
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(error);
}

function spanId(id: SpopId): number | string {
  return typeof id === 'bigint' ? id.toString() : id;
}

/** `network.peer.*` of a connection's remote address: `ip:port`, `[v6]:port` or a Unix socket path. */
function peerAttributes(remoteAddress: string): Attributes {
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(remoteAddress);
  if (!match) return { 'network.peer.address': remoteAddress, 'network.transport': 'unix' };
  return { 'network.peer.address': match[1], 'network.peer.port': Number(match[2]) };
}
