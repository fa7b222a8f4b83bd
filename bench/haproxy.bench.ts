/**
 * `npm run bench:haproxy`: the end-to-end view of `npm run bench:frames`, through real HAProxy (3.4 and 2.6). What does
 * SPOE cost an HTTP request, with the example agent and with the ceiling agent (plain Node, no framework)?
 *
 * One HAProxy process answers HTTP itself (no backend server) on two frontends: one runs the SPOE filter on every
 * request (check-client-ip, decision used by an `http-request deny`), the other does not. wrk (C, light) drives them
 * with a fixed number of keep-alive connections. For each HAProxy version and each agent: start the agent and its own
 * HAProxy, prove that a request through the SPOE frontend gets scored, warm up; then, round after round, for each agent
 * in turn, a measured run on the frontend without SPOE and one on the frontend with it, so that noise from the shared
 * machine hits all of them alike; medians over rounds.
 *
 * The report gives per (version, agent) the request rate and latency percentiles without and with SPOE, what SPOE adds,
 * and the CPU of HAProxy, the agent and wrk (kernel accounting, /proc) so that the reader sees who was saturated; then
 * per version the example agent against the ceiling agent (targets, reported, not asserted: req/s ≥ 0.95×, added
 * p99 ≤ 1.5×).
 *
 * Environment: BENCH_ROUNDS (3), BENCH_HTTP_DURATION_S (5), BENCH_WARMUP_S (2), BENCH_CONNECTIONS (50),
 * BENCH_WRK_THREADS (1), BENCH_HAPROXY_VERSIONS ("3.4,2.6"), BENCH_SKIP_BUILD=1 (do not run `npm run build`),
 * NESTJS_SPOE_CACHE (where scripts/provision-haproxy.sh keeps the HAProxy binaries).
 * Writes bench/results/haproxy.json (raw measures, medians, versions, machine facts). Exits 1 when a run had errors.
 */
import * as os from 'node:os';
import { cleanupAll, makeTempDir, removeTempDir } from '../test/support/cleanup';
import { HaproxyProcess } from '../test/support/haproxy-process';
import { httpRequest } from '../test/support/http';
import { waitFor } from '../test/support/wait';
import { NO_SCORE_STATUS, renderHaproxyFiles, SCORE_HEADER } from './haproxy/config';
import { Haproxy, provisionHaproxy } from './haproxy/provision';
import { describeErrors, ensureWrk, errorCount, runWrk, WrkResult, wrkVersion } from './haproxy/wrk';
import { buildProject, RunningAgent, startCeiling, startExample } from './support/agents';
import { CPU, pinningNote, pinRunning } from './support/cpus';
import { envInt, envList } from './support/env';
import { machineFacts, MachineFacts, withLoadAtEnd } from './support/machine';
import { freePort } from './support/ports';
import {
  machineBusySeconds,
  rememberDescendants,
  runBench,
  stopProcessTree,
  treeCpuSeconds,
} from './support/processes';
import { fixed, int, signed, textTable } from './support/report';
import { writeResults } from './support/results';
import { median } from './support/stats';

const ROUNDS = envInt('BENCH_ROUNDS', 3, 1);
const DURATION_S = envInt('BENCH_HTTP_DURATION_S', 5, 1);
const WARMUP_S = envInt('BENCH_WARMUP_S', 2, 0);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 50, 1);
// One wrk thread: on 2 shared cores, a second thread only takes CPU from HAProxy and the agent (see the report).
const WRK_THREADS = envInt('BENCH_WRK_THREADS', 1, 1);
const VERSIONS = envList('BENCH_HAPROXY_VERSIONS', ['3.4', '2.6']);
/** Both behind every HAProxy: the dependency-free reference, and the example agent as shipped. */
const AGENTS = ['ceiling', 'example'] as const;
const FRONTENDS = ['no-spoe', 'spoe'] as const;
/** HAProxy runs with `nbthread 1`: one core at most. */
const HAPROXY_THREADS = 1;
/** A process is "saturated" when it keeps this share of the cores it can use busy. */
const SATURATION = 0.9;
/** Above this many cores used by other jobs during a run, the report warns that its numbers are noise. */
const NOISY_OTHER_CORES = 0.25;
const READY_TIMEOUT_MS = 30_000;
const TARGET_RPS_VS_CEILING = 0.95;
const TARGET_ADDED_P99_VS_CEILING = 1.5;

type AgentName = (typeof AGENTS)[number];
type Frontend = (typeof FRONTENDS)[number];

interface BenchAgent extends RunningAgent {
  readonly name: AgentName;
}

export interface Measurement {
  readonly version: string;
  readonly agent: AgentName;
  readonly frontend: Frontend;
  readonly round: number;
  readonly wrk: WrkResult;
  readonly seconds: number;
  readonly haproxyCpuSeconds: number;
  readonly agentCpuSeconds: number;
  /** Busy cores of the whole machine over the run (everything: bench processes and other jobs). */
  readonly machineCores: number;
}

/** Medians over rounds of one (version, agent, frontend). */
export interface Summary {
  readonly version: string;
  readonly agent: AgentName;
  readonly frontend: Frontend;
  readonly rounds: number;
  readonly requestsPerSecond: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly haproxyUsPerRequest: number;
  readonly haproxyCores: number;
  readonly agentUsPerRequest: number;
  readonly agentCores: number;
  readonly wrkUsPerRequest: number;
  readonly wrkCores: number;
  /** Busy cores not used by HAProxy, the agent or wrk: other jobs on the machine. */
  readonly otherCores: number;
  readonly machineCores: number;
  /** Who kept (nearly) all the cores it can use busy: "haproxy", "agent", "wrk", "machine". */
  readonly saturated: readonly string[];
}

/** What SPOE adds, for one (version, agent). */
export interface SpoeCost {
  readonly version: string;
  readonly agent: AgentName;
  /** Requests/s with SPOE over requests/s without. */
  readonly rateRatio: number;
  readonly addedP50Us: number;
  readonly addedP99Us: number;
}

/** The example agent against the ceiling agent, for one version. */
export interface Comparison {
  readonly version: string;
  /** example with-SPOE req/s over ceiling with-SPOE req/s (target ≥ 0.95). */
  readonly rpsVsCeiling: number;
  /** example added p99 over ceiling added p99 (target ≤ 1.5); NaN when either added none (noise won). */
  readonly addedP99VsCeiling: number;
  readonly rpsTarget: Verdict;
  readonly addedP99Target: Verdict;
}

export type Verdict = 'met' | 'MISSED' | 'n/a';

/** A run (warm-up included) that had errors: the bench fails after its report. */
export interface Failure {
  readonly run: string;
  readonly errors: string;
}

const failures: Failure[] = [];

// ------------------------------------------------------------------------------------------------------- one stack

interface Stack {
  readonly agent: BenchAgent;
  readonly haproxy: HaproxyProcess;
  readonly dir: string;
  readonly urls: Readonly<Record<Frontend, string>>;
}

async function startAgent(name: AgentName): Promise<BenchAgent> {
  const agent =
    name === 'ceiling'
      ? await startCeiling({ cpu: CPU.besideHaproxy })
      : await startExample({ cpu: CPU.besideHaproxy });
  return { ...agent, name };
}

async function startStack(binary: Haproxy, agentName: AgentName): Promise<Stack> {
  const agent = await startAgent(agentName);
  const dir = makeTempDir('nestjs-spoe-bench-');
  let haproxy: HaproxyProcess | undefined;
  try {
    const [spoePort, plainPort] = [await freePort(), await freePort()];
    const files = renderHaproxyFiles({ version: binary.version, dir, spoePort, plainPort, agentPort: agent.port });
    const waitForTcp = [spoePort, plainPort].map((port) => ({ host: '127.0.0.1', port }));
    haproxy = await HaproxyProcess.start({ binary, dir, files, waitForTcp });
    pinRunning(haproxy.pid, CPU.haproxy);
    const stack = {
      agent,
      haproxy,
      dir,
      urls: { spoe: `http://127.0.0.1:${spoePort}/`, 'no-spoe': `http://127.0.0.1:${plainPort}/` },
    };
    warnAboutConfig(binary, haproxy);
    await verifyScoring(stack);
    rememberDescendants(agent.child);
    return stack;
  } catch (error) {
    await stopStack({ agent, haproxy, dir });
    throw error;
  }
}

async function stopStack(stack: {
  readonly agent: BenchAgent;
  readonly haproxy?: HaproxyProcess;
  readonly dir: string;
}): Promise<void> {
  await stack.haproxy?.stop();
  removeTempDir(stack.dir);
  await stopProcessTree(stack.agent.child);
}

/** HAProxy's startup warnings, minus those about running as root (a container's habit, not the configuration's). */
function warnAboutConfig(binary: Haproxy, haproxy: HaproxyProcess): void {
  const problems = haproxy.problems().filter((p) => !/started as root|'chroot'|'user' nor 'uid'/.test(p));
  if (problems.length > 0) console.error(`HAProxy ${binary.fullVersion} warnings:\n  ${problems.join('\n  ')}`);
}

/**
 * Nothing is measured before a request through the SPOE frontend came back scored by the agent (its score in a
 * response header), and the frontend without SPOE answered unscored: otherwise the two runs would not measure SPOE.
 */
async function verifyScoring(stack: Stack): Promise<void> {
  const { hostname, port } = new URL(stack.urls.spoe);
  let score: string;
  try {
    score = await waitFor(
      `a request through the SPOE frontend scored by the ${stack.agent.name} agent`,
      async () => {
        const response = await httpRequest({ host: hostname, port: Number(port), timeoutMs: 2000 });
        const header = response.headers[SCORE_HEADER];
        if (response.status === 200 && typeof header === 'string' && /^\d+$/.test(header)) return header;
        throw new Error(
          `status ${response.status}${response.status === NO_SCORE_STATUS ? ' (no score: the agent did not answer)' : ''}, ${SCORE_HEADER}: ${String(header)}`,
        );
      },
      READY_TIMEOUT_MS,
      100,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}\n--- HAProxy output ---\n${stack.haproxy.output()}`, { cause: error });
  }
  if (Number(score) >= 100)
    throw new Error(
      `the ${stack.agent.name} agent blocks 127.0.0.1 (ip_score ${score}): every request would be denied`,
    );
  const plain = new URL(stack.urls['no-spoe']);
  const response = await httpRequest({ host: plain.hostname, port: Number(plain.port), timeoutMs: 2000 });
  if (response.status !== 200 || response.headers[SCORE_HEADER] !== undefined) {
    throw new Error(
      `the frontend without SPOE answered status ${response.status}, ${SCORE_HEADER}: ${String(response.headers[SCORE_HEADER])}`,
    );
  }
}

// ------------------------------------------------------------------------------------------------------- measures

function checkErrors(run: string, wrk: WrkResult): void {
  if (errorCount(wrk.errors) > 0) failures.push({ run, errors: describeErrors(wrk.errors) });
}

/** One wrk run, with the CPU HAProxy and the agent (whole process tree) used meanwhile. */
async function measure(binary: Haproxy, stack: Stack, frontend: Frontend, round: number): Promise<Measurement> {
  const [haproxyPid, agentPid] = [stack.haproxy.pid, stack.agent.pid];
  const [haproxyBefore, agentBefore, busyBefore] = [
    treeCpuSeconds(haproxyPid),
    treeCpuSeconds(agentPid),
    machineBusySeconds(),
  ];
  const wrk = await runWrk({
    url: stack.urls[frontend],
    connections: CONNECTIONS,
    threads: WRK_THREADS,
    durationS: DURATION_S,
    cpu: CPU.besideHaproxy,
  });
  const seconds = wrk.durationUs / 1e6;
  const m: Measurement = {
    version: binary.version,
    agent: stack.agent.name,
    frontend,
    round,
    wrk,
    seconds,
    haproxyCpuSeconds: treeCpuSeconds(haproxyPid) - haproxyBefore,
    agentCpuSeconds: treeCpuSeconds(agentPid) - agentBefore,
    machineCores: (machineBusySeconds() - busyBefore) / seconds,
  };
  checkErrors(`HAProxy ${binary.fullVersion}, ${m.agent} agent, ${frontend}, round ${round}`, wrk);
  return m;
}

/** A warm-up run on the SPOE frontend: JIT and the connections to the agent warm before anything counts. */
async function warmUp(binary: Haproxy, stack: Stack): Promise<void> {
  if (WARMUP_S === 0) return;
  const warmup = await runWrk({
    url: stack.urls.spoe,
    connections: CONNECTIONS,
    threads: WRK_THREADS,
    durationS: WARMUP_S,
    cpu: CPU.besideHaproxy,
  });
  checkErrors(`HAProxy ${binary.fullVersion}, ${stack.agent.name} agent, warm-up`, warmup);
}

/**
 * Every agent gets its own agent process and HAProxy process, all started before the first round and kept until the
 * last (idle, they cost nothing). Each round then runs, per agent, no-SPOE then SPOE; the agents take turns first
 * (ceiling, example, then example, ceiling…). Both the SPOE/no-SPOE pairs and the example/ceiling comparison are made
 * of
 * runs close in time, so that the load of other jobs on the shared machine drifts into all of them alike.
 */
async function measureVersion(binary: Haproxy): Promise<Measurement[]> {
  const stacks: Stack[] = [];
  try {
    for (const agent of AGENTS) stacks.push(await startStack(binary, agent));
    for (const stack of stacks) await warmUp(binary, stack);
    const measurements: Measurement[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const stack of round % 2 ? stacks : [...stacks].reverse()) {
        for (const frontend of FRONTENDS) {
          const m = await measure(binary, stack, frontend, round);
          measurements.push(m);
          console.log(progress(binary, m));
        }
      }
    }
    return measurements;
  } finally {
    for (const stack of stacks) await stopStack(stack);
  }
}

// ------------------------------------------------------------------------------------------------------- summaries

function saturated(s: Pick<Summary, 'haproxyCores' | 'agentCores' | 'wrkCores' | 'machineCores'>): string[] {
  const limits: Array<[string, number, number]> = [
    ['haproxy', s.haproxyCores, HAPROXY_THREADS],
    // The agent's JavaScript runs on one thread: one core is its limit, whatever GC threads add around it.
    ['agent', s.agentCores, 1],
    ['wrk', s.wrkCores, WRK_THREADS],
    ['machine', s.machineCores, os.cpus().length],
  ];
  return limits.filter(([, cores, max]) => cores >= SATURATION * max).map(([name]) => name);
}

function summarize(version: string, agent: AgentName, frontend: Frontend, all: readonly Measurement[]): Summary {
  const ms = all.filter((m) => m.version === version && m.agent === agent && m.frontend === frontend);
  const med = (pick: (m: Measurement) => number): number => median(ms.map(pick));
  const perRequest = (cpu: (m: Measurement) => number) => (m: Measurement) => (cpu(m) * 1e6) / m.wrk.requests;
  const cores = (cpu: (m: Measurement) => number) => (m: Measurement) => cpu(m) / m.seconds;
  const base = {
    haproxyCores: med(cores((m) => m.haproxyCpuSeconds)),
    agentCores: med(cores((m) => m.agentCpuSeconds)),
    wrkCores: med(cores((m) => m.wrk.cpuSeconds)),
    machineCores: med((m) => m.machineCores),
  };
  return {
    version,
    agent,
    frontend,
    rounds: ms.length,
    requestsPerSecond: med((m) => m.wrk.requestsPerSecond),
    p50Us: med((m) => m.wrk.latencyUs.p50),
    p90Us: med((m) => m.wrk.latencyUs.p90),
    p99Us: med((m) => m.wrk.latencyUs.p99),
    p999Us: med((m) => m.wrk.latencyUs.p999),
    haproxyUsPerRequest: med(perRequest((m) => m.haproxyCpuSeconds)),
    agentUsPerRequest: med(perRequest((m) => m.agentCpuSeconds)),
    wrkUsPerRequest: med(perRequest((m) => m.wrk.cpuSeconds)),
    otherCores: Math.max(
      0,
      med((m) => (m.machineCores * m.seconds - m.haproxyCpuSeconds - m.agentCpuSeconds - m.wrk.cpuSeconds) / m.seconds),
    ),
    ...base,
    saturated: saturated(base),
  };
}

function spoeCost(without: Summary, withSpoe: Summary): SpoeCost {
  return {
    version: withSpoe.version,
    agent: withSpoe.agent,
    rateRatio: withSpoe.requestsPerSecond / without.requestsPerSecond,
    addedP50Us: withSpoe.p50Us - without.p50Us,
    addedP99Us: withSpoe.p99Us - without.p99Us,
  };
}

function compare(version: string, summaries: readonly Summary[], costs: readonly SpoeCost[]): Comparison | undefined {
  const withSpoe = (agent: AgentName) =>
    summaries.find((s) => s.version === version && s.agent === agent && s.frontend === 'spoe');
  const cost = (agent: AgentName) => costs.find((c) => c.version === version && c.agent === agent);
  const [example, ceiling, exampleCost, ceilingCost] = [
    withSpoe('example'),
    withSpoe('ceiling'),
    cost('example'),
    cost('ceiling'),
  ];
  if (!example || !ceiling || !exampleCost || !ceilingCost) return undefined;
  const rpsVsCeiling = example.requestsPerSecond / ceiling.requestsPerSecond;
  // An added p99 of zero or less is noise (the no-SPOE run had the worse tail): no meaningful ratio then.
  const measurable = ceilingCost.addedP99Us > 0 && exampleCost.addedP99Us > 0;
  const addedP99VsCeiling = measurable ? exampleCost.addedP99Us / ceilingCost.addedP99Us : NaN;
  return {
    version,
    rpsVsCeiling,
    addedP99VsCeiling,
    rpsTarget: rpsVsCeiling >= TARGET_RPS_VS_CEILING ? 'met' : 'MISSED',
    addedP99Target: !measurable ? 'n/a' : addedP99VsCeiling <= TARGET_ADDED_P99_VS_CEILING ? 'met' : 'MISSED',
  };
}

// ------------------------------------------------------------------------------------------------------- report

function frontendTable(summaries: readonly Summary[]): string {
  const header = [
    'agent',
    'frontend',
    'req/s',
    'p50 µs',
    'p90 µs',
    'p99 µs',
    'p99.9 µs',
    'haproxy µs/req',
    'haproxy cores',
    'agent µs/req',
    'agent cores',
    'wrk µs/req',
    'wrk cores',
    'other cores',
    'saturated',
  ];
  const rows = summaries.map((s) => [
    s.agent,
    s.frontend === 'spoe' ? 'SPOE' : 'no SPOE',
    int(s.requestsPerSecond),
    int(s.p50Us),
    int(s.p90Us),
    int(s.p99Us),
    int(s.p999Us),
    fixed(1)(s.haproxyUsPerRequest),
    fixed(2)(s.haproxyCores),
    s.frontend === 'spoe' ? fixed(1)(s.agentUsPerRequest) : '-',
    fixed(2)(s.agentCores),
    fixed(1)(s.wrkUsPerRequest),
    fixed(2)(s.wrkCores),
    fixed(2)(s.otherCores),
    s.saturated.join(',') || '-',
  ]);
  return textTable(header, rows, 2);
}

function costTable(costs: readonly SpoeCost[]): string {
  const rows = costs.map((c) => [c.agent, '', `${fixed(2)(c.rateRatio)}×`, signed(c.addedP50Us), signed(c.addedP99Us)]);
  return textTable(['agent', '', 'req/s SPOE/no SPOE', 'added p50 µs', 'added p99 µs'], rows, 2);
}

function comparisonLine(c: Comparison): string {
  const p99 =
    c.addedP99Target === 'n/a'
      ? 'not measurable: an added p99 ≤ 0, noise won'
      : `target ≤ ${TARGET_ADDED_P99_VS_CEILING}: ${c.addedP99Target}`;
  return (
    `example vs ceiling, with SPOE: req/s ${fixed(2)(c.rpsVsCeiling)}× (target ≥ ${TARGET_RPS_VS_CEILING}: ${c.rpsTarget}); ` +
    `added p99 ${fixed(2)(c.addedP99VsCeiling)}× (${p99})`
  );
}

function report(
  binaries: readonly Haproxy[],
  summaries: readonly Summary[],
  costs: readonly SpoeCost[],
  comparisons: readonly Comparison[],
): void {
  console.log(
    `\nmedians over ${ROUNDS} round(s) of ${DURATION_S} s per frontend, after ${WARMUP_S} s of warm-up; ${CONNECTIONS} keep-alive connections, wrk ${WRK_THREADS} thread(s)`,
  );
  for (const binary of binaries) {
    console.log(
      `\n${binary.versionLine} (nbthread ${HAPROXY_THREADS})\n${frontendTable(summaries.filter((s) => s.version === binary.version))}`,
    );
    console.log(`\n${costTable(costs.filter((c) => c.version === binary.version))}`);
    const comparison = comparisons.find((c) => c.version === binary.version);
    if (comparison) console.log(`\n${comparisonLine(comparison)}`);
  }
  const noisiest = Math.max(...summaries.map((s) => s.otherCores));
  if (noisiest > NOISY_OTHER_CORES) {
    console.log(
      `\nWARNING: other jobs kept up to ${fixed(2)(noisiest)} core(s) busy during the runs (median, "other cores"): the machine was shared, so rates and` +
        `\nespecially tails (p99, p99.9, added p99) are noise as much as measure. Rerun on a quiet machine, or with more rounds (BENCH_ROUNDS).`,
    );
  }
  console.log(
    `\nThis machine has ${os.cpus().length} core(s), shared by HAProxy (nbthread ${HAPROXY_THREADS}: one core at most), the agent (one JavaScript thread) and wrk, and by other jobs.` +
      `\nµs/req: CPU (user + system) per request; cores: CPU over the wall time; other cores: busy cores used by none of the three (other jobs: noise).` +
      `\nsaturated: kept ≥ ${SATURATION * 100}% of the cores it can use busy (haproxy ${HAPROXY_THREADS}, agent 1, wrk ${WRK_THREADS}, machine ${os.cpus().length}): that one limits the rate.` +
      `\nwrk is closed-loop: at saturation, latency ≈ connections / rate, so added latency mostly mirrors the lost rate.`,
  );
}

function progress(binary: Haproxy, m: Measurement): string {
  const w = m.wrk;
  return (
    `HAProxy ${binary.version} ${m.agent.padEnd(7)} round ${m.round}/${ROUNDS} ${(m.frontend === 'spoe' ? 'SPOE' : 'no SPOE').padEnd(7)} ${int(w.requestsPerSecond).padStart(7)} req/s` +
    `  p50 ${int(w.latencyUs.p50)} µs  p99 ${int(w.latencyUs.p99)} µs  cores: haproxy ${fixed(2)(m.haproxyCpuSeconds / m.seconds)}` +
    ` agent ${fixed(2)(m.agentCpuSeconds / m.seconds)} wrk ${fixed(2)(w.cpuSeconds / m.seconds)} machine ${fixed(2)(m.machineCores)}` +
    (errorCount(w.errors) > 0 ? `  ERRORS: ${describeErrors(w.errors)}` : '')
  );
}

/** bench/results/haproxy.json. */
export interface HaproxyResults {
  readonly machine: MachineFacts & { readonly wrk: string; readonly loadAverageAtEnd: number[] };
  readonly haproxy: ReadonlyArray<{
    readonly version: string;
    readonly fullVersion: string;
    readonly versionLine: string;
  }>;
  readonly settings: {
    readonly rounds: number;
    readonly durationS: number;
    readonly warmupS: number;
    readonly connections: number;
    readonly wrkThreads: number;
    readonly haproxyThreads: number;
    readonly versions: readonly string[];
    /** Where HAProxy, the agent and wrk ran (cpus.ts). */
    readonly pinning: string;
  };
  readonly summary: readonly Summary[];
  readonly spoeCost: readonly SpoeCost[];
  readonly comparison: readonly Comparison[];
  readonly failures: readonly Failure[];
  readonly measurements: readonly Measurement[];
}

// ------------------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  ensureWrk();
  const binaries = VERSIONS.map(provisionHaproxy);
  buildProject();
  const facts = { ...machineFacts(), wrk: wrkVersion() };
  console.log(
    `HAProxy benchmark: ${binaries.map((b) => b.fullVersion).join(', ')}; agents ${AGENTS.join(', ')}; ${facts.cpuCount} × ${facts.cpuModel}, Node ${facts.node}; ${facts.wrk}`,
  );
  const measurements: Measurement[] = [];
  for (const binary of binaries) {
    measurements.push(...(await measureVersion(binary)));
  }
  const summaries = binaries.flatMap((b) =>
    AGENTS.flatMap((agent) => FRONTENDS.map((frontend) => summarize(b.version, agent, frontend, measurements))),
  );
  const costs = binaries.flatMap((b) =>
    AGENTS.map((agent) => {
      const of = (frontend: Frontend) =>
        summaries.find((s) => s.version === b.version && s.agent === agent && s.frontend === frontend)!;
      return spoeCost(of('no-spoe'), of('spoe'));
    }),
  );
  const comparisons = binaries
    .map((b) => compare(b.version, summaries, costs))
    .filter((c): c is Comparison => c !== undefined);
  report(binaries, summaries, costs, comparisons);

  const settings = {
    rounds: ROUNDS,
    durationS: DURATION_S,
    warmupS: WARMUP_S,
    connections: CONNECTIONS,
    wrkThreads: WRK_THREADS,
    haproxyThreads: HAPROXY_THREADS,
    versions: VERSIONS,
    pinning: pinningNote(`HAProxy on CPU ${CPU.haproxy}, agent and wrk on CPU ${CPU.besideHaproxy}`),
  };
  const haproxy = binaries.map(({ version, fullVersion, versionLine }) => ({ version, fullVersion, versionLine }));
  const results: HaproxyResults = {
    machine: withLoadAtEnd(facts),
    haproxy,
    settings,
    summary: summaries,
    spoeCost: costs,
    comparison: comparisons,
    failures,
    measurements,
  };
  console.log(`\nraw and aggregated results: ${writeResults('haproxy', results)}`);

  if (failures.length > 0) {
    throw new Error(
      `${failures.length} run(s) had errors, so their numbers do not measure successful requests:\n  ${failures.map((f) => `${f.run}: ${f.errors}`).join('\n  ')}`,
    );
  }
}

// On an error, also the HAProxy processes and temporary directories of test/support/cleanup (its own 'exit' handler
// covers a signal: runBench's process.exit runs it).
runBench('bench:haproxy', main, cleanupAll);
