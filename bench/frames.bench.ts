/**
 * `npm run bench:frames`: SPOP frames per second, latency and the agent's own CPU per frame, for four agents driven
 * by a C load generator (bench/spop-load.c) that plays HAProxy 3.1+ and costs far less than any agent it measures.
 *
 *   ceiling   bench/agents/ceiling.js: plain Node, no framework, no library (what Node itself allows)
 *   server    SpoeServer in a Nest microservice, the plainest @MessagePattern handler   (bench/agents/nest-agents.ts)
 *   example   the example agent as shipped: node dist/main.js                            (src/)
 *   pipeline  `server` plus one global interceptor and one pipe                        (bench/agents/nest-agents.ts)
 *
 * For each configuration (connections × NOTIFY in flight per connection) and round, the agents are measured one
 * after the other, so that noise from the machine (other jobs, thermal state) hits all of them alike; the report
 * gives the median over rounds. The agent's CPU comes from the kernel's accounting of its process tree
 * (/proc/<pid>/stat), the generator's from its own getrusage: a reader can see the generator was not the limit.
 *
 * Environment: BENCH_ROUNDS (3), BENCH_DURATION_MS (5000), BENCH_WARMUP_MS (1000), BENCH_GEN_THREADS (1),
 * BENCH_SKIP_BUILD=1 (do not run `npm run build`), CC (the C compiler, default cc).
 * Writes bench/results/frames.json (raw measures, medians, machine facts). Not a test: numbers vary with the machine.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { AddressInfo, createServer } from 'node:net';
import * as os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SpoeClient } from '../libs/spoe/src/testing';

const ROOT = join(__dirname, '..');
const GENERATOR_SOURCE = join(__dirname, 'spop-load.c');
const GENERATOR = join(__dirname, '.build', 'spop-load');
const RESULTS_FILE = join(__dirname, 'results', 'frames.json');

const ROUNDS = envInt('BENCH_ROUNDS', 3, 1);
const DURATION_MS = envInt('BENCH_DURATION_MS', 5000, 100);
const WARMUP_MS = envInt('BENCH_WARMUP_MS', 1000, 0);
const GENERATOR_THREADS = envInt('BENCH_GEN_THREADS', 1, 1);
const CONFIGURATIONS: readonly Configuration[] = [
  { connections: 1, inflight: 1 },
  { connections: 4, inflight: 16 },
  { connections: 16, inflight: 64 },
];
const AGENTS = ['ceiling', 'server', 'example', 'pipeline'] as const;
/** The generator is "the limit" when its CPU reaches this share of the cores its threads can use. */
const GENERATOR_LIMIT_PERCENT = 90;
const AGENT_START_TIMEOUT_MS = 30_000;
const AGENT_STOP_TIMEOUT_MS = 5_000;

type AgentName = (typeof AGENTS)[number];

interface Configuration {
  readonly connections: number;
  readonly inflight: number;
}

/** The JSON line spop-load prints. */
interface GeneratorResult {
  readonly frames: number;
  readonly seconds: number;
  readonly framesPerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
  readonly connections: number;
  readonly inflight: number;
  readonly threads: number;
  readonly cpuUserS: number;
  readonly cpuSysS: number;
  readonly cpuPercent: number;
}

interface Measurement extends Configuration {
  readonly round: number;
  readonly agent: AgentName;
  readonly generator: GeneratorResult;
  /** CPU seconds (user + system) of the agent's process tree over the measured invocation. */
  readonly agentCpuSeconds: number;
  readonly agentCpuUsPerFrame: number;
  /** Cores the agent kept busy: its CPU seconds over the measured seconds. */
  readonly agentCores: number;
  /** Cores kept busy by everything else on the machine (other jobs): how noisy the measure was. */
  readonly otherCores: number;
  readonly generatorLimited: boolean;
}

interface Summary extends Configuration {
  readonly agent: AgentName;
  readonly rounds: number;
  readonly framesPerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly agentCpuUsPerFrame: number;
  readonly agentCores: number;
  readonly generatorCpuPercent: number;
  readonly otherCores: number;
  /** Rounds in which the generator was the limit. */
  readonly generatorLimitedRounds: number;
  /** Against the ceiling agent in the same configuration (medians over medians). */
  readonly framesPerSecondVsCeiling: number;
  readonly p99VsCeiling: number;
}

interface RunningAgent {
  readonly child: ChildProcess;
  readonly port: number;
}

/** Every process this run started and has not seen exit: killed by pid on the way out, whatever happens. */
const children = new Set<ChildProcess>();

// ------------------------------------------------------------------------------------------------------- setup

function envInt(name: string, fallback: number, min: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(text)}`);
  return value;
}

/** Compiled on every run (a fraction of a second): the binary never lags behind its source. */
function buildGenerator(): void {
  const cc = process.env.CC ?? 'cc';
  mkdirSync(join(__dirname, '.build'), { recursive: true });
  try {
    execFileSync(cc, ['-O2', '-pthread', '-o', GENERATOR, GENERATOR_SOURCE], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`no C compiler: "${cc}" was not found. Install one (e.g. apt-get install gcc) or set CC.`, { cause: error });
    }
    throw new Error(`compiling bench/spop-load.c with "${cc}" failed (see above)`, { cause: error });
  }
}

/** The example agent runs from dist/; its output goes to stderr so that stdout stays the report. */
function buildProject(): void {
  if (process.env.BENCH_SKIP_BUILD === '1') return;
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
}

function compilerVersion(): string {
  try {
    return execFileSync(process.env.CC ?? 'cc', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    return 'unknown';
  }
}

// ------------------------------------------------------------------------------------------------------- processes

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGTERM, then SIGKILL if it lingers; descendants still alive afterwards (future worker modes) are killed too. */
async function stopProcessTree(child: ChildProcess): Promise<void> {
  const descendants = child.pid === undefined ? [] : processTree(child.pid).filter((pid) => pid !== child.pid);
  child.kill('SIGTERM');
  if (!(await waitExit(child, AGENT_STOP_TIMEOUT_MS))) {
    child.kill('SIGKILL');
    await waitExit(child, AGENT_STOP_TIMEOUT_MS);
  }
  for (const pid of descendants) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function killAllChildren(): void {
  for (const child of children) child.kill('SIGKILL');
}

// ------------------------------------------------------------------------------------------------------- agents

/** Resolves with the port an agent prints as `READY <port>`; rejects if it exits first. */
function readyPort(child: ChildProcess, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${name} agent: no READY line within ${AGENT_START_TIMEOUT_MS} ms`)), AGENT_START_TIMEOUT_MS);
    // Keeps reading stdout after READY too: a full pipe would block the agent.
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /READY (\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        output = '';
        resolve(Number(match[1]));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} agent exited before READY (${signal ?? `code ${code}`})`));
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The caller's agent settings (a REDIS_URL, a LOG_LEVEL…) must not change what is measured. */
function envWithoutAgentSettings(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^(SPOE_|HTTP_)|^(REDIS_URL|BLOCKLIST|LOG_LEVEL|SHUTDOWN_GRACE_MS|HEALTH_TIMEOUT_MS|PORT)$/.test(key)) delete env[key];
  }
  return env;
}

async function startReadyAgent(name: AgentName, args: string[]): Promise<RunningAgent> {
  const child = track(spawn(process.execPath, args, { cwd: ROOT, env: { ...envWithoutAgentSettings(), PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] }));
  try {
    return { child, port: await readyPort(child, name) };
  } catch (error) {
    await stopProcessTree(child);
    throw error;
  }
}

/** The example agent as shipped, on free ports, quiet (LOG_LEVEL=warn) and with no grace period on SIGTERM. */
async function startExampleAgent(): Promise<RunningAgent> {
  const [spoePort, httpPort] = [await freePort(), await freePort()];
  const env = {
    ...envWithoutAgentSettings(),
    SPOE_HOST: '127.0.0.1',
    SPOE_PORT: String(spoePort),
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(httpPort),
    LOG_LEVEL: 'warn',
    SHUTDOWN_GRACE_MS: '0',
  };
  const child = track(spawn(process.execPath, [join(ROOT, 'dist', 'main.js')], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] }));
  try {
    await waitForHello(child, spoePort);
    return { child, port: spoePort };
  } catch (error) {
    await stopProcessTree(child);
    throw error;
  }
}

/** Polls with health-check HELLOs until the agent answers one (it listens before it is ready). */
async function waitForHello(child: ChildProcess, port: number): Promise<void> {
  const deadline = Date.now() + AGENT_START_TIMEOUT_MS;
  for (;;) {
    if (exited(child)) throw new Error(`example agent exited during startup (${child.signalCode ?? `code ${child.exitCode}`})`);
    try {
      await SpoeClient.healthCheck({ host: '127.0.0.1', port, timeoutMs: 500 });
      return;
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`example agent: no AGENT-HELLO on port ${port} within ${AGENT_START_TIMEOUT_MS} ms (${(error as Error).message})`, { cause: error });
      }
    }
    await sleep(100);
  }
}

function startAgent(name: AgentName): Promise<RunningAgent> {
  switch (name) {
    case 'ceiling':
      return startReadyAgent(name, [join(__dirname, 'agents', 'ceiling.js')]);
    case 'server':
    case 'pipeline':
      return startReadyAgent(name, ['-r', '@swc-node/register', join(__dirname, 'agents', 'nest-agents.ts'), name]);
    case 'example':
      return startExampleAgent();
  }
}

// ------------------------------------------------------------------------------------------------------- CPU accounting

interface ProcStat {
  readonly ppid: number;
  /** utime + stime + cutime + cstime: its own CPU and that of its children already reaped. */
  readonly ticks: number;
}

const CLOCK_TICKS_PER_SECOND = clockTicks();

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const [ppid, utime, stime, cutime, cstime] = [1, 11, 12, 13, 14].map((i) => Number(fields[i]));
    return { ppid, ticks: utime + stime + cutime + cstime };
  } catch {
    return undefined; // exited meanwhile
  }
}

function allStats(): Map<number, ProcStat> {
  const stats = new Map<number, ProcStat>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) stats.set(Number(entry), stat);
  }
  return stats;
}

/** The pid and all its descendants, alive now. */
function processTree(root: number, stats = allStats()): number[] {
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, stat] of stats) if (stat.ppid === tree[i]) tree.push(pid);
  }
  return tree.filter((pid) => stats.has(pid));
}

/**
 * Busy CPU seconds of the whole machine so far, all cores (/proc/stat). Softirq time is in it and, with tick-based
 * accounting, also in the stime of the process it interrupted: busy − agent − generator is what other jobs used.
 */
function machineBusySeconds(): number {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU seconds used so far by the agent and all its descendants (a future mode forks workers). A worker that exits
 * and is reaped moves its time into its parent's cutime/cstime, so the sum stays right across exits.
 */
function treeCpuSeconds(root: number): number {
  const stats = allStats();
  const ticks = processTree(root, stats).reduce((sum, pid) => sum + stats.get(pid)!.ticks, 0);
  return ticks / CLOCK_TICKS_PER_SECOND;
}

// ------------------------------------------------------------------------------------------------------- load

function runGenerator(port: number, config: Configuration, durationMs: number): Promise<GeneratorResult> {
  const args = ['--host', '127.0.0.1', '--port', String(port), '--connections', String(config.connections), '--inflight', String(config.inflight)];
  args.push('--duration-ms', String(durationMs), '--warmup-ms', '0', '--threads', String(GENERATOR_THREADS), '--expect-var', 'ip_score');
  const child = track(spawn(GENERATOR, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    // Setup, the measure and the 2 s drain bound, with room to spare: a hung generator must not hang the bench.
    const timer = setTimeout(() => child.kill('SIGKILL'), durationMs + 20_000);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(stdout) as GeneratorResult);
      else reject(new Error(`spop-load failed (${signal ?? `exit ${code}`}): ${stderr.trim() || 'no message'}`));
    });
  });
}

/**
 * One agent process per measure (not per round): each measure starts from the same state, with nothing carried over
 * from the previous configuration (heap grown for 1024 frames in flight, connection state, JIT feedback for another
 * load shape). Startup costs a second or two, outside every timed window.
 *
 * The warm-up is a separate generator invocation; the agent's CPU is sampled between the invocations, so the CPU
 * window is the measured invocation (plus its connect and drain, a few ms out of seconds, when the agent is idle).
 */
async function measure(agent: AgentName, config: Configuration, round: number): Promise<Measurement> {
  const running = await startAgent(agent);
  try {
    if (WARMUP_MS > 0) await runGenerator(running.port, config, WARMUP_MS);
    const [before, busyBefore] = [treeCpuSeconds(running.child.pid!), machineBusySeconds()];
    const generator = await runGenerator(running.port, config, DURATION_MS);
    const agentCpuSeconds = treeCpuSeconds(running.child.pid!) - before;
    const otherCpuSeconds = machineBusySeconds() - busyBefore - agentCpuSeconds - generator.cpuUserS - generator.cpuSysS;
    return {
      round,
      agent,
      ...config,
      generator,
      agentCpuSeconds,
      agentCpuUsPerFrame: generator.frames > 0 ? (agentCpuSeconds * 1e6) / generator.frames : NaN,
      agentCores: agentCpuSeconds / generator.seconds,
      otherCores: Math.max(0, otherCpuSeconds / generator.seconds),
      generatorLimited: generator.cpuPercent >= GENERATOR_LIMIT_PERCENT * generator.threads,
    };
  } finally {
    await stopProcessTree(running.child);
  }
}

// ------------------------------------------------------------------------------------------------------- report

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function summarize(measurements: readonly Measurement[]): Summary[] {
  const summaries: Summary[] = [];
  for (const config of CONFIGURATIONS) {
    const of = (agent: AgentName): Measurement[] =>
      measurements.filter((m) => m.agent === agent && m.connections === config.connections && m.inflight === config.inflight);
    const ceiling = of('ceiling');
    const ceilingFps = median(ceiling.map((m) => m.generator.framesPerSecond));
    const ceilingP99 = median(ceiling.map((m) => m.generator.p99Us));
    for (const agent of AGENTS) {
      const ms = of(agent);
      if (ms.length === 0) continue;
      const med = (pick: (m: Measurement) => number): number => median(ms.map(pick));
      const framesPerSecond = med((m) => m.generator.framesPerSecond);
      const p99Us = med((m) => m.generator.p99Us);
      summaries.push({
        agent,
        ...config,
        rounds: ms.length,
        framesPerSecond,
        p50Us: med((m) => m.generator.p50Us),
        p99Us,
        p999Us: med((m) => m.generator.p999Us),
        agentCpuUsPerFrame: med((m) => m.agentCpuUsPerFrame),
        agentCores: med((m) => m.agentCores),
        generatorCpuPercent: med((m) => m.generator.cpuPercent),
        otherCores: med((m) => m.otherCores),
        generatorLimitedRounds: ms.filter((m) => m.generatorLimited).length,
        framesPerSecondVsCeiling: framesPerSecond / ceilingFps,
        p99VsCeiling: p99Us / ceilingP99,
      });
    }
  }
  return summaries;
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const fixed = (digits: number) => (n: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');

function table(summaries: readonly Summary[]): string {
  const header = ['agent', 'frames/s', '× ceiling', 'p50 µs', 'p99 µs', 'p99.9 µs', 'p99 × ceiling', 'agent µs/frame', 'agent cores', 'other cores', 'gen CPU %'];
  const rows = summaries.map((s) => [
    s.agent,
    int(s.framesPerSecond),
    fixed(2)(s.framesPerSecondVsCeiling),
    fixed(0)(s.p50Us),
    fixed(0)(s.p99Us),
    fixed(0)(s.p999Us),
    fixed(2)(s.p99VsCeiling),
    fixed(2)(s.agentCpuUsPerFrame),
    fixed(2)(s.agentCores),
    fixed(2)(s.otherCores),
    fixed(0)(s.generatorCpuPercent) + (s.generatorLimitedRounds > 0 ? ` GEN-LIMITED(${s.generatorLimitedRounds}/${s.rounds})` : ''),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function report(summaries: readonly Summary[]): void {
  console.log(`\nmedians over ${ROUNDS} round(s); ${DURATION_MS} ms measured after ${WARMUP_MS} ms of warm-up; generator threads: ${GENERATOR_THREADS}`);
  for (const config of CONFIGURATIONS) {
    const rows = summaries.filter((s) => s.connections === config.connections && s.inflight === config.inflight);
    console.log(`\n${config.connections} connection(s) × ${config.inflight} NOTIFY in flight\n${table(rows)}`);
  }
  console.log(
    `\nagent µs/frame: the agent's CPU (user + system, whole process tree) per frame; agent cores: its CPU over the wall time.` +
      `\nother cores: CPU used meanwhile by everything else on the machine; well above 0, the machine was shared and the numbers are noisy.` +
      `\ngen CPU %: the generator's own CPU (100 = one core); GEN-LIMITED: ≥ ${GENERATOR_LIMIT_PERCENT}% of its threads, the numbers then bound the generator, not the agent.`,
  );
}

function progress(m: Measurement, rounds: number): string {
  const g = m.generator;
  const flag = m.generatorLimited ? '  GENERATOR-LIMITED' : '';
  return (
    `round ${m.round}/${rounds} ${m.connections}×${m.inflight} ${m.agent.padEnd(8)} ${int(g.framesPerSecond).padStart(10)} frames/s` +
    `  p50 ${fixed(0)(g.p50Us)} µs  p99 ${fixed(0)(g.p99Us)} µs  agent ${fixed(2)(m.agentCpuUsPerFrame)} µs/frame (${fixed(2)(m.agentCores)} cores)  other ${fixed(2)(m.otherCores)} cores` +
    `  generator ${fixed(0)(g.cpuPercent)}%${flag}`
  );
}

interface MachineFacts {
  readonly cpuModel: string;
  readonly cpuCount: number;
  readonly node: string;
  readonly os: string;
  readonly compiler: string;
  readonly loadAverageAtStart: number[];
  readonly date: string;
}

function machine(): MachineFacts {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    compiler: compilerVersion(),
    loadAverageAtStart: os.loadavg(),
    date: new Date().toISOString(),
  };
}

// ------------------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  buildGenerator();
  buildProject();
  const facts = machine();
  console.log(`frame benchmark: agents ${AGENTS.join(', ')}; ${ROUNDS} round(s) of ${DURATION_MS} ms; ${facts.cpuCount} × ${facts.cpuModel}, Node ${facts.node}`);
  const measurements: Measurement[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const config of CONFIGURATIONS) {
      for (const agent of AGENTS) {
        const m = await measure(agent, config, round);
        measurements.push(m);
        console.log(progress(m, ROUNDS));
      }
    }
  }
  const summaries = summarize(measurements);
  report(summaries);
  const settings = { rounds: ROUNDS, durationMs: DURATION_MS, warmupMs: WARMUP_MS, generatorThreads: GENERATOR_THREADS, configurations: CONFIGURATIONS };
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify({ machine: { ...facts, loadAverageAtEnd: os.loadavg() }, settings, summary: summaries, measurements }, null, 2)}\n`);
  console.log(`\nraw and aggregated results: ${RESULTS_FILE}`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAllChildren();
    process.exit(130);
  });
}
process.on('exit', killAllChildren);

main().catch((error: Error) => {
  console.error(`bench:frames: ${error.message}`);
  killAllChildren();
  process.exitCode = 1;
});
