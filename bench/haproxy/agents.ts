/**
 * The two agents `npm run bench:haproxy` puts behind HAProxy:
 *   ceiling   bench/agents/ceiling.js: plain Node, no framework, no library (what Node itself allows)
 *   example   the example agent as shipped: node dist/main.js (src/)
 * Both answer check-client-ip with set-var sess.ip_score; each runs on a free port of 127.0.0.1.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SpoeClient } from '../../libs/spoe/src/testing';
import { exited, stopProcessTree, track } from './processes';

export const AGENTS = ['ceiling', 'example'] as const;
export type AgentName = (typeof AGENTS)[number];

export interface RunningAgent {
  readonly name: AgentName;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
}

const ROOT = join(__dirname, '..', '..');
const START_TIMEOUT_MS = 30_000;

export function freePort(): Promise<number> {
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

export async function startAgent(name: AgentName): Promise<RunningAgent> {
  if (name === 'ceiling') {
    const child = spawnCeiling();
    return ready(name, child, () => readyPort(child));
  }
  const spoePort = await freePort();
  const child = spawnExample(spoePort, await freePort());
  return ready(name, child, () => waitForHello(child, spoePort));
}

/** Waits for the agent to serve; stops it if it does not. */
async function ready(name: AgentName, child: ChildProcess, serving: () => Promise<number>): Promise<RunningAgent> {
  try {
    const port = await serving();
    return { name, child, pid: child.pid!, port };
  } catch (error) {
    await stopProcessTree(child);
    throw error;
  }
}

function spawnCeiling(): ChildProcess {
  const env = { ...envWithoutAgentSettings(), PORT: '0' };
  return track(spawn(process.execPath, [join(__dirname, '..', 'agents', 'ceiling.js')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] }));
}

/** The example agent as shipped, quiet (LOG_LEVEL=warn), with no grace period on SIGTERM. */
function spawnExample(spoePort: number, httpPort: number): ChildProcess {
  const env = {
    ...envWithoutAgentSettings(),
    SPOE_HOST: '127.0.0.1',
    SPOE_PORT: String(spoePort),
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(httpPort),
    LOG_LEVEL: 'warn',
    SHUTDOWN_GRACE_MS: '0',
  };
  return track(spawn(process.execPath, [join(ROOT, 'dist', 'main.js')], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] }));
}

/** Resolves with the port the ceiling agent prints as `READY <port>`; rejects if it exits first. */
function readyPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`ceiling agent: no READY line within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
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
      reject(new Error(`ceiling agent exited before READY (${signal ?? `code ${code}`})`));
    });
  });
}

/** Polls with health-check HELLOs until the example agent answers one (it listens before it is ready). */
async function waitForHello(child: ChildProcess, port: number): Promise<number> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited(child)) throw new Error(`example agent exited during startup (${child.signalCode ?? `code ${child.exitCode}`}); was it built (npm run build)?`);
    try {
      await SpoeClient.healthCheck({ host: '127.0.0.1', port, timeoutMs: 500 });
      return port;
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`example agent: no AGENT-HELLO on port ${port} within ${START_TIMEOUT_MS} ms (${(error as Error).message})`, { cause: error });
      }
    }
    await sleep(100);
  }
}
