/**
 * `npm run bench:frames`: SPOP frames per second, latency and the agent's own CPU per frame, for the agents below driven
 * by a C load generator (bench/spop-load.c) that plays HAProxy 3.1+ and costs far less than any agent it measures.
 *
 *   ceiling   bench/agents/ceiling.js: plain Node, no framework, no library (what Node itself allows)
 *   server    SpoeServer in a Nest microservice, the plainest @MessagePattern handler   (bench/agents/nest-agents.ts)
 *   example   the example agent as shipped: node dist/main.js                            (src/)
 *   pipeline  `server` plus one global interceptor and one pipe                        (bench/agents/nest-agents.ts)
 *   metrics   `server` with the Prometheus series of nestjs-spoe/metrics               (bench/agents/nest-agents.ts)
 *   observed  `metrics` with OpenTelemetry tracing continuing HAProxy's traces (1%)  (bench/agents/nest-agents.ts)
 *   observed-sampled  `observed` starting a trace for 1% of the messages                  (bench/agents/nest-agents.ts)
 *   observed-rare  `observed` starting a trace for 0.1% of the messages                   (bench/agents/nest-agents.ts)
 *   observed-all  `observed` starting a trace for every message, all recorded          (bench/agents/nest-agents.ts)
 *   server-proxied  `server` behind HAProxy 3.4 in `mode tcp`, plain TCP                  (bench/haproxy/tcp-proxy.ts)
 *   server-tls  `server` over TLS from that HAProxy (`ssl verify required`)               (bench/haproxy/tcp-proxy.ts)
 *   server-mtls  `server-tls` with HAProxy's client certificate, required by the agent    (bench/haproxy/tcp-proxy.ts)
 *
 * The generator speaks plain TCP: TLS's cost is measured through a TLS-originating HAProxy, and the one to read is the
 * agent's CPU per frame of `server-tls` and `server-mtls` against `server-proxied` (same path, no TLS).
 *
 * With BENCH_BASELINE=<git ref>, `server@<ref>` and `example@<ref>` are measured too, in the same rounds: the same
 * agents built from that ref (bench/support/baseline.ts), so that a change is judged before/after on one machine state.
 * The proxied agents have no baseline version: a ref from before the `tls` option could not run them.
 *
 * For each configuration (connections × NOTIFY in flight per connection) and round, the agents are measured one
 * after the other, so that noise from the machine (other jobs, thermal state) hits all of them alike; the report
 * gives the median over rounds. The agent's CPU comes from the kernel's accounting of its process tree
 * (/proc/<pid>/stat), the generator's from its own getrusage: a reader can see the generator was not the limit.
 *
 * Warm-up: every agent is loaded for BENCH_WARMUP_MS before its measure, the traced ones (ceiling-traced and the
 * observed ones) for BENCH_TRACED_WARMUP_MS. The spans of most are rare (1 message in 100), and V8 takes seconds to
 * compile code run that rarely: timed around the SDK's startSpan, ceiling-traced's spans cost 12.9, 6.6, 3.6 and
 * 3.4 µs in the 1st, 2nd, 3rd and 4th two-second windows of its load. The other agents run their whole path for every
 * frame and are compiled within their first second, observed-all included (a span on every message), which is warmed
 * up as the other traced agents are all the same.
 *
 * Side by side: a cost judged against a reference (metrics and tracing against `server`, ceiling-traced against
 * `ceiling`, an agent against its baseline version) is also measured with both agents running at once, at 4×16: each
 * warmed up, then BENCH_PAIRED_WINDOWS pairs of BENCH_PAIRED_WINDOW_MS windows, the load on one then the other (in
 * turn first), and the median of the per-pair ratios. Both get the subject's load: `observed`'s NOTIFY carry a fifth
 * argument, its traceparent, which the reference then reads past too, so that the ratio is what tracing costs on the
 * same traffic, not tracing plus a bigger frame. The rounds above put minutes between the two measures of a
 * ratio, and this cloud machine's speed drifts by a third over minutes (once `server` measured 2.83, 2.88 and 1.86 µs
 * per frame in three rounds, and its own baseline 1.50× itself in one); two seconds apart, pairs agree within a few
 * percent.
 *
 * Environment: BENCH_ROUNDS (3), BENCH_DURATION_MS (5000), BENCH_WARMUP_MS (1000), BENCH_TRACED_WARMUP_MS (6000),
 * BENCH_PAIRED_WINDOWS (8, 0 skips the side-by-side measures), BENCH_PAIRED_WINDOW_MS (2000), BENCH_GEN_THREADS (1),
 * BENCH_BASELINE (unset), BENCH_AGENTS (all), BENCH_SKIP_BUILD=1 (do not run `npm run build`), CC (the C compiler, default cc).
 * Writes bench/results/frames.json (raw measures, medians, machine facts). Not a test: numbers vary with the machine.
 */
import { PROXIED_AGENTS, prepareProxies, ProxySetup, startProxied } from './haproxy/tcp-proxy';
import { buildProject, RunningAgent, startCeiling, startExample, startNestAgent } from './support/agents';
import { Baseline, prepareBaseline } from './support/baseline';
import { CPU, pinningNote } from './support/cpus';
import { envInt } from './support/env';
import { buildGenerator, compilerVersion } from './support/generator';
import { LoadMeasure, LoadSummary, measureLoad, summarizeLoad } from './support/load';
import { machineFacts, MachineFacts, withLoadAtEnd } from './support/machine';
import { runBench, stopProcessTree } from './support/processes';
import { fixed, FRAMES_COLUMNS, framesRow, int, textTable } from './support/report';
import { writeResults } from './support/results';
import { median } from './support/stats';

const ROUNDS = envInt('BENCH_ROUNDS', 3, 1);
const DURATION_MS = envInt('BENCH_DURATION_MS', 5000, 100);
const WARMUP_MS = envInt('BENCH_WARMUP_MS', 1000, 0);
/** The warm-up of the agents whose spans are rare (see above). */
const TRACED_WARMUP_MS = envInt('BENCH_TRACED_WARMUP_MS', 6000, 0);
const GENERATOR_THREADS = envInt('BENCH_GEN_THREADS', 1, 1);
const PAIRED_WINDOWS = envInt('BENCH_PAIRED_WINDOWS', 8, 0);
const PAIRED_WINDOW_MS = envInt('BENCH_PAIRED_WINDOW_MS', 2000, 100);
/** The configuration of the side-by-side measures: the one the cost targets are judged at. */
const PAIRED_CONFIGURATION: Configuration = { connections: 4, inflight: 16 };
/** BENCH_AGENTS=server,observed: only these agents (and their baseline versions); all by default. */
const AGENTS = process.env.BENCH_AGENTS ? process.env.BENCH_AGENTS.split(',').map((name) => name.trim()) : undefined;
const CONFIGURATIONS: readonly Configuration[] = [
  { connections: 1, inflight: 1 },
  { connections: 4, inflight: 16 },
  { connections: 16, inflight: 64 },
];
/** The generator is "the limit" when its CPU reaches this share of the cores its threads can use. */
const GENERATOR_LIMIT_PERCENT = 90;

export interface Configuration {
  readonly connections: number;
  readonly inflight: number;
}

/** What the generator drives: the agent, or HAProxy in front of it; `pid` is the agent's, whose CPU is measured. */
interface Target {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

/** An agent as measured: its name in the report and how to start one. */
interface AgentSpec {
  readonly name: string;
  readonly start: () => Promise<Target>;
  /** Every Nth NOTIFY carries a sampled traceparent (see GeneratorRun); none by default. */
  readonly tracedEvery?: number;
  /** The other NOTIFY carry one too, not sampled (see GeneratorRun). */
  readonly propagateAll?: boolean;
  /** Its spans are rare: warmed up for TRACED_WARMUP_MS (see above). */
  readonly traced?: boolean;
}

export interface Measurement extends Configuration, LoadMeasure {
  readonly round: number;
  readonly agent: string;
  readonly generatorLimited: boolean;
}

export interface Summary extends Configuration, LoadSummary {
  readonly agent: string;
  /** Rounds in which the generator was the limit. */
  readonly generatorLimitedRounds: number;
  /** Against the ceiling agent in the same configuration (medians over medians). */
  readonly framesPerSecondVsCeiling: number;
  readonly p99VsCeiling: number;
}

/** A cost measured side by side: `subject` against `reference`, both running, in alternating windows. */
export interface PairedCost extends Configuration {
  readonly subject: string;
  readonly reference: string;
  readonly windowMs: number;
  /** Per pair of windows, the subject's over the reference's. */
  readonly cpuRatios: readonly number[];
  readonly framesPerSecondRatios: readonly number[];
  /** Medians over the windows. */
  readonly subjectCpuUsPerFrame: number;
  readonly referenceCpuUsPerFrame: number;
  readonly subjectFramesPerSecond: number;
  readonly referenceFramesPerSecond: number;
}

/** bench/results/frames.json. */
export interface FramesResults {
  readonly machine: MachineFacts & { readonly compiler: string; readonly loadAverageAtEnd: number[] };
  readonly settings: {
    readonly rounds: number;
    readonly durationMs: number;
    readonly warmupMs: number;
    /** The warm-up of the agents whose spans are rare. */
    readonly tracedWarmupMs?: number;
    /** The side-by-side measures: pairs of windows, and each window's length. */
    readonly pairedWindows?: number;
    readonly pairedWindowMs?: number;
    readonly generatorThreads: number;
    /** Where agents and the generator ran (cpus.ts). */
    readonly pinning: string;
    readonly configurations: readonly Configuration[];
    /** BENCH_BASELINE's ref and commit, when set. */
    readonly baseline?: { readonly ref: string; readonly commit: string; readonly skipped: readonly string[] };
  };
  readonly agents: readonly string[];
  readonly summary: readonly Summary[];
  readonly measurements: readonly Measurement[];
  /** The side-by-side measures (absent from runs before they existed). */
  readonly paired?: readonly PairedCost[];
}

// ------------------------------------------------------------------------------------------------------- agents

/**
 * The agents of this tree, and with a baseline its `server` and `example` right after their current versions. An
 * agent runs close to the one it is compared with (example after the ceiling, the observed ones after `server`): on
 * this cloud machine speed drifts within a round, and the closer two measures are, the less of that drift their ratio
 * carries.
 */
function agentSpecs(baseline: Baseline | undefined): AgentSpec[] {
  const direct = (name: string, start: () => Promise<RunningAgent>): AgentSpec => ({
    name,
    start: async () => {
      const agent = await start();
      return { pid: agent.pid, port: agent.port, stop: () => stopProcessTree(agent.child) };
    },
  });
  // The proxied agents together, the TLS ones right after their plain baseline; HAProxy and certificates made once.
  let proxies: ProxySetup | undefined;
  const proxied = PROXIED_AGENTS.map((name) => ({
    name,
    start: () => startProxied(name, (proxies ??= prepareProxies()), { agent: CPU.agent, proxy: CPU.proxy }),
  }));
  return [
    direct('ceiling', () => startCeiling({ cpu: CPU.agent })),
    // The SDK's span on 1% of the NOTIFY, with nothing else around it: the floor of tracing's cost.
    {
      ...direct('ceiling-traced', () => startCeiling({ cpu: CPU.agent, traced: true })),
      tracedEvery: 100,
      traced: true,
    },
    direct('example', () => startExample({ cpu: CPU.agent })),
    ...(baseline?.example ? [direct(baseline.example.name, baseline.example.start)] : []),
    direct('server', () => startNestAgent('server', { cpu: CPU.agent })),
    ...(baseline?.server ? [direct(baseline.server.name, baseline.server.start)] : []),
    direct('metrics', () => startNestAgent('metrics', { cpu: CPU.agent })),
    // An edge that hands on every request's trace context and samples 1% of them: HAProxy passes each traceparent on,
    // and the agent continues the sampled ones.
    {
      ...direct('observed', () => startNestAgent('observed', { cpu: CPU.agent })),
      tracedEvery: 100,
      propagateAll: true,
      traced: true,
    },
    { ...direct('observed-sampled', () => startNestAgent('observed-sampled', { cpu: CPU.agent })), traced: true },
    { ...direct('observed-rare', () => startNestAgent('observed-rare', { cpu: CPU.agent })), traced: true },
    { ...direct('observed-all', () => startNestAgent('observed-all', { cpu: CPU.agent })), traced: true },
    direct('pipeline', () => startNestAgent('pipeline', { cpu: CPU.agent })),
    ...proxied,
  ].filter((agent) => AGENTS === undefined || AGENTS.includes(agent.name.replace(/@.*/, '')));
}

// ------------------------------------------------------------------------------------------------------- load

/** How long `agent` is loaded before it is measured (see the top of this file). */
function warmupOf(agent: AgentSpec): number {
  return agent.traced ? TRACED_WARMUP_MS : WARMUP_MS;
}

/**
 * One agent process per measure (not per round): each measure starts from the same state, with nothing carried over
 * from the previous configuration (heap grown for 1024 frames in flight, connection state, JIT feedback for another
 * load shape). Startup costs a second or two, outside every timed window.
 */
async function measure(agent: AgentSpec, config: Configuration, round: number): Promise<Measurement> {
  const running = await agent.start();
  try {
    const load = await measureLoad(
      running.pid,
      {
        port: running.port,
        ...config,
        threads: GENERATOR_THREADS,
        cpu: CPU.generator,
        tracedEvery: agent.tracedEvery,
        propagateAll: agent.propagateAll,
      },
      warmupOf(agent),
      DURATION_MS,
    );
    const generatorLimited = load.generator.cpuPercent >= GENERATOR_LIMIT_PERCENT * load.generator.threads;
    return { round, agent: agent.name, ...config, ...load, generatorLimited };
  } finally {
    await running.stop();
  }
}

// ------------------------------------------------------------------------------------------------------- side by side

/** Which costs are measured side by side: subject against reference, each pair of agents that this run has. */
function pairsOf(agents: readonly AgentSpec[], baseline: Baseline | undefined): [AgentSpec, AgentSpec][] {
  const named = (name: string | undefined) => (name === undefined ? undefined : agents.find((a) => a.name === name));
  const pairs: [string, string | undefined][] = [
    ['metrics', 'server'],
    ['observed', 'server'],
    ['observed-sampled', 'server'],
    ['observed-rare', 'server'],
    ['observed-all', 'server'],
    ['ceiling-traced', 'ceiling'],
    ['server', baseline?.server?.name],
    ['example', baseline?.example?.name],
  ];
  return pairs.flatMap(([subject, reference]) => {
    const [a, b] = [named(subject), named(reference)];
    return a && b ? [[a, b] as [AgentSpec, AgentSpec]] : [];
  });
}

/**
 * `subject` and `reference` started together, each warmed up, then loaded in turn, window by window (see the top of
 * this file); the agent's CPU of each window from the kernel's accounting, as in every measure.
 */
async function measurePaired(subject: AgentSpec, reference: AgentSpec): Promise<PairedCost> {
  const config = PAIRED_CONFIGURATION;
  const sides = [subject, reference];
  const running: Target[] = [];
  try {
    for (const agent of sides) running.push(await agent.start());
    const load = (side: number, durationMs: number): Promise<LoadMeasure> =>
      measureLoad(
        running[side].pid,
        {
          port: running[side].port,
          ...config,
          threads: GENERATOR_THREADS,
          cpu: CPU.generator,
          // The subject's load for both (see the top of this file).
          tracedEvery: subject.tracedEvery,
          propagateAll: subject.propagateAll,
        },
        0,
        durationMs,
      );
    for (let side = 0; side < 2; side++) await load(side, warmupOf(sides[side]));
    const windows: [LoadMeasure, LoadMeasure][] = [];
    for (let i = 0; i < PAIRED_WINDOWS; i++) {
      const pair: LoadMeasure[] = [];
      for (const side of i % 2 === 0 ? [0, 1] : [1, 0]) pair[side] = await load(side, PAIRED_WINDOW_MS);
      windows.push([pair[0], pair[1]]);
    }
    const ratios = (value: (m: LoadMeasure) => number) => windows.map(([a, b]) => value(a) / value(b));
    return {
      subject: subject.name,
      reference: reference.name,
      ...config,
      windowMs: PAIRED_WINDOW_MS,
      cpuRatios: ratios((m) => m.agentCpuUsPerFrame),
      framesPerSecondRatios: ratios((m) => m.generator.framesPerSecond),
      subjectCpuUsPerFrame: median(windows.map(([a]) => a.agentCpuUsPerFrame)),
      referenceCpuUsPerFrame: median(windows.map(([, b]) => b.agentCpuUsPerFrame)),
      subjectFramesPerSecond: median(windows.map(([a]) => a.generator.framesPerSecond)),
      referenceFramesPerSecond: median(windows.map(([, b]) => b.generator.framesPerSecond)),
    };
  } finally {
    await Promise.all(running.map((agent) => agent.stop()));
  }
}

function pairedProgress(p: PairedCost): string {
  const list = (ratios: readonly number[]) => ratios.map((r) => fixed(2)(r)).join(' ');
  return (
    `side by side ${p.connections}×${p.inflight} ${p.subject} / ${p.reference}: CPU per frame ${fixed(2)(median(p.cpuRatios))}× [${list(p.cpuRatios)}]` +
    ` (${fixed(2)(p.subjectCpuUsPerFrame)} vs ${fixed(2)(p.referenceCpuUsPerFrame)} µs), frames/s ${fixed(2)(median(p.framesPerSecondRatios))}×`
  );
}

// ------------------------------------------------------------------------------------------------------- report

function summarize(agents: readonly string[], measurements: readonly Measurement[]): Summary[] {
  const summaries: Summary[] = [];
  for (const config of CONFIGURATIONS) {
    const of = (agent: string): Measurement[] =>
      measurements.filter(
        (m) => m.agent === agent && m.connections === config.connections && m.inflight === config.inflight,
      );
    const ceiling = of('ceiling');
    const ceilingFps = median(ceiling.map((m) => m.generator.framesPerSecond));
    const ceilingP99 = median(ceiling.map((m) => m.generator.p99Us));
    for (const agent of agents) {
      const ms = of(agent);
      if (ms.length === 0) continue;
      const load = summarizeLoad(ms);
      summaries.push({
        agent,
        ...config,
        ...load,
        generatorLimitedRounds: ms.filter((m) => m.generatorLimited).length,
        framesPerSecondVsCeiling: load.framesPerSecond / ceilingFps,
        p99VsCeiling: load.p99Us / ceilingP99,
      });
    }
  }
  return summaries;
}

function report(summaries: readonly Summary[]): void {
  console.log(
    `\nmedians over ${ROUNDS} round(s); ${DURATION_MS} ms measured after ${WARMUP_MS} ms of warm-up (traced agents: ${TRACED_WARMUP_MS} ms); generator threads: ${GENERATOR_THREADS}`,
  );
  for (const config of CONFIGURATIONS) {
    const rows = summaries.filter((s) => s.connections === config.connections && s.inflight === config.inflight);
    console.log(
      `\n${config.connections} connection(s) × ${config.inflight} NOTIFY in flight\n${textTable(FRAMES_COLUMNS, rows.map(framesRow))}`,
    );
  }
  console.log(
    `\nagent µs/frame: the agent's CPU (user + system, whole process tree) per frame; agent cores: its CPU over the wall time.` +
      `\nother cores: CPU used meanwhile by everything else on the machine; well above 0, the machine was shared and the numbers are noisy.` +
      `\ngenerator CPU: its own CPU (100% = one core); (limit in N/M): in N rounds of M it used ≥ ${GENERATOR_LIMIT_PERCENT}% of its threads, and the numbers then bound the generator, not the agent.`,
  );
}

function progress(m: Measurement, rounds: number, nameWidth: number): string {
  const g = m.generator;
  const flag = m.generatorLimited ? '  GENERATOR-LIMITED' : '';
  return (
    `round ${m.round}/${rounds} ${m.connections}×${m.inflight} ${m.agent.padEnd(nameWidth)} ${int(g.framesPerSecond).padStart(10)} frames/s` +
    `  p50 ${fixed(0)(g.p50Us)} µs  p99 ${fixed(0)(g.p99Us)} µs  agent ${fixed(2)(m.agentCpuUsPerFrame)} µs/frame (${fixed(2)(m.agentCores)} cores)  other ${fixed(2)(m.otherCores)} cores` +
    `  generator ${fixed(0)(g.cpuPercent)}%${flag}`
  );
}

// ------------------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  buildGenerator();
  buildProject();
  const baseline = await prepareBaseline(process.env.BENCH_BASELINE);
  const agents = agentSpecs(baseline);
  const names = agents.map((a) => a.name);
  const facts = { ...machineFacts(), compiler: compilerVersion() };
  console.log(
    `frame benchmark: agents ${names.join(', ')}; ${ROUNDS} round(s) of ${DURATION_MS} ms; ${facts.cpuCount} × ${facts.cpuModel}, Node ${facts.node}`,
  );
  const nameWidth = Math.max(8, ...names.map((n) => n.length));
  const measurements: Measurement[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const config of CONFIGURATIONS) {
      for (const agent of agents) {
        const m = await measure(agent, config, round);
        measurements.push(m);
        console.log(progress(m, ROUNDS, nameWidth));
      }
    }
  }
  const summaries = summarize(names, measurements);
  report(summaries);
  const paired: PairedCost[] = [];
  if (PAIRED_WINDOWS > 0) {
    console.log(
      `\nside by side, ${PAIRED_WINDOWS} pairs of ${PAIRED_WINDOW_MS} ms windows (subject / reference, per pair):`,
    );
    for (const [subject, reference] of pairsOf(agents, baseline)) {
      const p = await measurePaired(subject, reference);
      paired.push(p);
      console.log(pairedProgress(p));
    }
  }
  const results: FramesResults = {
    machine: withLoadAtEnd(facts),
    settings: {
      rounds: ROUNDS,
      durationMs: DURATION_MS,
      warmupMs: WARMUP_MS,
      tracedWarmupMs: TRACED_WARMUP_MS,
      pairedWindows: PAIRED_WINDOWS,
      pairedWindowMs: PAIRED_WINDOW_MS,
      generatorThreads: GENERATOR_THREADS,
      pinning: pinningNote(
        `agent on CPU ${CPU.agent}, generator on CPU ${CPU.generator}` +
          (names.some((n) => PROXIED_AGENTS.some((p) => p === n)) ? `, HAProxy on CPU ${CPU.proxy}` : ''),
      ),
      configurations: CONFIGURATIONS,
      ...(baseline && { baseline: { ref: baseline.ref, commit: baseline.commit, skipped: baseline.skipped } }),
    },
    agents: names,
    summary: summaries,
    measurements,
    paired,
  };
  console.log(`\nraw and aggregated results: ${writeResults('frames', results)}`);
}

runBench('bench:frames', main);
