/**
 * Helpers of the example agent's e2e tests: the agent in process (src/agent.ts) or as the built child process
 * (dist/main.js), a real redis-server per test file, the build, and HAProxy configuration templates. HAProxy itself,
 * ports and waiting come from the shared harness (test/support/haproxy.ts).
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { Agent, startAgent } from '../../../src/agent';
import { AGENT_ENV, loadAgentConfig } from '../../../src/config/agent.config';
import { freePort, makeTempDir, waitFor } from '../../support/haproxy';

export const REPO_ROOT = resolve(__dirname, '..', '..', '..');

const live = new Set<ChildProcess>();
let exitHandler = false;

/** Kills what is still running at process exit (a crashed test file), synchronously. */
function track(child: ChildProcess): void {
  if (!exitHandler) {
    exitHandler = true;
    process.on('exit', () => {
      for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** The environment of an agent: ours without any agent variable, then `overrides`. */
function agentEnv(overrides: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const name of Object.keys(AGENT_ENV)) delete env[name];
  return { ...env, ...overrides };
}

// ------------------------------------------------------------------------------------------------------------------
// The agent in this process
// ------------------------------------------------------------------------------------------------------------------

/** An agent started in the test process, on free loopback ports. */
export interface TestAgent extends Agent {
  /** The SPOE TCP port (0 when listening on a Unix socket). */
  readonly spoePort: number;
  close(): Promise<void>;
}

export async function startTestAgent(env: Record<string, string> = {}): Promise<TestAgent> {
  const config = loadAgentConfig(
    agentEnv({ SPOE_HOST: '127.0.0.1', SPOE_PORT: '0', HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', LOG_LEVEL: 'error', SHUTDOWN_GRACE_MS: '0', ...env }),
  );
  const agent = await startAgent(config);
  const address = agent.spoe.address;
  return { ...agent, spoePort: typeof address === 'object' && address ? address.port : 0, close: () => agent.app.close() };
}

/** A JSON HTTP call; resolves with status and parsed body (undefined when empty). */
export async function api<T = unknown>(baseUrl: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

// ------------------------------------------------------------------------------------------------------------------
// The built agent as a child process
// ------------------------------------------------------------------------------------------------------------------

/**
 * Builds the library and the agent (`tsc -b`, incremental) once per test process. Test files in other workers may
 * build at the same time: a lock directory serialises them.
 */
export function ensureBuilt(): void {
  if (built) return;
  const lock = join(REPO_ROOT, 'dist', '.build-lock');
  mkdirSync(join(REPO_ROOT, 'dist'), { recursive: true });
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than 5 minutes belongs to a build that died.
      if (Date.now() - statSync(lock, { throwIfNoEntry: false })!.mtimeMs > 5 * 60_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`could not take the build lock ${lock}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  try {
    execFileSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'libs/spoe/tsconfig.lib.json', 'tsconfig.app.json'], {
      cwd: REPO_ROOT,
      stdio: 'pipe',
      timeout: 5 * 60_000,
    });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`npm run build failed:\n${String(stdout ?? '')}${String(stderr ?? '')}`, { cause: error });
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
  built = true;
}
let built = false;

/** `node dist/main.js`, its output collected and its ports read from its "ready" line. */
export class AgentProcess {
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  spoePort = 0;
  httpUrl = '';

  private constructor(readonly child: ChildProcess) {
    let pending = '';
    const collect = (chunk: Buffer): void => {
      pending += chunk.toString('utf8');
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      this.lines.push(...parts);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    this.exited = new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
  }

  /** Starts the built agent; with `waitReady` (default), resolves once it printed its addresses. */
  static async start(env: Record<string, string>, waitReady = true): Promise<AgentProcess> {
    ensureBuilt();
    const child = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'main.js')], {
      cwd: REPO_ROOT,
      env: agentEnv({ SPOE_HOST: '127.0.0.1', SPOE_PORT: '0', HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    const agent = new AgentProcess(child);
    if (waitReady) {
      let exited = false;
      void agent.exited.then(() => (exited = true));
      await waitFor(
        'the agent to print its addresses',
        () => {
          if (exited) throw new Error(`the agent exited:\n${agent.output()}`);
          const ready = agent.lines.map((l) => /ready: SPOE on \S+:(\d+), HTTP on (\S+),/.exec(l)).find(Boolean);
          if (!ready) return false;
          agent.spoePort = Number(ready[1]);
          agent.httpUrl = ready[2];
          return true;
        },
        20_000,
      );
    }
    return agent;
  }

  output(): string {
    return this.lines.join('\n');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

// ------------------------------------------------------------------------------------------------------------------
// redis-server
// ------------------------------------------------------------------------------------------------------------------

/** Whether `redis-server` can run here; without it the Redis suites skip (and fail under CI=true). */
export function redisAvailable(): boolean {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.CI === 'true') throw new Error('CI=true but redis-server is not installed: scripts/test.sh installs it (apt-get install redis-server)');
    console.warn('[example e2e] redis-server is not installed: the Redis tests are skipped (apt-get install redis-server)');
    return false;
  }
}

/** A private redis-server on a free loopback port: no persistence, its own directory. */
export class RedisServer {
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<RedisServer> {
    const server = new RedisServer(await freePort(['127.0.0.1']), makeTempDir('nestjs-spoe-redis-'));
    await server.restart();
    return server;
  }

  /** (Re)starts the server on the same port. */
  async restart(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--protected-mode', 'no'];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    this.child = child;
    this.output = '';
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
    await waitFor(
      `redis-server on port ${this.port}`,
      () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited:\n${this.output}`);
        return ping(this.port);
      },
      10_000,
    );
  }

  /** Stops the server (SIGTERM) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGTERM');
    await exited;
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    socket.setTimeout(1000, () => socket.destroy());
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      done(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

// ------------------------------------------------------------------------------------------------------------------
// HAProxy configuration templates
// ------------------------------------------------------------------------------------------------------------------

/** A file of deploy/haproxy. */
export function deployFile(name: string): string {
  return readFileSync(join(REPO_ROOT, 'deploy', 'haproxy', name), 'utf8');
}

/**
 * Resolves the `"${NAME-default}"` environment references of a configuration the way HAProxy does, with `vars` (or
 * the default): the harness starts HAProxy with the test's environment, so the values are written into the file.
 */
export function renderConfig(text: string, vars: Readonly<Record<string, string>>): string {
  return text.replace(/"\$\{([A-Z_][A-Z0-9_]*)(?:-([^}]*))?\}"/g, (_, name: string, fallback: string | undefined) => {
    const value = vars[name] ?? fallback;
    if (value === undefined) throw new Error(`no value for \${${name}}`);
    return `"${value}"`;
  });
}
