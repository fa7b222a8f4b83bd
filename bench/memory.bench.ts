/**
 * `npm run bench:memory`: the agent's memory, against the issue's targets:
 *   - 1,000 idle HAProxy connections cost ≤ 10 kB each;
 *   - a full-load soak keeps RSS and heap flat (±10% after warm-up) with no GC pause over 10 ms.
 *
 * On the example agent as shipped (node dist/main.js), each run in a fresh agent process:
 *   idle     (BENCH_IDLE_ROUNDS agents) connections that complete the HELLO like HAProxy and stay idle, opened in
 *            batches; memory before, with them open, after one NOTIFY on each, and after closing them, each after a
 *            settle and a forced GC; meanwhile a NOTIFY on a fresh connection (the agent must still answer). RSS
 *            moves by a few MB from one process to the next: the figures are medians over the rounds.
 *   soak     full load from the C generator (bench/spop-load.c) for BENCH_SOAK_S; a memory sample every second (no
 *            GC forced), a post-GC sample at the end of the warm-up and just before the end, every GC event.
 * The same soak, shorter, runs on bench/agents/ceiling.js (plain Node) for reference.
 *
 * The agents are measured from inside by bench/memory/probe.js (node --expose-gc --require probe.js), which answers
 * over an IPC channel and changes nothing else in the agent. GCs forced by the bench are never counted as pauses.
 *
 * Environment:
 *   BENCH_IDLE_CONNECTIONS (1000, 0 skips), BENCH_IDLE_ROUNDS (3), BENCH_IDLE_BATCH (100), BENCH_IDLE_SETTLE_MS (2000),
 *   BENCH_IDLE_WARMUP_CONNECTIONS (50)
 *   BENCH_SOAK_S (120, 0 skips), BENCH_SOAK_WARMUP_S (20, at most a third of the soak), BENCH_SOAK_GC_EVERY_S (0: post-GC
 *   samples at the end of the warm-up and at the end only), BENCH_SOAK_CONNECTIONS (4), BENCH_SOAK_INFLIGHT (16)
 *   BENCH_CEILING_SOAK_S (30, 0 skips)
 *   BENCH_TRACE_GC=1 (agents run with --trace-gc, the trace goes to bench/results/memory-trace-gc-<run>.log)
 *   BENCH_NODE_FLAGS (extra Node/V8 flags for the agents, e.g. "--single-threaded-gc" or "--max-semi-space-size=32")
 *   BENCH_SKIP_BUILD=1 (do not run `npm run build`), CC (the C compiler, default cc)
 * Writes bench/results/memory.json (every sample and GC event, the summary, machine facts). Not a test.
 */
import { mkdirSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { AGENT_NODE_FLAGS, ProbedAgent, startProbedCeiling, startProbedExample, StartOptions } from './memory/agents';
import { IdleRound, IdleSettings, medianPerConnection, PerConnection, runIdleRound } from './memory/idle';
import { GcSummary, GC_PAUSE_LIMIT_MS, SeriesSummary } from './memory/stats';
import { runSoak, SoakResult, SoakSettings, SoakSummary } from './memory/soak';
import { buildProject } from './support/agents';
import { envInt, envFlag } from './support/env';
import { buildGenerator } from './support/generator';
import { machineFacts, MachineFacts, withLoadAtEnd } from './support/machine';
import { runBench, stopProcessTree } from './support/processes';
import { RESULTS_DIR, writeResults } from './support/results';
/** The issue's targets. */
const IDLE_LIMIT_BYTES = 10_000;
const DRIFT_TOLERANCE_PERCENT = 10;
/** Closed connections are "back near the baseline" when less than this share of their heap is left. */
const RESIDUAL_HEAP_SHARE = 0.1;

const IDLE: IdleSettings = {
  connections: envInt('BENCH_IDLE_CONNECTIONS', 1000, 0),
  rounds: envInt('BENCH_IDLE_ROUNDS', 3, 1),
  batch: envInt('BENCH_IDLE_BATCH', 100, 1),
  settleMs: envInt('BENCH_IDLE_SETTLE_MS', 2000, 0),
  warmupConnections: envInt('BENCH_IDLE_WARMUP_CONNECTIONS', 50, 0),
};

function soakSettings(durationS: number): SoakSettings {
  return {
    durationS,
    warmupS: envInt('BENCH_SOAK_WARMUP_S', 20, 0),
    sampleS: 1,
    forcedGcEveryS: envInt('BENCH_SOAK_GC_EVERY_S', 0, 0),
    connections: envInt('BENCH_SOAK_CONNECTIONS', 4, 1),
    inflight: envInt('BENCH_SOAK_INFLIGHT', 16, 1),
    windowS: 10,
    tolerancePercent: DRIFT_TOLERANCE_PERCENT,
  };
}

const SOAK_S = envInt('BENCH_SOAK_S', 120, 0);
const CEILING_SOAK_S = envInt('BENCH_CEILING_SOAK_S', 30, 0);
const TRACE_GC = envFlag('BENCH_TRACE_GC');

// ------------------------------------------------------------------------------------------------------- runs

function startOptions(run: string): StartOptions {
  if (!TRACE_GC) return {};
  const traceGcFile = join(RESULTS_DIR, `memory-trace-gc-${run}.log`);
  rmSync(traceGcFile, { force: true });
  return { traceGcFile };
}

/** One agent process per run: each starts from the same state, nothing carried over. */
async function withAgent<T>(start: Promise<ProbedAgent>, run: (agent: ProbedAgent) => Promise<T>): Promise<T> {
  const agent = await start;
  try {
    const answer = await agent.probe.stats(false);
    if (!answer.gcExposed) throw new Error('global.gc() is missing in the agent (started without --expose-gc?)');
    return await run(agent);
  } finally {
    await stopProcessTree(agent.child);
  }
}

export interface IdleResult {
  readonly settings: IdleSettings;
  readonly rounds: readonly IdleRound[];
  /** Medians over the rounds. */
  readonly perConnection: PerConnection;
  readonly perConnectionAfterNotify: PerConnection;
}

async function idleScenario(): Promise<IdleResult> {
  const rounds: IdleRound[] = [];
  for (let round = 1; round <= IDLE.rounds; round++) {
    console.log(
      `\nidle ${round}/${IDLE.rounds}: example agent, ${IDLE.connections} connections in batches of ${IDLE.batch}`,
    );
    rounds.push(
      await withAgent(startProbedExample(startOptions(`idle-${round}`)), (agent) => runIdleRound(agent, IDLE, log)),
    );
  }
  return {
    settings: IDLE,
    rounds,
    perConnection: medianPerConnection(rounds.map((r) => r.perConnection)),
    perConnectionAfterNotify: medianPerConnection(rounds.map((r) => r.perConnectionAfterNotify)),
  };
}

// ------------------------------------------------------------------------------------------------------- report

const kB = (bytes: number): string => `${(bytes / 1000).toFixed(2)} kB`;
const MB = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
const pct = (n: number): string => `${n >= 0 ? '+' : ''}${n.toFixed(1)}%`;
const ms = (n: number): string => `${n.toFixed(2)} ms`;
const verdict = (ok: boolean): string => (ok ? 'yes' : 'NO');

function perConnectionLine(label: string, per: PerConnection): string {
  return `  ${label.padEnd(28)} RSS ${kB(per.rss).padStart(10)}   heap ${kB(per.heapUsed).padStart(10)}   external ${kB(per.external).padStart(9)}   (array buffers ${kB(per.arrayBuffers)})`;
}

function reportIdle(idle: IdleResult): string[] {
  const { connections: n, rounds } = idle.settings;
  const list = (pick: (r: IdleRound) => number, format: (n: number) => string): string =>
    idle.rounds.map((r) => format(pick(r))).join(', ');
  const heapBack = idle.rounds.every(
    (r) => r.residualAfterClose.heapUsed <= Math.max(0, r.open.heapUsed - r.baseline.heapUsed) * RESIDUAL_HEAP_SHARE,
  );
  const fresh = idle.rounds.map((r) => r.freshNotify);
  const worstRss = Math.max(...idle.rounds.map((r) => r.perConnection.rss));
  return [
    `\nIdle connections: ${n} HAProxy connections after their HELLO, ${rounds} fresh agent(s) (after a forced GC; 1 kB = 1000 B)`,
    perConnectionLine('per idle connection, median', idle.perConnection),
    `    each round: RSS ${list((r) => r.perConnection.rss, kB)}; heap ${list((r) => r.perConnection.heapUsed, kB)}`,
    perConnectionLine('after one NOTIFY each, median', idle.perConnectionAfterNotify),
    `    each round: RSS ${list((r) => r.perConnectionAfterNotify.rss, kB)}; heap ${list((r) => r.perConnectionAfterNotify.heapUsed, kB)}`,
    `  external: the ArrayBuffers a connection holds (allocated, not all resident yet: pages count in RSS once written)`,
    `  target ≤ ${kB(IDLE_LIMIT_BYTES)} RSS per idle connection: ${verdict(idle.perConnection.rss <= IDLE_LIMIT_BYTES)} (median; worst round ${kB(worstRss)})`,
    `  process: baseline ${list((r) => r.baseline.rss, MB)} RSS; open ${list((r) => r.open.rss, MB)}; closed ${list((r) => r.closed.rss, MB)}`,
    `  after closing, left over the baseline: RSS ${list((r) => r.residualAfterClose.rss, MB)}; heap ${list((r) => r.residualAfterClose.heapUsed, kB)}` +
      ` of the ${list((r) => r.open.heapUsed - r.baseline.heapUsed, kB)} the connections took: heap back near baseline: ${verdict(heapBack)}`,
    `  opening took ${list(
      (r) => r.openMs,
      (v) => `${v.toFixed(0)} ms`,
    )} (slowest batch of ${idle.settings.batch}: ${list(
      (r) => r.slowestBatchMs,
      (v) => `${v.toFixed(0)} ms`,
    )});` + ` closed by the agent meanwhile: ${list((r) => r.closedByAgent, String)}`,
    `  NOTIFY on a fresh connection with ${n} open: ${fresh.every((f) => f.ok) ? 'answered' : 'FAILED'} in ${fresh.map((f) => ms(f.latencyMs)).join(', ')} (${fresh.map((f) => f.detail).join('; ')})`,
  ];
}

function seriesLine(label: string, s: SeriesSummary, windowS: number): string {
  return (
    `  ${label.padEnd(5)} min ${MB(s.min)}, median ${MB(s.median)}, max ${MB(s.max)}; first ${windowS} s ${MB(s.firstMedian)} → last ${windowS} s ${MB(s.lastMedian)}:` +
    ` drift ${pct(s.driftPercent)} (within ±${DRIFT_TOLERANCE_PERCENT}%: ${verdict(s.flat)})`
  );
}

function gcLines(label: string, gc: GcSummary): string[] {
  const lines = [
    `  GC ${label}: ${gc.count} pauses, total ${ms(gc.totalMs)}, max ${ms(gc.maxMs)}, p99 ${ms(gc.p99Ms)}, over ${GC_PAUSE_LIMIT_MS} ms: ${gc.overLimit}` +
      ` (forced by the bench, excluded: ${gc.forcedExcluded})`,
  ];
  for (const [kind, k] of Object.entries(gc.byKind)) {
    lines.push(
      `    ${kind.padEnd(20)} ${String(k.count).padStart(6)}  total ${ms(k.totalMs).padStart(11)}  max ${ms(k.maxMs).padStart(9)}  p99 ${ms(k.p99Ms).padStart(9)}  over ${GC_PAUSE_LIMIT_MS} ms: ${k.overLimit}`,
    );
  }
  if (gc.overLimit > 0) {
    const longest = gc.longest
      .filter((e) => e.durationMs > GC_PAUSE_LIMIT_MS)
      .map((e) => `${e.kind} ${ms(e.durationMs)} at ${e.t.toFixed(1)} s`);
    lines.push(`    longest: ${longest.join('; ')}`);
  }
  return lines;
}

function reportSoak(soak: SoakResult): string[] {
  const s = soak.summary;
  const { durationS, connections, inflight, windowS } = soak.settings;
  const postGc = s.postGcHeap
    ? `  post-GC heap ${MB(s.postGcHeap.first)} after warm-up → ${MB(s.postGcHeap.last)} at the end: drift ${pct(s.postGcHeap.driftPercent)} (within ±${DRIFT_TOLERANCE_PERCENT}%: ${verdict(s.postGcHeap.flat)})`
    : '  post-GC heap: fewer than two forced samples (soak too short)';
  return [
    `\nSoak, ${soak.agent} agent: ${durationS} s at full load (${connections} connections × ${inflight} in flight), warm-up ${soak.effectiveWarmupS} s excluded`,
    `  ${Math.round(s.framesPerSecond).toLocaleString('en-US')} frames/s, p99 ${s.p99Us.toFixed(0)} µs (generator CPU ${soak.generator.cpuPercent.toFixed(0)}%)`,
    seriesLine('RSS', s.rss, windowS),
    seriesLine('heap', s.heapUsed, windowS) + ' (raw: a sawtooth, see post-GC)',
    postGc,
    ...gcLines('after warm-up', s.gc),
    `  GC whole soak: ${s.gcWholeSoak.count} pauses, max ${ms(s.gcWholeSoak.maxMs)}, over ${GC_PAUSE_LIMIT_MS} ms: ${s.gcWholeSoak.overLimit}`,
    `  cores used: agent ${s.cores.agentCores.toFixed(2)}, generator ${s.cores.generatorCores.toFixed(2)}, everything else ${s.cores.otherCores.toFixed(2)} (of ${os.cpus().length})`,
    `  flat (RSS raw, heap post-GC, within ±${DRIFT_TOLERANCE_PERCENT}%): ${verdict(s.flat)}; no GC pause over ${GC_PAUSE_LIMIT_MS} ms: ${verdict(s.noPauseOverLimit)}`,
  ];
}

/** bench/results/memory.json. */
export interface MemoryResults {
  readonly machine: MachineFacts & { readonly loadAverageAtEnd: number[] };
  readonly agentNodeFlags: readonly string[];
  readonly targets: {
    readonly idleBytesPerConnection: number;
    readonly driftPercent: number;
    readonly gcPauseMs: number;
  };
  readonly summary: {
    readonly idle:
      | {
          readonly perConnection: PerConnection;
          readonly perConnectionEachRound: readonly PerConnection[];
          readonly perConnectionAfterNotify: PerConnection;
          readonly residualAfterCloseEachRound: readonly PerConnection[];
          readonly freshNotify: readonly IdleRound['freshNotify'][];
        }
      | undefined;
    readonly soaks: ReadonlyArray<
      SoakSummary & { readonly agent: string; readonly durationS: number; readonly warmupS: number }
    >;
  };
  readonly idle: IdleResult | undefined;
  readonly soaks: readonly SoakResult[];
}

// ------------------------------------------------------------------------------------------------------- main

const log = (line: string): void => console.log(line);

async function main(): Promise<void> {
  buildGenerator();
  buildProject();
  const facts = machineFacts();
  mkdirSync(RESULTS_DIR, { recursive: true });
  const flags = AGENT_NODE_FLAGS.length > 0 ? `; agent flags: ${AGENT_NODE_FLAGS.join(' ')}` : '';
  console.log(
    `memory benchmark: ${facts.cpuCount} × ${facts.cpuModel}, Node ${facts.node}, load average ${facts.loadAverageAtStart.map((l) => l.toFixed(2)).join(' ')}${flags}`,
  );

  const idle = IDLE.connections > 0 ? await idleScenario() : undefined;
  const soaks: SoakResult[] = [];
  if (SOAK_S > 0) {
    console.log(`\nsoak: example agent, ${SOAK_S} s`);
    soaks.push(
      await withAgent(startProbedExample(startOptions('soak-example')), (agent) =>
        runSoak(agent, soakSettings(SOAK_S), log),
      ),
    );
  }
  if (CEILING_SOAK_S > 0) {
    console.log(`\nsoak: ceiling agent (reference), ${CEILING_SOAK_S} s`);
    soaks.push(
      await withAgent(startProbedCeiling(startOptions('soak-ceiling')), (agent) =>
        runSoak(agent, soakSettings(CEILING_SOAK_S), log),
      ),
    );
  }

  const lines = [...(idle ? reportIdle(idle) : []), ...soaks.flatMap(reportSoak)];
  console.log(lines.join('\n'));
  const summary = {
    idle: idle && {
      perConnection: idle.perConnection,
      perConnectionEachRound: idle.rounds.map((r) => r.perConnection),
      perConnectionAfterNotify: idle.perConnectionAfterNotify,
      residualAfterCloseEachRound: idle.rounds.map((r) => r.residualAfterClose),
      freshNotify: idle.rounds.map((r) => r.freshNotify),
    },
    soaks: soaks.map((s) => ({
      agent: s.agent,
      durationS: s.settings.durationS,
      warmupS: s.effectiveWarmupS,
      ...s.summary,
    })),
  };
  const targets = {
    idleBytesPerConnection: IDLE_LIMIT_BYTES,
    driftPercent: DRIFT_TOLERANCE_PERCENT,
    gcPauseMs: GC_PAUSE_LIMIT_MS,
  };
  const output: MemoryResults = {
    machine: withLoadAtEnd(facts),
    agentNodeFlags: AGENT_NODE_FLAGS,
    targets,
    summary,
    idle,
    soaks,
  };
  console.log(
    `\nraw samples and summary: ${writeResults('memory', output)}${TRACE_GC ? `; GC traces: ${join(RESULTS_DIR, 'memory-trace-gc-*.log')}` : ''}`,
  );
  // Targets are reported, not enforced (numbers vary with the machine); an agent that stops serving is a failure.
  const broken = idle?.rounds.filter((r) => !r.freshNotify.ok || r.closedByAgent > 0).length ?? 0;
  if (broken > 0) {
    console.error(
      `bench:memory: in ${broken} idle round(s) the agent did not answer a fresh NOTIFY or closed idle connections`,
    );
    process.exitCode = 1;
  }
}

runBench('bench:memory', main);
