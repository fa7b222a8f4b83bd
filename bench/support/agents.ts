/**
 * The agents the benchmarks measure, each in its own process on 127.0.0.1, started the same way by every bench:
 *
 *   ceiling    bench/agents/ceiling.js: plain Node, no framework, no library (what Node itself allows); prints `READY <port>`
 *   server     SpoeServer in a Nest microservice, the plainest handler          (bench/agents/nest-agents.ts server)
 *   pipeline   `server` plus one global interceptor and one pipe               (bench/agents/nest-agents.ts pipeline)
 *   metrics    `server` with SpoeMetricsModule                                  (bench/agents/nest-agents.ts metrics)
 *   observed   `metrics` with SpoeTracingModule continuing HAProxy's traces    (bench/agents/nest-agents.ts observed)
 *   observed-sampled  `observed` starting a trace for 1% of the messages          (… observed-sampled)
 *   observed-rare  `observed` starting a trace for 0.1% of the messages           (… observed-rare)
 *   observed-all  `observed` starting a trace for every message, all recorded  (… observed-all)
 *   example    the example agent as shipped: node dist/main.js                  (src/; answers a health-check HELLO once up)
 *   heavy      a ≈50 µs/message handler under src/'s worker supervisor         (bench/agents/heavy-agent.ts)
 *
 * The nest-agents.ts kinds serve SPOP over TLS with the `tls` option (bench:frames' `server-tls`, `server-mtls`).
 * Each answers check-client-ip with set-var sess.ip_score. A start resolves once the agent serves, and stops the
 * process if it does not.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { onCpu } from './cpus';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SpoeClient } from '../../libs/spoe/src/testing';
import { freePort } from './ports';
import { exited, stopProcessTree, track } from './processes';

export const ROOT = join(__dirname, '..', '..');
const AGENTS_DIR = join(ROOT, 'bench', 'agents');
const START_TIMEOUT_MS = 30_000;

export interface RunningAgent {
  /** As reported: `ceiling`, `example`, `example@<ref>`… */
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
}

export interface AgentOptions {
  /** Node flags before the script (--expose-gc, --require a probe, --trace-gc…). */
  readonly nodeArgs?: readonly string[];
  /** Added to the environment, after the caller's own agent settings were removed. */
  readonly env?: NodeJS.ProcessEnv;
  /** An IPC channel to the agent (the memory probe answers over it). */
  readonly ipc?: boolean;
  /** Everything the agent prints on stdout (V8's --trace-gc goes there); by default it is read and dropped. */
  readonly onStdout?: (chunk: Buffer) => void;
  /** The CPU to run on (see cpus.ts); by default wherever the scheduler puts it. */
  readonly cpu?: number;
}

/** The example agent runs from dist/; the build's output goes to stderr so that stdout stays the report. */
export function buildProject(): void {
  if (process.env.BENCH_SKIP_BUILD === '1') return;
  try {
    execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
  } catch (error) {
    throw new Error('npm run build failed (see above); BENCH_SKIP_BUILD=1 uses the dist/ already there', {
      cause: error,
    });
  }
}

/** What configures an agent in its environment (the example's, heavy-agent.ts', nest-agents.ts' BENCH_TLS_*). */
const AGENT_SETTING =
  /^(SPOE_|HTTP_|HEAVY_|BENCH_TLS_)|^(REDIS_URL|BLOCKLIST|LOG_LEVEL|SHUTDOWN_GRACE_MS|HEALTH_TIMEOUT_MS|PORT)$/;

/** The caller's agent settings (a REDIS_URL, SPOE_WORKERS, a LOG_LEVEL…) must not change what is measured. */
function envWithoutAgentSettings(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (AGENT_SETTING.test(key)) delete env[key];
  }
  return env;
}

/**
 * Node running `args` (a script and its arguments), tracked for the kill on exit. stdout is always read (a full pipe
 * would block the agent); stderr is shared with the bench so that failures show.
 */
function spawnNode(args: readonly string[], options: AgentOptions, cwd = ROOT): ChildProcess {
  const env = { ...envWithoutAgentSettings(), ...options.env };
  const stdio: Array<'ignore' | 'pipe' | 'inherit' | 'ipc'> = [
    'ignore',
    'pipe',
    'inherit',
    ...(options.ipc ? (['ipc'] as const) : []),
  ];
  const [command, commandArgs] = onCpu(options.cpu, process.execPath, [...(options.nodeArgs ?? []), ...args]);
  const child = track(spawn(command, commandArgs, { cwd, env, stdio }));
  child.stdout!.on('data', options.onStdout ?? (() => undefined));
  return child;
}

/** Waits for the agent to serve; stops it (and rethrows) if it does not. */
async function serving(name: string, child: ChildProcess, port: Promise<number>): Promise<RunningAgent> {
  try {
    return { name, child, pid: child.pid!, port: await port };
  } catch (error) {
    await stopProcessTree(child);
    throw error;
  }
}

/** The first match of `pattern` in what the agent prints on stdout; rejects if it exits first or takes too long. */
function stdoutMatch(child: ChildProcess, pattern: RegExp, name: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let output = '';
    const done = (): void => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
    };
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = pattern.exec(output);
      if (!match) return;
      done();
      resolve(match);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      done();
      reject(new Error(`${name} agent exited before printing ${pattern} (${signal ?? `code ${code}`})`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${name} agent: no ${pattern} on stdout within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  });
}

async function readyPort(child: ChildProcess, name: string): Promise<number> {
  return Number((await stdoutMatch(child, /READY (\d+)/, name))[1]);
}

/** Polls with health-check HELLOs until the agent answers one (the example agent listens before it is ready). */
async function waitForHello(child: ChildProcess, port: number, name: string): Promise<number> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited(child))
      throw new Error(
        `${name} agent exited during startup (${child.signalCode ?? `code ${child.exitCode}`}); was it built (npm run build)?`,
      );
    try {
      await SpoeClient.healthCheck({ host: '127.0.0.1', port, timeoutMs: 500 });
      return port;
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(
          `${name} agent: no AGENT-HELLO on port ${port} within ${START_TIMEOUT_MS} ms (${(error as Error).message})`,
          { cause: error },
        );
      }
    }
    await sleep(100);
  }
}

/**
 * bench/agents/ceiling.js, the reference: plain Node, no framework, no library; `traced`: with the OpenTelemetry SDK's
 * span on the NOTIFY that carry a sampled traceparent (its `--traced`).
 */
export function startCeiling(options: AgentOptions & { readonly traced?: boolean } = {}): Promise<RunningAgent> {
  const script = [join(AGENTS_DIR, 'ceiling.js'), ...(options.traced ? ['--traced'] : [])];
  const child = spawnNode(script, { ...options, env: { ...options.env, PORT: '0' } });
  const name = options.traced ? 'ceiling-traced' : 'ceiling';
  return serving(name, child, readyPort(child, name));
}

export interface NestAgentOptions extends AgentOptions {
  /** The nest-agents.ts to run (default: this tree's); a baseline tree passes its own copy. */
  readonly script?: string;
  /** The tree the script belongs to: its working directory (default: this one). */
  readonly root?: string;
  readonly name?: string;
  /**
   * SPOP over TLS (PEM files): the agent's certificate and key; with `caFile`, mutual TLS (a client certificate signed
   * by that CA required).
   */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile?: string };
}

/** The agents of bench/agents/nest-agents.ts. */
export type NestAgentKind =
  'server' | 'pipeline' | 'metrics' | 'observed' | 'observed-sampled' | 'observed-rare' | 'observed-all';

export function startNestAgent(kind: NestAgentKind, options: NestAgentOptions = {}): Promise<RunningAgent> {
  const name = options.name ?? kind;
  const script = options.script ?? join(AGENTS_DIR, 'nest-agents.ts');
  const { tls } = options;
  const env: NodeJS.ProcessEnv = { ...options.env, PORT: '0' };
  if (tls) Object.assign(env, { BENCH_TLS_CERT: tls.certFile, BENCH_TLS_KEY: tls.keyFile });
  if (tls?.caFile) env.BENCH_TLS_CA = tls.caFile;
  const child = spawnNode(['-r', '@swc-node/register', script, kind], { ...options, env }, options.root);
  return serving(name, child, readyPort(child, name));
}

export interface ExampleOptions extends AgentOptions {
  /** The tree whose dist/main.js runs (default: this one); a baseline tree passes its own. */
  readonly root?: string;
  readonly name?: string;
}

/**
 * The example agent as shipped (node dist/main.js), on free ports, quiet (LOG_LEVEL=warn) and with no grace period
 * on SIGTERM; `options.env` adds to or overrides that (SPOE_WORKERS…).
 */
export async function startExample(options: ExampleOptions = {}): Promise<RunningAgent> {
  const name = options.name ?? 'example';
  const root = options.root ?? ROOT;
  const [spoePort, httpPort] = [await freePort(), await freePort()];
  const env = {
    SPOE_HOST: '127.0.0.1',
    SPOE_PORT: String(spoePort),
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(httpPort),
    LOG_LEVEL: 'warn',
    SHUTDOWN_GRACE_MS: '0',
    ...options.env,
  };
  const child = spawnNode([join(root, 'dist', 'main.js')], { ...options, env }, root);
  return serving(name, child, waitForHello(child, spoePort, name));
}

export interface HeavyAgent extends RunningAgent {
  readonly workers: number;
  /** Hash iterations per message, and what they took when the agent calibrated them (µs). */
  readonly iterations: number;
  readonly calibratedUs: number;
}

export interface HeavyOptions extends AgentOptions {
  readonly workers: number;
  /** Work per message in µs, calibrated by the agent at startup (ignored when `iterations` is given). */
  readonly targetUs: number;
  /** Reuse a calibration: every run then does exactly the same work per message. */
  readonly iterations?: number;
}

/**
 * bench/agents/heavy-agent.ts: `workers` processes under src/cluster's supervisor, each with a CPU-heavy handler.
 * Ready once the supervisor sees every worker ready (the agent prints READY only then).
 */
export async function startHeavy(options: HeavyOptions): Promise<HeavyAgent> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...options.env,
    PORT: String(port),
    HEAVY_WORKERS: String(options.workers),
    HEAVY_TARGET_US: String(options.targetUs),
  };
  if (options.iterations !== undefined) env.HEAVY_ITERATIONS = String(options.iterations);
  const child = spawnNode(['-r', '@swc-node/register', join(AGENTS_DIR, 'heavy-agent.ts')], { ...options, env });
  const calibration = stdoutMatch(child, /CALIBRATED (\d+) iterations ([\d.]+) us/, 'heavy');
  // Awaited after READY: until then a rejection (the agent exited) is READY's to report, not an unhandled one.
  calibration.catch(() => undefined);
  const agent = await serving('heavy', child, readyPort(child, 'heavy'));
  const [, iterations, us] = await calibration;
  return { ...agent, workers: options.workers, iterations: Number(iterations), calibratedUs: Number(us) };
}
