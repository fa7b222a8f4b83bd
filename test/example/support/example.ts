/**
 * Helpers of the example agent's e2e tests: the agent in process (src/agent.ts, as src/main.ts starts it) or as the
 * built child process (dist/main.js), its admin API, a real redis-server per test file (or a Sentinel topology), the
 * build, and deploy/haproxy's configuration files with HAProxy in front of agents. HAProxy itself, ports and waiting
 * come from test/support.
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, startAgent } from '../../../src/agent';
import type { AppOptions } from '../../../src/app.module';
import { AGENT_ENV } from '../../../src/config/agent.config';
import { makeTempDir, trackForCleanup } from '../../support/cleanup';
import { HaproxyBinary } from '../../support/haproxy-binaries';
import { HaproxyProcess } from '../../support/haproxy-process';
import { HttpBackend, startHttpBackend } from '../../support/http-backend';
import { LoadResult, runLoad } from '../../support/load';
import { freePort } from '../../support/ports';
import { commandPrerequisite, Prerequisite } from '../../support/prerequisites';
import { waitFor } from '../../support/wait';

export const REPO_ROOT = resolve(__dirname, '..', '..', '..');

/** Kills the child at process exit if it still runs then (a crashed test file), synchronously. */
export function killAtExit(child: ChildProcess): void {
  const untrack = trackForCleanup({ kill: () => child.kill('SIGKILL') });
  child.once('exit', untrack);
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

/** The example agent started in the test process, on free loopback ports. */
export interface ExampleAgent extends Agent {
  /** The SPOE TCP port (0 when listening on a Unix socket). */
  readonly spoePort: number;
  close(): Promise<void>;
}

/**
 * Starts the example agent in this process with `env` over quiet defaults (free loopback ports, no grace period);
 * `logDestination` receives the lines of LOG_FORMAT=json.
 */
export async function startExampleAgent(
  env: Record<string, string> = {},
  { logDestination }: Pick<AppOptions, 'logDestination'> = {},
): Promise<ExampleAgent> {
  const agent = await startAgent({
    logDestination,
    env: agentEnv({
      SPOE_HOST: '127.0.0.1',
      SPOE_PORT: '0',
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      LOG_LEVEL: 'error',
      SHUTDOWN_GRACE_MS: '0',
      ...env,
    }),
  });
  const address = agent.spoe.address;
  return {
    ...agent,
    spoePort: typeof address === 'object' && address ? address.port : 0,
    close: () => agent.app.close(),
  };
}

/**
 * A JSON HTTP call, with `headers` besides the content type (an `authorization`); resolves with status and parsed body
 * (undefined when empty).
 */
export async function api<T = unknown>(
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T }> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** The `authorization` header of a bearer token, for {@link api}. */
export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/**
 * An IPv4 address of this machine off loopback (the first of its interfaces): a client connecting to it from here has
 * it as its source address, which is how the tests call an agent (HTTP_HOST=0.0.0.0) from "elsewhere".
 */
export const NON_LOOPBACK_ADDRESS: string | undefined = Object.values(networkInterfaces())
  .flat()
  .find((a) => a?.family === 'IPv4' && !a.internal)?.address;

/** A machine whose only interface is lo has no such address: the guard's unit tests check the rule then. */
export const nonLoopbackAddress: Prerequisite = {
  name: 'an IPv4 address of this machine off loopback',
  missing: NON_LOOPBACK_ADDRESS === undefined ? 'os.networkInterfaces() lists none' : undefined,
  optionalInCi: 'a container may run without any network interface but lo',
};

/** `baseUrl` (an agent's HTTP side on 0.0.0.0) at {@link NON_LOOPBACK_ADDRESS} instead of loopback. */
export function offLoopback(baseUrl: string): string {
  const url = new URL(baseUrl);
  url.hostname = NON_LOOPBACK_ADDRESS!;
  return url.origin;
}

// ------------------------------------------------------------------------------------------------------------------
// The built agent as a child process
// ------------------------------------------------------------------------------------------------------------------

/**
 * Runs `fn` holding the repository's build lock: test files in other workers may build the library (`tsc -b`) or pack
 * it (its prepack builds) at the same time, and a lock directory serialises them.
 */
export function withBuildLock<T>(fn: () => T): T {
  const lock = join(REPO_ROOT, 'dist', '.build-lock');
  mkdirSync(join(REPO_ROOT, 'dist'), { recursive: true });
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than 5 minutes belongs to a build that died.
      if (Date.now() - statSync(lock, { throwIfNoEntry: false })!.mtimeMs > 5 * 60_000)
        rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`could not take the build lock ${lock}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Builds the library and the agent (`tsc -b`, incremental) once per test process, under {@link withBuildLock}. */
export function ensureBuilt(): void {
  if (built) return;
  withBuildLock(() => {
    try {
      execFileSync(
        process.execPath,
        [
          join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
          '-b',
          'libs/spoe/tsconfig.lib.json',
          'tsconfig.app.json',
        ],
        {
          cwd: REPO_ROOT,
          stdio: 'pipe',
          timeout: 5 * 60_000,
        },
      );
    } catch (error) {
      const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
      throw new Error(`npm run build failed:\n${String(stdout ?? '')}${String(stderr ?? '')}`, { cause: error });
    }
  });
  built = true;
}
let built = false;

/**
 * `node dist/main.js`, its output collected and its ports read from its "ready" line. With SPOE_WORKERS above 1 the
 * process is the supervisor: `start` also waits for its "N workers ready" line, and {@link workerPids} lists them.
 */
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

  /**
   * Starts the built agent; with `waitReady` (default), resolves once it printed its addresses (as a supervisor, once
   * every worker is ready).
   */
  static async start(env: Record<string, string>, waitReady = true): Promise<AgentProcess> {
    ensureBuilt();
    const child = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'main.js')], {
      cwd: REPO_ROOT,
      env: agentEnv({ SPOE_HOST: '127.0.0.1', SPOE_PORT: '0', HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    killAtExit(child);
    const agent = new AgentProcess(child);
    if (waitReady) {
      const supervisor = env.SPOE_WORKERS !== undefined && env.SPOE_WORKERS !== '1';
      let exited = false;
      void agent.exited.then(() => (exited = true));
      // A started agent that never gets ready is killed rather than left to the end of the test run.
      await waitFor(
        supervisor ? 'the workers to be ready' : 'the agent to print its addresses',
        () => {
          if (exited) throw new Error(`the agent exited:\n${agent.output()}`);
          const ready = agent.lines.map((l) => /ready: SPOE on \S+:(\d+), HTTP on (\S+),/.exec(l)).find(Boolean);
          // Nest's text line, or the JSON one of LOG_FORMAT=json.
          const workersReady = /\[Supervisor\] \d+ workers ready|"context":"Supervisor","msg":"\d+ workers ready/;
          if (!ready || (supervisor && !agent.lines.some((l) => workersReady.test(l)))) return false;
          agent.spoePort = Number(ready[1]);
          agent.httpUrl = ready[2];
          return true;
        },
        supervisor ? 60_000 : 20_000,
      ).catch(async (error: unknown) => {
        await agent.stop();
        throw error;
      });
    }
    return agent;
  }

  output(): string {
    return this.lines.join('\n');
  }

  /** The worker processes of a supervisor: its children, from /proc (Linux). */
  workerPids(): number[] {
    const pid = this.child.pid!;
    return (readProc(`/proc/${pid}/task/${pid}/children`) ?? '').split(' ').filter(Boolean).map(Number);
  }

  /** SIGKILL, to the workers too (they would exit anyway when their supervisor's IPC channel closes). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const workers = this.workerPids();
    this.child.kill('SIGKILL');
    for (const pid of workers) killQuietly(pid);
    await this.exited;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Whether a process exists (a zombie counts: its parent has not reaped it yet). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * ESTABLISHED TCP connections on local port `port` whose socket `pid` holds: which worker serves which connections.
 * From /proc (Linux): the sockets of /proc/net/tcp{,6} on that port, matched by inode to the process' descriptors.
 */
export function connectionsServedBy(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const row of (readProc(table) ?? '').split('\n').slice(1)) {
      const [, local, , state, , , , , , inode] = row.trim().split(/\s+/);
      if (local && state === '01' && parseInt(local.split(':')[1], 16) === port) inodes.add(inode);
    }
  }
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return 0; // the process is gone
  }
  let count = 0;
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined && inodes.has(inode)) count++;
  }
  return count;
}

/** A /proc file, or undefined when it does not exist (the process is gone). */
function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------------------------------
// redis-server and redis-sentinel
// ------------------------------------------------------------------------------------------------------------------

/** redis-server, for the Redis suites (scripts/test.sh installs it). */
export function redisServer(): Prerequisite {
  return commandPrerequisite('redis-server', ['redis-server', '--version'], 'apt-get install redis-server');
}

/** redis-sentinel (Debian's package of that name), for the Sentinel suites (scripts/test.sh installs it). */
export function redisSentinel(): Prerequisite {
  return commandPrerequisite('redis-sentinel', ['redis-sentinel', '--version'], 'apt-get install redis-sentinel');
}

/** Options of {@link RedisServer.start}. */
export interface RedisServerOptions {
  /**
   * Keep the data in an append-only file fsync'ed at every write, as a production Redis would: a SIGKILL loses
   * nothing, and the server restarts with its data. Default: no persistence at all.
   */
  readonly persistent?: boolean;
  /** Its directory; default a new one. Servers started one after the other on one directory share its data. */
  readonly dir?: string;
  /** More redis-server arguments (`--replicaof 127.0.0.1 6379`). */
  readonly args?: readonly string[];
  /** A Sentinel's configuration: the process is `redis-sentinel` with it, and this is a Sentinel. */
  readonly sentinel?: string;
}

/** A private redis-server (or redis-sentinel) on a free loopback port, in its own directory, killed by its PID. */
export class RedisServer {
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: RedisServerOptions,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** host:port, as REDIS_SENTINELS lists it. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const dir = options.dir ?? makeTempDir('nestjs-spoe-redis-');
    // Sentinel rewrites its configuration file (what it learns of the topology): written once, before the first start.
    if (options.sentinel !== undefined) writeFileSync(join(dir, 'sentinel.conf'), options.sentinel);
    const server = new RedisServer(await freePort(['127.0.0.1']), dir, options);
    await server.restart();
    return server;
  }

  /** (Re)starts the server on the same port. */
  async restart(): Promise<void> {
    const { persistent, sentinel, args = [] } = this.options;
    const common = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--protected-mode', 'no'];
    const [command, commandArgs] =
      sentinel !== undefined
        ? ['redis-sentinel', [join(this.dir, 'sentinel.conf'), ...common, ...args]]
        : [
            'redis-server',
            [
              ...common,
              '--save',
              '',
              ...(persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
              ...args,
            ],
          ];
    const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    killAtExit(child);
    this.child = child;
    this.output = '';
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
    await waitFor(
      `${command} on port ${this.port}`,
      () => {
        if (child.exitCode !== null) throw new Error(`${command} exited:\n${this.output}`);
        return ping(this.port);
      },
      10_000,
    );
  }

  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void> {
    return this.signal('SIGTERM');
  }

  /** Kills the server (SIGKILL), as a crash or the OOM killer would, and waits for it to exit. */
  kill(): Promise<void> {
    return this.signal('SIGKILL');
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill(signal);
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

/**
 * A Redis primary, its replicas and three Sentinels on loopback, the Sentinels quick to act: a primary that does not
 * answer for 1 s is down, and a replica is promoted within a few seconds. `start` resolves once every Sentinel knows
 * every replica and the other Sentinels, so that a failover can be authorised at once.
 */
export class SentinelTopology {
  static readonly MASTER_NAME = 'blocklist';

  private constructor(
    readonly primary: RedisServer,
    readonly replicas: readonly RedisServer[],
    readonly sentinels: readonly RedisServer[],
  ) {}

  static async start(replicaCount: number): Promise<SentinelTopology> {
    const servers: RedisServer[] = [];
    try {
      const primary = await RedisServer.start();
      servers.push(primary);
      const replicas: RedisServer[] = [];
      for (let i = 0; i < replicaCount; i++) {
        replicas.push(await RedisServer.start({ args: ['--replicaof', '127.0.0.1', String(primary.port)] }));
        servers.push(replicas[i]);
      }
      // Replicas in sync before the Sentinels look: their first INFO of the primary lists them.
      await waitFor('the replicas to be in sync', async () =>
        (await redisCommand(primary.port, 'INFO', 'replication')).includes(`connected_slaves:${replicaCount}`),
      );
      const { MASTER_NAME } = SentinelTopology;
      const config = [
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${primary.port} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        // Also the delay before a failover that stalled is tried again (twice this): short, for a test.
        `sentinel failover-timeout ${MASTER_NAME} 3000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n');
      const sentinels: RedisServer[] = [];
      for (let i = 0; i < 3; i++) {
        sentinels.push(await RedisServer.start({ sentinel: config }));
        servers.push(sentinels[i]);
      }
      const topology = new SentinelTopology(primary, replicas, sentinels);
      await waitFor(
        'every Sentinel to know the replicas and the other Sentinels',
        async () => {
          for (const sentinel of sentinels) {
            const master = fields(await redisCommand(sentinel.port, 'SENTINEL', 'MASTER', MASTER_NAME));
            if (master['num-slaves'] !== String(replicaCount) || master['num-other-sentinels'] !== '2') return false;
          }
          return true;
        },
        20_000,
        200,
      );
      return topology;
    } catch (error) {
      for (const server of servers) await server.kill();
      throw error;
    }
  }

  /** The agent's variables to use this topology. */
  get env(): Record<string, string> {
    return {
      REDIS_SENTINELS: this.sentinels.map((s) => s.address).join(','),
      REDIS_MASTER_NAME: SentinelTopology.MASTER_NAME,
    };
  }

  /** The server listening on `port`: the primary or a replica. */
  server(port: number): RedisServer {
    const server = [this.primary, ...this.replicas].find((s) => s.port === port);
    if (!server) throw new Error(`no Redis server of this topology listens on ${port}`);
    return server;
  }

  /** The port of the primary as the first Sentinel that answers names it. */
  async primaryPort(): Promise<number> {
    for (const sentinel of this.sentinels) {
      try {
        const reply = await redisCommand(
          sentinel.port,
          'SENTINEL',
          'GET-MASTER-ADDR-BY-NAME',
          SentinelTopology.MASTER_NAME,
        );
        return Number(reply.split('\n')[1]);
      } catch {
        // that Sentinel is gone: ask the next one
      }
    }
    throw new Error('no Sentinel answers');
  }

  async stop(): Promise<void> {
    for (const server of [...this.sentinels, ...this.replicas, this.primary]) await server.kill();
  }
}

/** A SENTINEL MASTER reply (name, value, name, value…, one a line) as an object. */
function fields(reply: string): Record<string, string> {
  const lines = reply.split('\n');
  return Object.fromEntries(
    lines.flatMap((name, i) => (i % 2 === 0 && i + 1 < lines.length ? [[name, lines[i + 1]]] : [])),
  );
}

/** One command through redis-cli (its raw output, one value a line): what an operator would type. */
export function redisCommand(port: number, ...args: string[]): Promise<string> {
  return new Promise((done, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5000 }, (error, stdout) =>
      error ? reject(error) : done(stdout.trim()),
    );
  });
}

// ------------------------------------------------------------------------------------------------------------------
// deploy/haproxy
// ------------------------------------------------------------------------------------------------------------------

/**
 * A file of deploy/haproxy: a template for HaproxyProcess, whose `"${NAME-default}"` environment references it
 * resolves (test/support/haproxy-config.ts).
 */
export function deployFile(name: string): string {
  return readFileSync(join(REPO_ROOT, 'deploy', 'haproxy', name), 'utf8');
}

/** HAProxy serving deploy/haproxy's haproxy.cfg in front of example agents: see {@link startHaproxyInFront}. */
export interface HaproxyInFront {
  readonly haproxy: HaproxyProcess;
  /** The port of its `frontend web` on 127.0.0.1. */
  readonly port: number;
  /** Its stats socket (`level admin`), for `show stat`. */
  readonly statsSocket: string;
}

/** Built agents sharing one store, an HTTP backend, and HAProxy in front of them: the Redis fault tests' topology. */
export interface AgentsInFront {
  readonly agents: readonly AgentProcess[];
  readonly front: HaproxyInFront;
  /** Stops the agents and the backend (HAProxy is stopped by cleanupAll). */
  stop(): Promise<void>;
}

/** Starts `count` built agents with `env` (no grace period), an HTTP backend, and HAProxy `binary` in front. */
export async function startAgentsInFront(
  binary: HaproxyBinary,
  env: Record<string, string>,
  count = 2,
): Promise<AgentsInFront> {
  const agents: AgentProcess[] = [];
  let backend: HttpBackend | undefined;
  const stop = async (): Promise<void> => {
    for (const agent of agents) await agent.stop();
    await backend?.close();
  };
  try {
    for (let i = 0; i < count; i++) agents.push(await AgentProcess.start({ ...env, SHUTDOWN_GRACE_MS: '0' }));
    backend = await startHttpBackend();
    const front = await startHaproxyInFront(
      binary,
      agents.map((agent) => agent.spoePort),
      backend.port,
    );
    return { agents, front, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Starts HAProxy 3.1+ with deploy/haproxy's haproxy.cfg and spoe.conf, one `server` line in the SPOE backend per agent
 * (HAProxy balances the NOTIFY over them and checks each with a HELLO), `backendPort` as the application, and a stats
 * socket.
 */
export async function startHaproxyInFront(
  binary: HaproxyBinary,
  agentSpoePorts: readonly number[],
  backendPort: number,
): Promise<HaproxyInFront> {
  const port = await freePort(['127.0.0.1']);
  const dir = makeTempDir();
  const statsSocket = join(dir, 'stats.sock');
  const vars: Record<string, string> = {
    HAPROXY_BIND: `127.0.0.1:${port}`,
    BACKEND_ADDR: `127.0.0.1:${backendPort}`,
    SPOE_CONF: 'spoe.conf',
    STATS_SOCKET: statsSocket,
  };
  const servers = agentSpoePorts.map((agentPort, i) => {
    vars[i === 0 ? 'AGENT_ADDR' : `AGENT${i + 1}_ADDR`] = `127.0.0.1:${agentPort}`;
    return `server agent${i + 1} \${AGENT${i === 0 ? '' : i + 1}_ADDR} check`;
  });
  // The deployed configuration, its one agent server replaced by one per agent, plus a stats socket.
  const deployed = deployFile('haproxy.cfg');
  const template = deployed
    .replace(/^(\s*)server agent1 .*$/m, (_line, indent: string) => servers.map((s) => indent + s).join('\n'))
    .replace(/^global\n/m, 'global\n    stats socket ${STATS_SOCKET} level admin\n');
  if (!template.includes('stats socket') || !template.includes(servers[0]))
    throw new Error('deploy/haproxy/haproxy.cfg no longer has the `global` and `server agent1` lines this expects');
  const haproxy = await HaproxyProcess.start({
    binary,
    dir,
    files: { 'haproxy.cfg': template, 'spoe.conf': deployFile('spoe.conf') },
    vars,
    statsSocket,
    waitForTcp: [{ host: '127.0.0.1', port }],
  });
  return { haproxy, port, statsSocket };
}

/** One kind of request of a {@link DecisionLoad}: from `source` (X-Forwarded-For; none: the client's own address). */
export interface DecisionSource {
  readonly source?: string;
  /** The statuses that are a decision for it: 200 (with the agent's X-IP-Score: 0) and/or 403. */
  readonly statuses: readonly (200 | 403)[];
}

/**
 * Requests through HAProxy (deploy/haproxy's haproxy.cfg) for as long as a scenario lasts, the sources in turn, each
 * response checked for a decision of the agents: a 403, or a 200 carrying X-IP-Score: 0 (an SPOE error leaves the
 * header empty). Decisions are counted by the phase in force when the request was sent.
 */
export class DecisionLoad<Phase extends string> {
  /** The phase of the requests sent from now on. */
  phase: Phase;
  readonly decided = new Map<Phase, number>();
  private readonly stopper = new AbortController();
  private readonly result: Promise<LoadResult>;

  constructor(port: number, sources: readonly DecisionSource[], firstPhase: Phase, concurrency = 4) {
    this.phase = firstPhase;
    const phaseOf: Phase[] = [];
    const headers = sources.map(({ source }): Record<string, string> => (source ? { 'x-forwarded-for': source } : {}));
    this.result = runLoad({
      total: Number.MAX_SAFE_INTEGER,
      concurrency,
      signal: this.stopper.signal,
      request: (i) => {
        phaseOf[i] = this.phase;
        return { host: '127.0.0.1', port, headers: headers[i % sources.length] };
      },
      check: (response, i) => {
        const { source = 'a clean source', statuses } = sources[i % sources.length];
        if (!(statuses as readonly number[]).includes(response.status)) return `${source}: status ${response.status}`;
        if (response.status === 200 && response.headers['x-ip-score'] !== '0')
          return `${source}: X-IP-Score ${JSON.stringify(response.headers['x-ip-score'])}`;
        this.decided.set(phaseOf[i], this.count(phaseOf[i]) + 1);
        return undefined;
      },
    });
  }

  /** Decisions of requests sent during `phase`. */
  count(phase: Phase): number {
    return this.decided.get(phase) ?? 0;
  }

  /** Waits for `n` decisions of requests sent during the current phase. */
  async decisions(n: number): Promise<void> {
    const phase = this.phase;
    await waitFor(`${n} decisions (${phase})`, () => this.count(phase) >= n, 30_000);
  }

  /** Sends no more requests; resolves once those in flight are answered. */
  stop(): Promise<LoadResult> {
    this.stopper.abort();
    return this.result;
  }
}
