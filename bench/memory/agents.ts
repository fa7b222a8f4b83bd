import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, WriteStream } from 'node:fs';
import { AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SpoeClient } from '../../libs/spoe/src/testing';
import { ProbeClient } from './probe-client';

export const ROOT = join(__dirname, '..', '..');
export const GENERATOR = join(ROOT, 'bench', '.build', 'spop-load');
const GENERATOR_SOURCE = join(ROOT, 'bench', 'spop-load.c');
const PROBE = join(__dirname, 'probe.js');
const START_TIMEOUT_MS = 30_000;
/** BENCH_NODE_FLAGS: extra Node/V8 flags for the agents, to try GC settings (e.g. --max-semi-space-size=32). */
export const AGENT_NODE_FLAGS: readonly string[] = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter((flag) => flag !== '');
const STOP_TIMEOUT_MS = 5_000;

export type AgentName = 'example' | 'ceiling';

/** An agent started with the probe preloaded, and how to reach both. */
export interface ProbedAgent {
  readonly name: AgentName;
  readonly child: ChildProcess;
  readonly port: number;
  readonly probe: ProbeClient;
}

export interface StartOptions {
  /** Start the agent with --trace-gc and append its stdout (where V8 prints the trace) to this file. */
  readonly traceGcFile?: string;
}

/** Every process this run started and has not seen exit: killed by pid on the way out, whatever happens. */
const children = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function killAllChildren(): void {
  for (const child of children) child.kill('SIGKILL');
}

// ------------------------------------------------------------------------------------------------------- builds

/** The command of bench/frames.bench.ts (not exported there): compiled on every run, it never lags its source. */
export function buildGenerator(): void {
  const cc = process.env.CC ?? 'cc';
  mkdirSync(join(ROOT, 'bench', '.build'), { recursive: true });
  try {
    execFileSync(cc, ['-O2', '-pthread', '-o', GENERATOR, GENERATOR_SOURCE], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`no C compiler: "${cc}" was not found. Install one (e.g. apt-get install gcc) or set CC.`, { cause: error });
    }
    throw new Error(`compiling bench/spop-load.c with "${cc}" failed (see above)`, { cause: error });
  }
}

/** The example agent runs from dist/; the build's output goes to stderr so that stdout stays the report. */
export function buildProject(): void {
  if (process.env.BENCH_SKIP_BUILD === '1') return;
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
}

// ------------------------------------------------------------------------------------------------------- start and stop

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

/** SIGTERM (the agent's own graceful path), then SIGKILL if it lingers. */
export async function stopAgent(agent: Pick<ProbedAgent, 'child'>): Promise<void> {
  agent.child.kill('SIGTERM');
  if (!(await waitExit(agent.child, STOP_TIMEOUT_MS))) {
    agent.child.kill('SIGKILL');
    await waitExit(agent.child, STOP_TIMEOUT_MS);
  }
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

/** The caller's agent settings (a REDIS_URL, SPOE_WORKERS, a LOG_LEVEL…) must not change what is measured. */
function envWithoutAgentSettings(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^(SPOE_|HTTP_)|^(REDIS_URL|BLOCKLIST|LOG_LEVEL|SHUTDOWN_GRACE_MS|HEALTH_TIMEOUT_MS|PORT)$/.test(key)) delete env[key];
  }
  return env;
}

/**
 * Node with the probe preloaded and global.gc() exposed, an IPC channel for the probe, stdout read (and kept or
 * dropped: a full pipe would block the agent), stderr shared with the bench so that failures show.
 */
function spawnProbed(script: string, env: NodeJS.ProcessEnv, options: StartOptions): ChildProcess {
  const flags = ['--expose-gc', ...(options.traceGcFile ? ['--trace-gc'] : []), ...AGENT_NODE_FLAGS, '--require', PROBE];
  const child = track(spawn(process.execPath, [...flags, script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] }));
  let trace: WriteStream | undefined;
  if (options.traceGcFile) {
    trace = createWriteStream(options.traceGcFile, { flags: 'a' });
    child.once('exit', () => trace!.end());
  }
  child.stdout!.on('data', (chunk: Buffer) => trace?.write(chunk));
  return child;
}

/** Gives up on an agent that failed to start: stops it, then rethrows. */
async function orStop<T>(child: ChildProcess, ready: Promise<T>): Promise<T> {
  try {
    return await ready;
  } catch (error) {
    await stopAgent({ child });
    throw error;
  }
}

/** The example agent as shipped (node dist/main.js), on free ports, quiet and with no grace period on SIGTERM. */
export async function startExample(options: StartOptions = {}): Promise<ProbedAgent> {
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
  const child = spawnProbed(join(ROOT, 'dist', 'main.js'), env, options);
  const probe = new ProbeClient(child);
  await orStop(child, waitForHello(child, spoePort));
  return { name: 'example', child, port: spoePort, probe };
}

/** bench/agents/ceiling.js (plain Node, no framework): the reference. It prints `READY <port>`. */
export async function startCeiling(options: StartOptions = {}): Promise<ProbedAgent> {
  const child = spawnProbed(join(ROOT, 'bench', 'agents', 'ceiling.js'), { ...envWithoutAgentSettings(), PORT: '0' }, options);
  const probe = new ProbeClient(child);
  const port = await orStop(child, readyPort(child));
  return { name: 'ceiling', child, port, probe };
}

/** Polls with health-check HELLOs until the agent answers one (it listens before it is ready). */
async function waitForHello(child: ChildProcess, port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited(child)) throw new Error(`example agent exited during startup (${child.signalCode ?? `code ${child.exitCode}`})`);
    try {
      await SpoeClient.healthCheck({ host: '127.0.0.1', port, timeoutMs: 500 });
      return;
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`example agent: no AGENT-HELLO on port ${port} within ${START_TIMEOUT_MS} ms (${(error as Error).message})`, { cause: error });
      }
    }
    await sleep(100);
  }
}

/** Resolves with the port the ceiling agent prints as `READY <port>`; rejects if it exits first. */
function readyPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`ceiling agent: no READY line within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /READY (\d+)/.exec(output);
      if (!match) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      resolve(Number(match[1]));
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`ceiling agent exited before READY (${signal ?? `code ${code}`})`));
    });
  });
}
