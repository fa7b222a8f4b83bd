/**
 * The targets, judged from the results of one run: what each measured, and whether it met the target. Only
 * reported: numbers vary with the machine, and a shared machine moves them (see "other cores" in each table).
 */
import type { FramesResults, PairedCost, Summary as FramesSummary } from '../frames.bench';
import type { HaproxyResults } from '../haproxy.bench';
import type { MemoryResults } from '../memory.bench';
import { fixed, int, signed } from '../support/report';
import type { WorkersResults } from '../workers.bench';
import type { CodecResults, RunRecord } from './types';

export interface AllResults {
  readonly run?: RunRecord;
  readonly codec?: CodecResults;
  readonly frames?: FramesResults;
  readonly workers?: WorkersResults;
  readonly memory?: MemoryResults;
  readonly haproxy?: HaproxyResults;
}

/** `informational`: a cost the report shows with no target to meet (TLS's). */
export type Verdict = 'met' | 'MISSED' | 'not measured' | 'informational';

export interface TargetRow {
  readonly target: string;
  readonly measured: string;
  readonly verdict: Verdict;
}

const NOT_MEASURED = (target: string, why: string): TargetRow => ({ target, measured: why, verdict: 'not measured' });

function verdict(ok: boolean): Verdict {
  return ok ? 'met' : 'MISSED';
}

const times = (n: number): string => `${fixed(2)(n)}×`;
const kB = (bytes: number): string => `${fixed(2)(bytes / 1000)} kB`;
const MB = (bytes: number): string => `${fixed(1)(bytes / 1e6)} MB`;
const pct = (n: number): string => `${n >= 0 ? '+' : ''}${fixed(1)(n)}%`;

// ------------------------------------------------------------------------------------------------------- pairing

/**
 * A ratio between two agents is judged round by round, then the median of those: within a round the agents run back
 * to back, while rounds are minutes apart, and this cloud machine's speed drifts between them (once every agent of a
 * round ran a third slower, ceiling included, with nothing else running). The ratio of two medians mixes rounds and
 * lets one slow round decide; the median of per-round ratios compares like with like.
 */
function pairedRatios<M>(
  measurements: readonly M[],
  roundOf: (m: M) => number,
  value: (m: M, side: 'a' | 'b') => number | undefined,
): number[] {
  const rounds = [...new Set(measurements.map(roundOf))].sort((x, y) => x - y);
  const ratios: number[] = [];
  for (const round of rounds) {
    const inRound = measurements.filter((m) => roundOf(m) === round);
    const a = inRound.map((m) => value(m, 'a')).find((v) => v !== undefined);
    const b = inRound.map((m) => value(m, 'b')).find((v) => v !== undefined);
    if (a !== undefined && b !== undefined && b !== 0) ratios.push(a / b);
  }
  return ratios;
}

function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length === 0 ? NaN : sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const perRound = (ratios: readonly number[]): string => `per round ${ratios.map(times).join(', ')}`;

// ------------------------------------------------------------------------------------------------------- frames

function framesRow(
  frames: FramesResults | undefined,
  connections: number,
  inflight: number,
): { example?: FramesSummary; ceiling?: FramesSummary } {
  const find = (agent: string) =>
    frames?.summary.find((s) => s.agent === agent && s.connections === connections && s.inflight === inflight);
  return { example: find('example'), ceiling: find('ceiling') };
}

/** Per round, agent `a`'s `value` over agent `b`'s (example's over the ceiling's by default), at one configuration. */
function framesRatios(
  frames: FramesResults,
  connections: number,
  inflight: number,
  value: (m: FramesResults['measurements'][number]) => number,
  a = 'example',
  b = 'ceiling',
): number[] {
  const here = frames.measurements.filter((m) => m.connections === connections && m.inflight === inflight);
  return pairedRatios(
    here,
    (m) => m.round,
    (m, side) => (m.agent === (side === 'a' ? a : b) ? value(m) : undefined),
  );
}

/** The side-by-side measure of `subject` against `reference` at 4×16, if the run has one. */
function pairedCost(frames: FramesResults | undefined, subject: string, reference: string): PairedCost | undefined {
  return frames?.paired?.find(
    (p) => p.subject === subject && p.reference === reference && p.connections === 4 && p.inflight === 16,
  );
}

/** A side-by-side measure in words: the medians of the per-pair ratios, and the pairs. */
export function describePaired(p: PairedCost): string {
  const list = (ratios: readonly number[]) => ratios.map((r) => fixed(2)(r)).join(', ');
  return (
    `CPU per frame ${times(medianOf(p.cpuRatios))} (per pair of ${p.windowMs} ms windows ${list(p.cpuRatios)}; ` +
    `${fixed(2)(p.subjectCpuUsPerFrame)} vs ${fixed(2)(p.referenceCpuUsPerFrame)} µs), frames/s ${times(medianOf(p.framesPerSecondRatios))}`
  );
}

/**
 * What observing the transport costs at 4×16: `agent` (server plus metrics, or plus tracing) against `server`, in
 * frames/s (the target: at most `limit` of it lost) and in the agent's CPU per frame. Judged on the side-by-side
 * measure when the run has one (the rounds' ratios carry the machine's drift between measures minutes apart), on the
 * rounds otherwise; both are shown.
 */
function observabilityCost(frames: FramesResults | undefined, agent: string, what: string, limit: number): TargetRow {
  const target = `${what} (\`${agent}\`) cost ≤ ${fixed(0)(limit * 100)}% of the \`server\` agent's frames/s at 4×16`;
  const rounds = roundsCost(frames, agent);
  const paired = pairedCost(frames, agent, 'server');
  if (paired) {
    return {
      target,
      measured: `side by side: ${describePaired(paired)}. In the rounds: ${rounds?.text ?? 'not measured'}`,
      verdict: verdict(medianOf(paired.framesPerSecondRatios) >= 1 - limit),
    };
  }
  if (!rounds) return NOT_MEASURED(target, 'bench:frames has no result for it');
  return { target, measured: rounds.text, verdict: verdict(rounds.rate >= 1 - limit) };
}

/** `agent` against `server` in the rounds at 4×16: the median of the per-round frames/s ratios, and in words. */
function roundsCost(frames: FramesResults | undefined, agent: string): { rate: number; text: string } | undefined {
  const find = (name: string) =>
    frames?.summary.find((s) => s.agent === name && s.connections === 4 && s.inflight === 16);
  const [observed, server] = [find(agent), find('server')];
  if (!frames || !observed || !server) return undefined;
  const rates = framesRatios(frames, 4, 16, (m) => m.generator.framesPerSecond, agent, 'server');
  const cpus = framesRatios(frames, 4, 16, (m) => m.agentCpuUsPerFrame, agent, 'server');
  const rate = medianOf(rates);
  return {
    rate,
    text: `${times(rate)} the frames/s (${perRound(rates)}; medians ${int(observed.framesPerSecond)} vs ${int(server.framesPerSecond)}); CPU per frame ${times(medianOf(cpus))} (${fixed(2)(observed.agentCpuUsPerFrame)} vs ${fixed(2)(server.agentCpuUsPerFrame)} µs)`,
  };
}

/**
 * A cost shown with no target, in every configuration: `agent`'s CPU per frame and frames/s against `reference`'s. TLS's
 * (`server-tls` or `server-mtls` against `server-proxied`, the same `server` agent behind the same HAProxy in plain TCP:
 * what TLS adds to the agent, HAProxy's side of it being in "other cores"), the cost of a choice made for security; and
 * the OpenTelemetry SDK's own (`ceiling-traced` against `ceiling`), the floor under tracing's.
 */
function informationalCost(
  frames: FramesResults | undefined,
  agent: string,
  what: string,
  reference: string,
  referenceIs: string,
): TargetRow {
  const target = `${what} (\`${agent}\`): the agent's CPU per frame and frames/s against \`${reference}\` (${referenceIs})`;
  const configs = frames?.settings.configurations ?? [];
  const parts: string[] = [];
  for (const { connections, inflight } of configs) {
    const find = (name: string) =>
      frames?.summary.find((s) => s.agent === name && s.connections === connections && s.inflight === inflight);
    const [measured, base] = [find(agent), find(reference)];
    if (!frames || !measured || !base) continue;
    const cpu = medianOf(framesRatios(frames, connections, inflight, (m) => m.agentCpuUsPerFrame, agent, reference));
    const rate = medianOf(
      framesRatios(frames, connections, inflight, (m) => m.generator.framesPerSecond, agent, reference),
    );
    parts.push(
      `${connections}×${inflight}: CPU per frame ${times(cpu)} (${fixed(2)(measured.agentCpuUsPerFrame)} vs ${fixed(2)(base.agentCpuUsPerFrame)} µs), frames/s ${times(rate)} (${int(measured.framesPerSecond)} vs ${int(base.framesPerSecond)})`,
    );
  }
  const paired = pairedCost(frames, agent, reference);
  if (paired) parts.push(`side by side at 4×16: ${describePaired(paired)}`);
  if (parts.length === 0) return NOT_MEASURED(target, 'bench:frames has no result for it');
  return { target, measured: parts.join('; '), verdict: 'informational' };
}

function frameRateTarget(frames: FramesResults | undefined, connections: number, inflight: number): TargetRow {
  const target = `Example agent ≥ 0.5× the ceiling's frames/s at ${connections}×${inflight}`;
  const { example, ceiling } = framesRow(frames, connections, inflight);
  if (!frames || !example || !ceiling) return NOT_MEASURED(target, 'bench:frames has no result for it');
  const ratios = framesRatios(frames, connections, inflight, (m) => m.generator.framesPerSecond);
  const ratio = medianOf(ratios);
  return {
    target,
    measured: `${times(ratio)} (${perRound(ratios)}; medians ${int(example.framesPerSecond)} vs ${int(ceiling.framesPerSecond)} frames/s)`,
    verdict: verdict(ratio >= 0.5),
  };
}

function p99Target(frames: FramesResults | undefined, connections: number, inflight: number, limit: number): TargetRow {
  const target = `Example agent's p99 at ${connections}×${inflight} ≤ ${limit}× the ceiling's`;
  const { example, ceiling } = framesRow(frames, connections, inflight);
  if (!frames || !example || !ceiling) return NOT_MEASURED(target, 'bench:frames has no result for it');
  const ratios = framesRatios(frames, connections, inflight, (m) => m.generator.p99Us);
  const ratio = medianOf(ratios);
  return {
    target,
    measured: `${times(ratio)} (${perRound(ratios)}; medians ${int(example.p99Us)} vs ${int(ceiling.p99Us)} µs)`,
    verdict: verdict(ratio <= limit),
  };
}

// ------------------------------------------------------------------------------------------------------- HAProxy

function haproxyTargets(haproxy: HaproxyResults | undefined): TargetRow[] {
  const clients = haproxy?.settings.connections ?? 50;
  const rpsTarget = `Through HAProxy 3.4 with ${clients} clients: req/s with SPOE ≥ 0.95× the ceiling agent's`;
  const p99Target = `Through HAProxy 3.4: p99 added by SPOE ≤ 1.5× the ceiling agent's`;
  const runs = haproxy?.measurements.filter((m) => m.version === '3.4') ?? [];
  if (!haproxy || runs.length === 0)
    return [
      NOT_MEASURED(rpsTarget, 'bench:haproxy has no HAProxy 3.4 result'),
      NOT_MEASURED(p99Target, 'bench:haproxy has no HAProxy 3.4 result'),
    ];
  const agentOf = (side: 'a' | 'b'): string => (side === 'a' ? 'example' : 'ceiling');
  const rpsRatios = pairedRatios(
    runs,
    (m) => m.round,
    (m, side) => (m.agent === agentOf(side) && m.frontend === 'spoe' ? m.wrk.requestsPerSecond : undefined),
  );
  // The p99 an agent adds in a round: its SPOE run's p99 less the same round's run without SPOE.
  const added = (round: number, agent: string): number | undefined => {
    const p99 = (frontend: string) =>
      runs.find((m) => m.round === round && m.agent === agent && m.frontend === frontend)?.wrk.latencyUs.p99;
    const [spoe, plain] = [p99('spoe'), p99('no-spoe')];
    return spoe === undefined || plain === undefined ? undefined : spoe - plain;
  };
  const p99Ratios = pairedRatios(
    runs,
    (m) => m.round,
    (m, side) => (m.agent === agentOf(side) ? added(m.round, m.agent) : undefined),
  ).filter((r) => Number.isFinite(r));
  const spoe = (agent: string) =>
    haproxy.summary.find((s) => s.version === '3.4' && s.agent === agent && s.frontend === 'spoe');
  const cost = (agent: string) => haproxy.spoeCost.find((c) => c.version === '3.4' && c.agent === agent);
  const rpsRatio = medianOf(rpsRatios);
  const rps: TargetRow = {
    target: rpsTarget,
    measured: `${times(rpsRatio)} (${perRound(rpsRatios)}; medians ${int(spoe('example')?.requestsPerSecond ?? NaN)} vs ${int(spoe('ceiling')?.requestsPerSecond ?? NaN)} req/s)`,
    verdict: verdict(rpsRatio >= 0.95),
  };
  const medians = `medians ${signed(cost('example')?.addedP99Us ?? NaN)} vs ${signed(cost('ceiling')?.addedP99Us ?? NaN)} µs`;
  // An added p99 at or below zero (the run without SPOE had the worse tail) says nothing of the agent.
  const p99Ratio = medianOf(p99Ratios);
  const p99: TargetRow =
    p99Ratios.length === 0 || !(p99Ratio > 0)
      ? {
          target: p99Target,
          measured: `not measurable (${medians}: an added p99 ≤ 0 is noise)`,
          verdict: 'not measured',
        }
      : {
          target: p99Target,
          measured: `${times(p99Ratio)} (${perRound(p99Ratios)}; ${medians})`,
          verdict: verdict(p99Ratio <= 1.5),
        };
  return [rps, p99];
}

// ------------------------------------------------------------------------------------------------------- workers,
// memory, codec

function workersTarget(workers: WorkersResults | undefined): TargetRow {
  const target = `2 workers ≥ 1.6× one worker (handler ≈${workers?.settings.targetUs ?? 50} µs/message, this 2-core machine)`;
  const one = workers?.summary.find((s) => s.workers === 1);
  const two = workers?.summary.find((s) => s.workers === 2);
  if (!workers || !one || !two) return NOT_MEASURED(target, 'bench:workers has no result for 1 and 2 workers');
  const ratios = pairedRatios(
    workers.measurements,
    (m) => m.round,
    (m, side) => (m.workers === (side === 'a' ? 2 : 1) ? m.generator.framesPerSecond : undefined),
  );
  const ratio = medianOf(ratios);
  const measured = `${times(ratio)} (${perRound(ratios)}; medians ${int(two.framesPerSecond)} vs ${int(one.framesPerSecond)} frames/s; 2 workers got ${fixed(2)(two.agentCores)} cores, other jobs ${fixed(2)(two.otherCores)})`;
  return { target, measured, verdict: verdict(ratio >= workers.ratio.target) };
}

function memoryTargets(memory: MemoryResults | undefined): TargetRow[] {
  const rows: TargetRow[] = [];
  const idle = memory?.summary.idle;
  const connections = memory?.idle?.settings.connections ?? 1000;
  const idleTarget = `${int(connections)} idle HAProxy connections ≤ 10 kB each (RSS)`;
  rows.push(
    idle
      ? {
          target: idleTarget,
          measured: `${kB(idle.perConnection.rss)} each (heap ${kB(idle.perConnection.heapUsed)})`,
          verdict: verdict(idle.perConnection.rss <= 10_000),
        }
      : NOT_MEASURED(idleTarget, 'bench:memory has no idle result'),
  );
  const soak = memory?.summary.soaks.find((s) => s.agent === 'example');
  const length = soak
    ? `${soak.durationS} s soak${soak.durationS < 120 ? ', shorter than the target’s 2 minutes' : ''}`
    : '';
  const rssTarget = 'Soak at full load: RSS flat (±10% after warm-up)';
  const heapTarget = 'Soak at full load: heap flat (±10% after warm-up, post-GC)';
  const gcTarget = 'Soak at full load: no GC pause over 10 ms';
  if (!soak)
    return [
      ...rows,
      ...[rssTarget, heapTarget, gcTarget].map((t) => NOT_MEASURED(t, 'bench:memory has no soak of the example agent')),
    ];
  rows.push({
    target: rssTarget,
    measured: `${pct(soak.rss.driftPercent)} (${MB(soak.rss.firstMedian)} → ${MB(soak.rss.lastMedian)}; ${length})`,
    verdict: verdict(soak.rss.flat),
  });
  const heap = soak.postGcHeap
    ? {
        measured: `${pct(soak.postGcHeap.driftPercent)} (${MB(soak.postGcHeap.first)} → ${MB(soak.postGcHeap.last)} post-GC; ${length})`,
        flat: soak.postGcHeap.flat,
      }
    : {
        measured: `${pct(soak.heapUsed.driftPercent)} (raw samples: too short for two post-GC ones; ${length})`,
        flat: soak.heapUsed.flat,
      };
  rows.push({ target: heapTarget, measured: heap.measured, verdict: verdict(heap.flat) });
  rows.push({
    target: gcTarget,
    measured: `longest ${fixed(2)(soak.gc.maxMs)} ms, ${soak.gc.overLimit} over 10 ms, of ${int(soak.gc.count)} pauses (${length})`,
    verdict: verdict(soak.noPauseOverLimit),
  });
  return rows;
}

function codecTarget(codec: CodecResults | undefined): TargetRow {
  const target = 'Codec: decode + encode ≤ 1 µs per frame in process (bench:codec’s own target)';
  const total = codec?.rows.find((r) => r.name === 'total');
  if (!total) return NOT_MEASURED(target, 'bench:codec has no result');
  return {
    target,
    measured: `${int(total.bestNs)} ns (median ${int(total.medianNs)} ns), ${int(total.bytesPerFrame)} B allocated per frame`,
    verdict: verdict(total.bestNs <= 1000),
  };
}

const PLAIN_PROXIED = 'plain TCP through the same HAProxy';

/** Every target, in the order, then the codec's own. */
export function targets(results: AllResults): TargetRow[] {
  const { frames } = results;
  return [
    frameRateTarget(frames, 4, 16),
    frameRateTarget(frames, 16, 64),
    p99Target(frames, 4, 16, 2),
    p99Target(frames, 1, 1, 1.25),
    observabilityCost(frames, 'metrics', 'Prometheus metrics', 0.1),
    observabilityCost(
      frames,
      'observed',
      'Metrics and tracing continuing HAProxy’s traces, every request’s traceparent handed on and 1% of them sampled at the edge',
      0.1,
    ),
    observabilityCost(
      frames,
      'observed-sampled',
      'Metrics and tracing starting a trace for 1% of the messages (`startTraces: 0.01`)',
      0.1,
    ),
    observabilityCost(
      frames,
      'observed-rare',
      'Metrics and tracing starting a trace for 0.1% of the messages (`startTraces: 0.001`)',
      0.1,
    ),
    observabilityCost(
      frames,
      'observed-all',
      'Metrics and tracing starting a trace for every message, every span recorded',
      0.1,
    ),
    informationalCost(
      frames,
      'ceiling-traced',
      'The OpenTelemetry SDK’s span on the 1% of the NOTIFY that carry a sampled traceparent, in an agent that adds nothing else',
      'ceiling',
      'the same agent without it',
    ),
    informationalCost(frames, 'server-tls', 'TLS from HAProxy to the agent', 'server-proxied', PLAIN_PROXIED),
    informationalCost(
      frames,
      'server-mtls',
      'Mutual TLS (HAProxy’s client certificate required)',
      'server-proxied',
      PLAIN_PROXIED,
    ),
    ...haproxyTargets(results.haproxy),
    workersTarget(results.workers),
    ...memoryTargets(results.memory),
    codecTarget(results.codec),
  ];
}
