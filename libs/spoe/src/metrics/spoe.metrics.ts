import { Counter, Gauge, Metric, MetricValueWithName } from 'prom-client';
import { register as defaultRegistry, Registry } from 'prom-client';
import { SpopStatus } from '../protocol/status';
import type { SpoeServer } from '../server/spoe.server';
import type { SpoeTlsFailure } from '../server/spoe.tls';
import type { SpoeHelloOutcome, SpoeMessageOutcome, SpoeObserver, SpoePauseCause } from '../server/spoe.observer';

/** Options of {@link SpoeMetrics} (and of `SpoeMetricsModule.forRoot`). */
export interface SpoeMetricsOptions {
  /** Where the series are registered. Default: prom-client's global registry (what most setups scrape). */
  registry?: Registry;
  /** Prefix of every series name. Default `spoe_`. */
  prefix?: string;
  /** Upper bounds of the handler duration histogram's buckets, in seconds. Default {@link SPOE_DURATION_BUCKETS}. */
  durationBuckets?: readonly number[];
}

/** From 10 µs (a handler answering from memory) to 2.5 s (past any sensible SPOE deadline). */
export const SPOE_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
]);

/** The `message` label of messages no handler has: one value whatever names a peer sends. */
export const SPOE_UNHANDLED_MESSAGE = '(unhandled)';

/** What one message name counted: outcomes, and its durations by bucket (the last one past every bound). */
class MessageCounts {
  ok = 0;
  failed = 0;
  deadline = 0;
  unhandled = 0;
  sum = 0;
  count = 0;
  readonly buckets: Float64Array;

  constructor(bounds: number) {
    this.buckets = new Float64Array(bounds + 1);
  }
}

/** NOTIFY read and ACKs written, as SpoeServer's stats count them. */
interface Traffic {
  readonly notifies: number;
  readonly acks: number;
  readonly ackBytes: number;
}

function trafficOf(server: SpoeServer): Traffic {
  const { notifies, acks, ackBytes } = server.stats;
  return { notifies, acks, ackBytes };
}

/** `sum` plus what was counted between `since` and `now`. */
function sumTraffic(sum: Traffic, now: Traffic, since: Traffic): Traffic {
  return {
    notifies: sum.notifies + now.notifies - since.notifies,
    acks: sum.acks + now.acks - since.acks,
    ackBytes: sum.ackBytes + now.ackBytes - since.ackBytes,
  };
}

/** Counts of one label, by its value. */
type Tally = Map<string, number>;

/**
 * The transport's Prometheus series on the registry given, counted as they happen ({@link SpoeObserver}). Attach it
 * to each SpoeServer (`metrics.attach(server)`), or let `SpoeMetricsModule` attach it to every server of the app.
 *
 * Counting is a few additions to plain numbers: prom-client reads them at scrape time (its own `inc` and `observe`
 * hash their labels on every call, which per frame would cost more than the transport itself). Label values are
 * bounded: message names are those of registered handlers (others count as `(unhandled)`), statuses are SPOP's
 * (others count as `other`).
 */
export class SpoeMetrics implements SpoeObserver {
  readonly registry: Registry;
  /** The servers counted, with their traffic when they were attached: what they carried before is not counted. */
  private readonly servers = new Map<SpoeServer, Traffic>();
  private readonly detach = new Map<SpoeServer, () => void>();
  /** The traffic of the servers released, while they were attached. */
  private released: Traffic = { notifies: 0, acks: 0, ackBytes: 0 };
  private readonly bounds: readonly number[];
  private readonly messages = new Map<string, MessageCounts>();
  private lastName: string | undefined;
  private lastCounts: MessageCounts | undefined;
  private accepted = 0;
  private refused = 0;
  private readonly hellos: Tally = new Map();
  private readonly agentDisconnects: Tally = new Map();
  private readonly haproxyDisconnects: Tally = new Map();
  private readonly protocolErrors: Tally = new Map();
  private readonly pauses: Tally = new Map();
  private readonly tlsRefusals: Tally = new Map();

  constructor(options: SpoeMetricsOptions = {}) {
    this.registry = options.registry ?? defaultRegistry;
    this.bounds = [...(options.durationBuckets ?? SPOE_DURATION_BUCKETS)].sort((a, b) => a - b);
    const p = options.prefix ?? 'spoe_';
    const registers = [this.registry];
    const servers = this.servers;
    const total = (read: () => number) =>
      function (this: Counter) {
        this.reset();
        this.inc(read());
      };
    const tally = (label: string, read: () => Tally) =>
      function (this: Counter<string>) {
        this.reset();
        for (const [value, count] of read()) this.inc({ [label]: value }, count);
      };
    const stat = (read: (server: SpoeServer) => number) =>
      function (this: Gauge) {
        let sum = 0;
        for (const server of servers.keys()) sum += read(server);
        this.set(sum);
      };
    // NOTIFY and ACKs are counted by the servers themselves (cheaper than an observer call per frame): read here.
    const traffic = (key: keyof Traffic) => total(() => this.traffic()[key]);

    new Counter({
      name: `${p}connections_accepted_total`,
      help: 'HAProxy connections accepted.',
      registers,
      collect: total(() => this.accepted),
    });
    new Counter({
      name: `${p}connections_refused_total`,
      help: 'HAProxy connections refused, maxConnections being open (each sent AGENT-DISCONNECT status 13).',
      registers,
      collect: total(() => this.refused),
    });
    new Gauge({
      name: `${p}connections_open`,
      help: 'HAProxy connections open (health checks included while they last).',
      registers,
      collect: stat((server) => server.stats.connections),
    });
    new Counter({
      name: `${p}hellos_total`,
      help: 'HAPROXY-HELLO frames by outcome: accepted, healthcheck, refused.',
      labelNames: ['outcome'],
      registers,
      collect: tally('outcome', () => this.hellos),
    });
    new Counter({
      name: `${p}notify_frames_total`,
      help: 'NOTIFY frames received (a fragmented one once).',
      registers,
      collect: traffic('notifies'),
    });
    new Gauge({
      name: `${p}notify_in_flight`,
      help: 'NOTIFY frames received and not yet acknowledged.',
      registers,
      collect: stat((server) => server.stats.inFlight),
    });
    new Gauge({
      name: `${p}notify_in_flight_bytes`,
      help: 'Payload bytes of the NOTIFY in flight, counted against maxInFlightBytes.',
      registers,
      collect: stat((server) => server.stats.inFlightBytes),
    });
    const messages = this.messages;
    new Counter({
      name: `${p}messages_total`,
      help: 'SPOE messages by name and outcome: ok, failed (threw or returned no actions), deadline, unhandled.',
      labelNames: ['message', 'outcome'],
      registers,
      collect(this: Counter<'message' | 'outcome'>) {
        this.reset();
        for (const [message, counts] of messages) {
          for (const outcome of ['ok', 'failed', 'deadline', 'unhandled'] as const) {
            if (counts[outcome] > 0) this.inc({ message, outcome }, counts[outcome]);
          }
        }
      },
    });
    new DurationHistogram(
      `${p}handler_duration_seconds`,
      "Time from a NOTIFY's dispatch to each message handler's answer (failed and expired ones included).",
      this.bounds,
      messages,
    ).register(this.registry);
    new Counter({ name: `${p}acks_total`, help: 'ACK frames sent.', registers, collect: traffic('acks') });
    new Counter({
      name: `${p}ack_bytes_total`,
      help: 'Bytes of the ACK frames sent, length prefix included.',
      registers,
      collect: traffic('ackBytes'),
    });
    new Counter({
      name: `${p}agent_disconnects_total`,
      help: 'AGENT-DISCONNECT frames sent, by SPOP status code.',
      labelNames: ['status'],
      registers,
      collect: tally('status', () => this.agentDisconnects),
    });
    new Counter({
      name: `${p}haproxy_disconnects_total`,
      help: 'HAPROXY-DISCONNECT frames received, by SPOP status code (invalid: not decodable).',
      labelNames: ['status'],
      registers,
      collect: tally('status', () => this.haproxyDisconnects),
    });
    new Counter({
      name: `${p}protocol_errors_total`,
      help: 'Protocol errors of HAProxy connections, by the SPOP status code answered.',
      labelNames: ['status'],
      registers,
      collect: tally('status', () => this.protocolErrors),
    });
    new Counter({
      name: `${p}backpressure_pauses_total`,
      help: 'Times a connection stopped reading, by cause: in-flight, unflushed, unsent, in-flight-bytes.',
      labelNames: ['cause'],
      registers,
      collect: tally('cause', () => this.pauses),
    });
    new Counter({
      name: `${p}tls_handshake_failures_total`,
      help: 'TLS handshakes of new connections that failed, by reason: certificate, timeout, closed, protocol.',
      labelNames: ['reason'],
      registers,
      collect: tally('reason', () => this.tlsRefusals),
    });
  }

  /** Counts what `server` does from now on, and its connections and in-flight NOTIFY in the gauges. */
  attach(server: SpoeServer): void {
    if (this.servers.has(server)) return;
    this.servers.set(server, trafficOf(server));
    this.detach.set(server, server.observe(this));
  }

  /** Stops counting `server`. */
  release(server: SpoeServer): void {
    const since = this.servers.get(server);
    if (!since) return;
    this.detach.get(server)?.();
    this.detach.delete(server);
    this.servers.delete(server);
    this.released = sumTraffic(this.released, trafficOf(server), since);
  }

  /** NOTIFY and ACKs of the servers attached now and before, since they were attached. */
  private traffic(): Traffic {
    let sum = this.released;
    for (const [server, since] of this.servers) sum = sumTraffic(sum, trafficOf(server), since);
    return sum;
  }

  /** @internal */
  connectionAccepted(): void {
    this.accepted++;
  }

  /** @internal */
  connectionRefused(): void {
    this.refused++;
  }

  /** @internal */
  hello(outcome: SpoeHelloOutcome): void {
    count(this.hellos, outcome);
  }

  /** @internal */
  message(name: string | undefined, outcome: SpoeMessageOutcome, seconds: number): void {
    // Frame after frame the same name comes back, as the same string: one comparison, no hash.
    let counts = name === this.lastName ? this.lastCounts : undefined;
    if (counts === undefined) {
      const message = name ?? SPOE_UNHANDLED_MESSAGE;
      counts = this.messages.get(message);
      if (counts === undefined) this.messages.set(message, (counts = new MessageCounts(this.bounds.length)));
      this.lastName = name;
      this.lastCounts = counts;
    }
    // A property by its literal name, not counts[outcome]: a keyed access by string costs a lookup per message.
    switch (outcome) {
      case 'ok':
        counts.ok++;
        break;
      case 'failed':
        counts.failed++;
        break;
      case 'deadline':
        counts.deadline++;
        break;
      default:
        counts.unhandled++;
        return;
    }
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]) i++;
    counts.buckets[i]++;
    counts.sum += seconds;
    counts.count++;
  }

  /** @internal */
  agentDisconnect(status: number): void {
    count(this.agentDisconnects, statusLabel(status));
  }

  /** @internal */
  haproxyDisconnect(status: number | undefined): void {
    count(this.haproxyDisconnects, status === undefined ? 'invalid' : statusLabel(status));
  }

  /** @internal */
  protocolError(status: number): void {
    count(this.protocolErrors, statusLabel(status));
  }

  /** @internal */
  paused(cause: SpoePauseCause): void {
    count(this.pauses, cause);
  }

  /** @internal */
  tlsRefused(reason: SpoeTlsFailure): void {
    count(this.tlsRefusals, reason);
  }
}

/**
 * The handler duration histogram, exposed from the counts SpoeMetrics keeps. prom-client's Histogram hashes its labels
 * on every `observe` (about 300 ns, more than a whole NOTIFY costs the transport), so this is a metric of its own: the
 * registry needs only its name, `get()` (the values, as a Histogram gives them) and `reset()`.
 */
class DurationHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    private readonly counts: Map<string, MessageCounts>,
  ) {}

  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: Array<MetricValueWithName<'message' | 'le'>>;
  }> {
    const values: Array<MetricValueWithName<'message' | 'le'>> = [];
    const name = this.name;
    for (const [message, counts] of this.counts) {
      if (counts.count === 0) continue;
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += counts.buckets[i];
        values.push({ metricName: `${name}_bucket`, labels: { message, le: this.bounds[i] }, value: cumulative });
      }
      values.push({ metricName: `${name}_bucket`, labels: { message, le: '+Inf' }, value: counts.count });
      values.push({ metricName: `${name}_sum`, labels: { message }, value: counts.sum });
      values.push({ metricName: `${name}_count`, labels: { message }, value: counts.count });
    }
    return { name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const counts of this.counts.values()) {
      counts.buckets.fill(0);
      counts.sum = 0;
      counts.count = 0;
    }
  }

  /** Registers it: prom-client's Registry takes any metric with a name, `get()` and `reset()`. */
  register(registry: Registry): void {
    registry.registerMetric(this as unknown as Metric);
  }
}

function count(tally: Tally, key: string): void {
  tally.set(key, (tally.get(key) ?? 0) + 1);
}

/** A status as a label: SPOP's codes as numbers, anything a peer made up as `other`. */
function statusLabel(status: number): string {
  return SpopStatus[status] === undefined ? 'other' : String(status);
}
