/**
 * `npm run bench:workers`: does SPOE_WORKERS use every core? The target: on this 2-core machine, with a
 * CPU-heavy handler (≈50 µs of work per message), 2 workers answer ≥ 1.6× the frames/s of one.
 *
 * The agent is bench/agents/heavy-agent.ts: a Nest app importing SpoeModule, one handler doing a calibrated amount of
 * hashing, run by N processes under the example agent's supervisor (src/cluster/supervisor.ts, node:cluster,
 * connections handed out round-robin). The work is calibrated once, at the start of the bench, and every run then does
 * exactly that many iterations per message, so that 1 and 2 workers do the same work per frame.
 *
 * The C generator (bench/spop-load.c) keeps enough frames in flight to keep every worker busy (8 connections × 8 by
 * default: 4 connections per worker). Each round measures 1 and 2 workers in turn (the order alternates), each in a
 * fresh agent, after a warm-up; the report gives medians over rounds: frames/s, latency, the agent's CPU (supervisor
 * and workers: the whole process tree), the generator's CPU and what other jobs used, and the ratio to the target.
 *
 * Environment: BENCH_ROUNDS (3), BENCH_DURATION_MS (5000), BENCH_WARMUP_MS (1000), BENCH_WORKERS_CONNECTIONS (8),
 * BENCH_WORKERS_INFLIGHT (8), BENCH_HEAVY_US (50), BENCH_WORKER_COUNTS ("1,2"), BENCH_SKIP_BUILD=1.
 * Writes bench/results/workers.json. Not a test: the target is reported, never asserted.
 */
import * as os from 'node:os';
import { buildProject, HeavyAgent, startHeavy } from './support/agents';
import { envInt, envList } from './support/env';
import { buildGenerator } from './support/generator';
import { LoadMeasure, LoadSummary, measureLoad, summarizeLoad } from './support/load';
import { machineFacts, MachineFacts, withLoadAtEnd } from './support/machine';
import { runBench, stopProcessTree } from './support/processes';
import { fixed, int, textTable } from './support/report';
import { writeResults } from './support/results';

const ROUNDS = envInt('BENCH_ROUNDS', 3, 1);
const DURATION_MS = envInt('BENCH_DURATION_MS', 5000, 100);
const WARMUP_MS = envInt('BENCH_WARMUP_MS', 1000, 0);
const CONNECTIONS = envInt('BENCH_WORKERS_CONNECTIONS', 8, 1);
const INFLIGHT = envInt('BENCH_WORKERS_INFLIGHT', 8, 1);
const HEAVY_US = envInt('BENCH_HEAVY_US', 50, 1);
const WORKER_COUNTS = envList('BENCH_WORKER_COUNTS', ['1', '2']).map((text) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`BENCH_WORKER_COUNTS: ${JSON.stringify(text)} is not an integer ≥ 1`);
  return n;
});
/** The target: 2 workers ≥ 1.6× one. */
export const TARGET_RATIO = 1.6;

/** The agent's CPU is the supervisor's and all its workers' (the process tree). */
export interface Measurement extends LoadMeasure {
  readonly round: number;
  readonly workers: number;
  /** What the handler's work took when this agent started (median µs, measured in the supervisor). */
  readonly workUs: number;
}

export interface Summary extends LoadSummary {
  readonly workers: number;
  /** Against 1 worker (medians over medians). */
  readonly framesPerSecondVsOne: number;
}

/** bench/results/workers.json. */
export interface WorkersResults {
  readonly machine: MachineFacts & { readonly loadAverageAtEnd: number[] };
  readonly settings: {
    readonly rounds: number;
    readonly durationMs: number;
    readonly warmupMs: number;
    readonly connections: number;
    readonly inflight: number;
    readonly workerCounts: readonly number[];
    readonly targetUs: number;
  };
  /** The work per message, calibrated once for the whole run. */
  readonly calibration: { readonly iterations: number; readonly us: number };
  readonly summary: readonly Summary[];
  /** 2 workers over 1 (NaN when either was not measured), and the target. */
  readonly ratio: { readonly twoVsOne: number; readonly target: number; readonly met: boolean };
  readonly measurements: readonly Measurement[];
}

/** The work per message that every run will do: calibrated by one agent started for that alone. */
async function calibrate(): Promise<{ iterations: number; us: number }> {
  const agent = await startHeavy({ workers: 1, targetUs: HEAVY_US });
  await stopProcessTree(agent.child);
  return { iterations: agent.iterations, us: agent.calibratedUs };
}

/** A fresh agent with `workers` workers: warm-up, then one measured invocation with the CPU sampled around it. */
async function measure(workers: number, iterations: number, round: number): Promise<Measurement> {
  const agent: HeavyAgent = await startHeavy({ workers, targetUs: HEAVY_US, iterations });
  try {
    const load = await measureLoad(
      agent.pid,
      { port: agent.port, connections: CONNECTIONS, inflight: INFLIGHT },
      WARMUP_MS,
      DURATION_MS,
    );
    return { round, workers, ...load, workUs: agent.calibratedUs };
  } finally {
    await stopProcessTree(agent.child);
  }
}

function summarize(measurements: readonly Measurement[]): Summary[] {
  const summaries = WORKER_COUNTS.map((workers) => ({
    workers,
    ...summarizeLoad(measurements.filter((m) => m.workers === workers)),
  }));
  const one = summaries.find((s) => s.workers === 1)?.framesPerSecond ?? NaN;
  return summaries.map((s) => ({ ...s, framesPerSecondVsOne: s.framesPerSecond / one }));
}

function table(summaries: readonly Summary[]): string {
  const header = [
    'workers',
    'frames/s',
    '× 1 worker',
    'p50 µs',
    'p99 µs',
    'p99.9 µs',
    'agent µs/frame',
    'agent cores',
    'other cores',
    'gen CPU %',
  ];
  const rows = summaries.map((s) => [
    String(s.workers),
    int(s.framesPerSecond),
    fixed(2)(s.framesPerSecondVsOne),
    int(s.p50Us),
    int(s.p99Us),
    int(s.p999Us),
    fixed(1)(s.agentCpuUsPerFrame),
    fixed(2)(s.agentCores),
    fixed(2)(s.otherCores),
    fixed(1)(s.generatorCpuPercent),
  ]);
  return textTable(header, rows);
}

function progress(m: Measurement): string {
  const g = m.generator;
  return (
    `round ${m.round}/${ROUNDS} ${m.workers} worker(s) ${int(g.framesPerSecond).padStart(8)} frames/s  p50 ${int(g.p50Us)} µs  p99 ${int(g.p99Us)} µs` +
    `  agent ${fixed(1)(m.agentCpuUsPerFrame)} µs/frame (${fixed(2)(m.agentCores)} cores)  other ${fixed(2)(m.otherCores)} cores  generator ${fixed(1)(g.cpuPercent)}%` +
    `  (work ${fixed(1)(m.workUs)} µs at start)`
  );
}

function ratioOf(summaries: readonly Summary[]): WorkersResults['ratio'] {
  const twoVsOne = summaries.find((s) => s.workers === 2)?.framesPerSecondVsOne ?? NaN;
  return { twoVsOne, target: TARGET_RATIO, met: twoVsOne >= TARGET_RATIO };
}

async function main(): Promise<void> {
  buildGenerator();
  buildProject(); // the heavy agent imports nestjs-spoe as users do: the built library
  const facts = machineFacts();
  const calibration = await calibrate();
  console.log(
    `workers benchmark: ${WORKER_COUNTS.join(' vs ')} worker(s), ${CONNECTIONS} connections × ${INFLIGHT} in flight; handler work ${calibration.iterations} iterations ≈ ${fixed(1)(calibration.us)} µs` +
      ` (target ${HEAVY_US} µs); ${ROUNDS} round(s) of ${DURATION_MS} ms; ${facts.cpuCount} × ${facts.cpuModel}, Node ${facts.node}`,
  );
  const measurements: Measurement[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    // Alternating order: a drift of the machine's load over the run does not favour one worker count.
    for (const workers of round % 2 ? WORKER_COUNTS : [...WORKER_COUNTS].reverse()) {
      const m = await measure(workers, calibration.iterations, round);
      measurements.push(m);
      console.log(progress(m));
    }
  }
  const summaries = summarize(measurements);
  const ratio = ratioOf(summaries);
  console.log(
    `\nmedians over ${ROUNDS} round(s); ${DURATION_MS} ms measured after ${WARMUP_MS} ms of warm-up\n${table(summaries)}`,
  );
  console.log(
    `\n2 workers / 1 worker: ${fixed(2)(ratio.twoVsOne)}× (target ≥ ${TARGET_RATIO}: ${ratio.met ? 'met' : 'MISSED'}) on ${os.cpus().length} core(s)` +
      `\nagent µs/frame: CPU of the supervisor and its workers per frame (the handler's ≈${HEAVY_US} µs and the transport's share); agent cores: how many cores they kept busy.` +
      `\nother cores: CPU used meanwhile by other jobs: on a shared machine, 2 workers cannot get 2 cores while others take some.`,
  );
  const results: WorkersResults = {
    machine: withLoadAtEnd(facts),
    settings: {
      rounds: ROUNDS,
      durationMs: DURATION_MS,
      warmupMs: WARMUP_MS,
      connections: CONNECTIONS,
      inflight: INFLIGHT,
      workerCounts: WORKER_COUNTS,
      targetUs: HEAVY_US,
    },
    calibration,
    summary: summaries,
    ratio,
    measurements,
  };
  console.log(`\nraw and aggregated results: ${writeResults('workers', results)}`);
}

runBench('bench:workers', main);
