import { setTimeout as sleep } from 'node:timers/promises';
import { SpoeIp } from '../../libs/spoe/src';
import { DecodedAction, SpoeClient, SpoeClientOptions } from '../../libs/spoe/src/testing';
import { ProbedAgent } from './agents';
import { MemoryUsage } from './probe-client';
import { median } from '../support/stats';

export interface IdleSettings {
  readonly connections: number;
  /** Idle rounds, each in a fresh agent: RSS moves by a few MB from one process to the next, a single one misleads. */
  readonly rounds: number;
  /** Connections opened (or closed) at once: a batch completes its HELLOs far within the agent's HELLO timeout. */
  readonly batch: number;
  /** Pause before each measure, for the agent to finish what the last step started (socket teardown, timers). */
  readonly settleMs: number;
  /** Connections opened, used once and closed before the baseline: code paths compiled and caches filled first. */
  readonly warmupConnections: number;
}

/** Bytes per connection: (after − before) / connections. */
export interface PerConnection {
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

export interface FreshNotifyCheck {
  readonly ok: boolean;
  readonly latencyMs: number;
  readonly detail: string;
}

/** One fresh agent: N connections after their HELLO, idle. Measures are taken after a forced GC. */
export interface IdleRound {
  /** Wall time to open all connections, and the slowest batch (HELLOs of one batch run concurrently). */
  readonly openMs: number;
  readonly slowestBatchMs: number;
  readonly baseline: MemoryUsage;
  readonly open: MemoryUsage;
  /** The same connections once each has served one NOTIFY (HAProxy's connections between two bursts). */
  readonly afterOneNotifyEach: MemoryUsage;
  readonly closed: MemoryUsage;
  /** The figure: (open − baseline) / N. */
  readonly perConnection: PerConnection;
  /** (afterOneNotifyEach − baseline) / N. */
  readonly perConnectionAfterNotify: PerConnection;
  /** closed − baseline, bytes (whole process, not per connection). */
  readonly residualAfterClose: PerConnection;
  /** Of the N connections, those the agent closed before the bench closed them (expected 0). */
  readonly closedByAgent: number;
  /** A NOTIFY on a new connection while the N are open. */
  readonly freshNotify: FreshNotifyCheck;
}

type Log = (line: string) => void;

/** What HAProxy announces in its HAPROXY-HELLO (SPOP 2.0, 3.1+), with the engine-id one HAProxy process uses. */
function clientOptions(port: number): SpoeClientOptions {
  return {
    host: '127.0.0.1',
    port,
    supportedVersions: '2.0',
    maxFrameSize: 16380,
    capabilities: ['pipelining'],
    engineId: 'b5a7d7c2-3c5e-4a43-9c59-bench-memory',
    timeoutMs: 10_000,
  };
}

const CLIENT_IP = SpoeIp.parse('192.0.2.10');
/** After the forced GC, V8 hands freed pages back to the OS from a background thread: RSS is read once it has. */
const AFTER_GC_MS = 1000;

function notifyOnce(client: SpoeClient): Promise<DecodedAction[]> {
  return client.notify('check-client-ip', { ip: CLIENT_IP });
}

/** Runs `each` over `items`, `batch` at a time; returns the longest batch in ms. */
async function inBatches<T>(items: readonly T[], batch: number, each: (item: T) => Promise<unknown>): Promise<number> {
  let slowest = 0;
  for (let i = 0; i < items.length; i += batch) {
    const start = performance.now();
    await Promise.all(items.slice(i, i + batch).map(each));
    slowest = Math.max(slowest, performance.now() - start);
  }
  return slowest;
}

/** Opens `count` connections, `batch` at a time; on any failure closes those already open and rethrows. */
async function openConnections(
  port: number,
  count: number,
  batch: number,
): Promise<{ clients: SpoeClient[]; slowestBatchMs: number }> {
  const clients: SpoeClient[] = [];
  const slots = Array.from({ length: count }, (_, i) => i);
  try {
    const slowestBatchMs = await inBatches(slots, batch, async () =>
      clients.push(await SpoeClient.connect(clientOptions(port))),
    );
    return { clients, slowestBatchMs };
  } catch (error) {
    for (const client of clients) client.destroy();
    throw error;
  }
}

function closeAll(clients: readonly SpoeClient[], batch: number): Promise<number> {
  return inBatches(clients, batch, (client) => client.close());
}

async function measure(agent: ProbedAgent, settleMs: number): Promise<MemoryUsage> {
  await sleep(settleMs);
  await agent.probe.stats(true);
  await sleep(AFTER_GC_MS);
  return (await agent.probe.stats(false)).memory;
}

function perConnection(before: MemoryUsage, after: MemoryUsage, connections: number): PerConnection {
  const per = (key: keyof PerConnection): number => (after[key] - before[key]) / connections;
  return { rss: per('rss'), heapUsed: per('heapUsed'), external: per('external'), arrayBuffers: per('arrayBuffers') };
}

/** Each field's median over the rounds. */
export function medianPerConnection(values: readonly PerConnection[]): PerConnection {
  const of = (key: keyof PerConnection): number => median(values.map((v) => v[key]));
  return { rss: of('rss'), heapUsed: of('heapUsed'), external: of('external'), arrayBuffers: of('arrayBuffers') };
}

/** A NOTIFY on a new connection must still be answered (with the ip_score variable) while the others are open. */
async function checkFreshNotify(port: number): Promise<FreshNotifyCheck> {
  const start = performance.now();
  let client: SpoeClient | undefined;
  try {
    client = await SpoeClient.connect(clientOptions(port));
    const actions = await notifyOnce(client);
    const latencyMs = performance.now() - start;
    const detail = actions.map((a) => `${a.name}=${String(a.value)}`).join(', ') || 'no action';
    return { ok: actions.some((a) => a.name === 'ip_score'), latencyMs, detail };
  } catch (error) {
    return { ok: false, latencyMs: performance.now() - start, detail: (error as Error).message };
  } finally {
    await client?.close();
  }
}

/** Code paths compiled and caches filled before the baseline: the first connection's one-off costs are not theirs. */
async function warmUp(agent: ProbedAgent, settings: IdleSettings): Promise<MemoryUsage> {
  const warm = await openConnections(agent.port, settings.warmupConnections, settings.batch);
  await inBatches(warm.clients, settings.batch, notifyOnce);
  await closeAll(warm.clients, settings.batch);
  return measure(agent, settings.settleMs);
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
const memoryText = (m: MemoryUsage): string => `${mb(m.rss)} RSS, ${mb(m.heapUsed)} heap`;

/** Baseline; N idle connections; a NOTIFY on a fresh connection meanwhile; one NOTIFY on each; all closed. */
export async function runIdleRound(agent: ProbedAgent, settings: IdleSettings, log: Log): Promise<IdleRound> {
  const { connections: n, batch, settleMs } = settings;
  const baseline = await warmUp(agent, settings);
  const openStart = performance.now();
  const { clients, slowestBatchMs } = await openConnections(agent.port, n, batch);
  const openMs = performance.now() - openStart;
  let closedByAgent = 0;
  for (const client of clients) void client.whenClosed().then(() => closedByAgent++);
  const open = await measure(agent, settleMs);
  const freshNotify = await checkFreshNotify(agent.port);
  await inBatches(clients, batch, notifyOnce);
  const afterOneNotifyEach = await measure(agent, settleMs);
  const closedBeforeOurClose = closedByAgent;
  await closeAll(clients, batch);
  const closed = await measure(agent, settleMs);
  const perConn = perConnection(baseline, open, n);
  log(
    `  baseline ${memoryText(baseline)}; ${n} open (in ${openMs.toFixed(0)} ms): ${memoryText(open)}, ${(perConn.rss / 1000).toFixed(2)} kB RSS each`,
  );
  log(
    `  fresh NOTIFY ${freshNotify.ok ? 'answered' : 'FAILED'} in ${freshNotify.latencyMs.toFixed(1)} ms; after one NOTIFY each: ${memoryText(afterOneNotifyEach)};` +
      ` all closed: ${memoryText(closed)}`,
  );
  return {
    openMs,
    slowestBatchMs,
    baseline,
    open,
    afterOneNotifyEach,
    closed,
    perConnection: perConn,
    perConnectionAfterNotify: perConnection(baseline, afterOneNotifyEach, n),
    residualAfterClose: perConnection(baseline, closed, 1),
    closedByAgent: closedBeforeOurClose,
    freshNotify,
  };
}
