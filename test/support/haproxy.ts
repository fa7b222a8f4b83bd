/**
 * A reusable harness for end-to-end tests against real HAProxy binaries.
 *
 * - {@link resolveHaproxyBinaries} / {@link describeEachHaproxy}: which binaries to run (every provisioned version, or
 *   only `HAPROXY_BIN`), and a clean skip (or a failure under `CI=true`) when there is none.
 * - {@link freePort}, {@link makeTempDir}: run-time resources.
 * - {@link HaproxyProcess}: writes the configuration files, starts HAProxy in the foreground (`-db`, or master-worker
 *   `-W` for reload tests), waits until it serves, captures its stdout/stderr, parses its SPOE log lines, reloads it
 *   (`-sf`, or SIGUSR2 in master-worker mode) and stops it.
 * - {@link haproxyCli}, {@link showStat}, {@link showServersState}, {@link waitForServerStatus}: the stats socket.
 * - {@link httpRequest}, {@link runLoad}: a small HTTP client and a concurrent load generator.
 * - {@link cleanupAll}: kills every process the harness started and removes its temporary directories. Call it in a
 *   top-level `afterAll`; a process `exit` handler does the same (synchronously) as a last resort.
 *
 * HAProxy runs through the dynamic loader of its private root (see scripts/provision-haproxy.sh), so its process name
 * is `ld-linux-…`: processes are tracked by PID only, never looked up by name.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, IncomingHttpHeaders, request as httpRequestRaw } from 'node:http';
import { connect, createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { runInThisContext } from 'node:vm';
import { join, resolve } from 'node:path';

/** HAProxy versions (major.minor) the suites run against by default. */
export const HAPROXY_VERSIONS = ['2.6', '3.0', '3.2', '3.4'] as const;

const REPO_ROOT = resolve(__dirname, '..', '..');
const PROVISION_SCRIPT = join(REPO_ROOT, 'scripts', 'provision-haproxy.sh');

// ------------------------------------------------------------------------------------------------------------------
// Binaries
// ------------------------------------------------------------------------------------------------------------------

/** One runnable HAProxy. */
export interface HaproxyBinary {
  /** major.minor, e.g. "3.2". */
  readonly version: string;
  /** The full version string, e.g. "3.2.26-1". */
  readonly fullVersion: string;
  /** Executable (the provisioned wrapper, or `HAPROXY_BIN`). */
  readonly path: string;
}

/** What {@link resolveHaproxyBinaries} found. */
export interface HaproxyResolution {
  /** Binaries to test, in version order. */
  readonly binaries: readonly HaproxyBinary[];
  /** Versions that should be there but could not be provisioned (each becomes a failing test). */
  readonly failures: ReadonlyArray<{ readonly version: string; readonly message: string }>;
  /** Set when the HAProxy suites must be skipped (no HAPROXY_BIN, no apt-get, not CI). */
  readonly skipReason?: string;
}

/** True for HAProxy 3.1+, where SPOE runs over the SPOP multiplexer (`mode spop` backends, one SPOP stream per NOTIFY). */
export function isSpopMux(version: string): boolean {
  const [major, minor] = version.split('.').map(Number);
  return major > 3 || (major === 3 && minor >= 1);
}

/** Runs `<binary> -v` and returns its major.minor and full version; throws when it does not run. */
export function detectHaproxyVersion(path: string): { version: string; fullVersion: string } {
  const out = execFileSync(path, ['-v'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const match = /HA-?Proxy version (\d+)\.(\d+)(\S*)/.exec(out);
  if (!match) throw new Error(`${path} -v printed no HAProxy version: ${out.slice(0, 200)}`);
  return { version: `${match[1]}.${match[2]}`, fullVersion: `${match[1]}.${match[2]}${match[3]}` };
}

function commandExists(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let resolutionCache: HaproxyResolution | undefined;

/**
 * Finds the HAProxy binaries to test:
 * - `HAPROXY_BIN` set: only that binary (its version detected with `-v`);
 * - else, with apt-get: each of `versions` through `scripts/provision-haproxy.sh --print-path` (cached after the first
 *   provisioning);
 * - else: nothing, with a skip reason — except under `CI=true`, where a missing HAProxy throws.
 */
export function resolveHaproxyBinaries(versions: readonly string[] = HAPROXY_VERSIONS): HaproxyResolution {
  if (resolutionCache) return resolutionCache;
  const fromEnv = process.env.HAPROXY_BIN;
  if (fromEnv) {
    const detected = detectHaproxyVersion(fromEnv);
    return (resolutionCache = { binaries: [{ ...detected, path: fromEnv }], failures: [] });
  }
  if (!commandExists('apt-get')) {
    const reason = 'HAPROXY_BIN is not set and apt-get is not available to provision HAProxy';
    if (process.env.CI === 'true') throw new Error(`CI=true: the HAProxy e2e tests cannot run: ${reason}`);
    return (resolutionCache = { binaries: [], failures: [], skipReason: reason });
  }
  const binaries: HaproxyBinary[] = [];
  const failures: Array<{ version: string; message: string }> = [];
  for (const version of versions) {
    try {
      const path = execFileSync('bash', [PROVISION_SCRIPT, '--print-path', version], {
        encoding: 'utf8',
        timeout: 15 * 60_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      }).trim();
      const detected = detectHaproxyVersion(path);
      if (detected.version !== version) throw new Error(`${path} is HAProxy ${detected.fullVersion}, not ${version}`);
      binaries.push({ ...detected, path });
    } catch (error) {
      const stderr = (error as { stderr?: Buffer | string }).stderr;
      failures.push({ version, message: `HAProxy ${version} could not be provisioned: ${(error as Error).message}${stderr ? `\n${String(stderr).slice(-2000)}` : ''}` });
    }
  }
  return (resolutionCache = { binaries, failures });
}

/**
 * `describe.each` over the HAProxy binaries of {@link resolveHaproxyBinaries}: one `describe` per version, titled
 * `<title> — HAProxy <version>`. Without HAProxy (and outside CI) the suite is skipped with a warning naming the reason;
 * a version that could not be provisioned becomes a failing test carrying the provisioning error.
 */
export function describeEachHaproxy(title: string, body: (binary: HaproxyBinary) => void): void {
  let resolution: HaproxyResolution;
  try {
    resolution = resolveHaproxyBinaries();
  } catch (error) {
    describe(title, () => {
      it('has an HAProxy to test against', () => {
        throw error;
      });
    });
    return;
  }
  if (resolution.skipReason !== undefined) {
    console.warn(`[haproxy e2e] "${title}" skipped: ${resolution.skipReason}`);
    describe.skip(`${title} (skipped: ${resolution.skipReason})`, () => {
      it('needs HAProxy', () => undefined);
    });
    return;
  }
  if (resolution.binaries.length > 0) {
    describe.each(resolution.binaries.map((b) => [b.fullVersion, b] as const))(`${title} — HAProxy %s`, (_label, binary) => body(binary));
  }
  for (const failure of resolution.failures) {
    describe(`${title} — HAProxy ${failure.version}`, () => {
      it('provisions HAProxy', () => {
        throw new Error(failure.message);
      });
    });
  }
}

// ------------------------------------------------------------------------------------------------------------------
// Run-time resources and cleanup
// ------------------------------------------------------------------------------------------------------------------

const liveProcesses = new Set<HaproxyProcess>();
const tempDirs = new Set<string>();
let exitHandlerInstalled = false;

/**
 * The real `process` object. Inside a Jest test environment, the global `process` is a copy whose listeners the real
 * process never calls, so an 'exit' handler must be registered on the real one (reached from the main context).
 */
function realProcess(): NodeJS.Process {
  try {
    return runInThisContext('process') as NodeJS.Process;
  } catch {
    return process;
  }
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  // Last resort, for processes a test forgot or could not stop: HAProxy children are unref'd (they never keep the test
  // process alive), and killed with SIGKILL when it exits. Synchronous, as 'exit' handlers must be.
  realProcess().on('exit', () => {
    for (const p of liveProcesses) {
      try {
        p.killNow();
      } catch {
        // keep going: every process and directory gets its chance
      }
    }
    for (const dir of tempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // idem
      }
    }
  });
}

/** A new private temporary directory, removed by {@link cleanupAll} (and at process exit). */
export function makeTempDir(prefix = 'nestjs-spoe-e2e-'): string {
  installExitHandler();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory made by {@link makeTempDir}. */
export function removeTempDir(dir: string): void {
  tempDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Stops every HAProxy the harness started (SIGTERM, then SIGKILL after a grace period, master-worker children
 * included) and removes its temporary directories. Safe to call more than once; meant for a top-level `afterAll`.
 */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...liveProcesses].map((p) => p.stop()));
  for (const dir of [...tempDirs]) removeTempDir(dir);
}

/**
 * A TCP port that was free a moment ago on every host of `hosts` (default: 127.0.0.1, and ::1 when the host has IPv6
 * loopback), so that HAProxy can bind it on each.
 */
export async function freePort(hosts?: readonly string[]): Promise<number> {
  const targets = hosts ?? ((await hasIpv6Loopback()) ? ['127.0.0.1', '::1'] : ['127.0.0.1']);
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await listenAndClose(targets[0], 0);
    let free = true;
    for (const host of targets.slice(1)) {
      if ((await listenAndClose(host, port).catch(() => -1)) !== port) free = false;
    }
    if (free) return port;
  }
  throw new Error(`no free port on ${targets.join(' and ')}`);
}

function listenAndClose(host: string, port: number): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : -1;
      server.close(() => resolvePort(bound));
    });
  });
}

let ipv6Loopback: Promise<boolean> | undefined;

/** True when the loopback interface has IPv6 (`::1`) here (checked once). */
export function hasIpv6Loopback(): Promise<boolean> {
  return (ipv6Loopback ??= listenAndClose('::1', 0).then(
    () => true,
    () => false,
  ));
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Thrown by a {@link waitFor} check to stop waiting at once (e.g. the awaited process exited). */
export class WaitAborted extends Error {}

/**
 * Polls `check` every `intervalMs` until it returns a value other than `undefined`/`false`; throws after `timeoutMs`.
 * A check that throws is retried (its error is reported on timeout), except for {@link WaitAborted}, rethrown at once.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      if (error instanceof WaitAborted) throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}

// ------------------------------------------------------------------------------------------------------------------
// HAProxy process
// ------------------------------------------------------------------------------------------------------------------

/** One line HAProxy printed. */
export interface LogLine {
  readonly stream: 'stdout' | 'stderr';
  /** PID of the process that printed it (the master in master-worker mode). */
  readonly pid: number;
  readonly at: number;
  readonly text: string;
}

/**
 * One `SPOE: [agent] <EVENT|GROUP:name> sid=N st=S …` log line.
 * 2.x: `… st=S reqT/qT/wT/resT/pT idles/applets sending/waiting errors/processed`; 3.x: `… st=S pT errors/processed`.
 */
export interface SpoeLogEvent {
  readonly agent: string;
  readonly kind: 'EVENT' | 'GROUP';
  /** The event name (e.g. on-frontend-http-request), or the group name for a GROUP line. */
  readonly event: string;
  /** HAProxy's stream id (uniq_id). */
  readonly sid: number;
  /** 0 success; 1 timeout, 2 resource, 3 too big, 4 interrupted, 255 unknown; 256+N an SPOP (I/O-level) error N. */
  readonly st: number;
  /** Processing time (ms), -1 when interrupted. */
  readonly pT: number;
  /** The timing fields as printed (2.x: reqT, qT, wT, resT, pT; 3.x: pT). */
  readonly times: readonly number[];
  /** The agent's cumulative counters printed at the end of the line: `<nb_errors>/<nb_processed>`. */
  readonly errors: number;
  readonly processed: number;
  readonly raw: string;
  /** PID of the process that printed it (0 when parsed from bare text). */
  readonly pid: number;
}

const SPOE_LOG = /SPOE: \[([^\]]+)\] <(EVENT|GROUP):([^>]+)> sid=(\d+) st=(\d+) (\S+)(.*?) (\d+)\/(\d+)\s*$/;

/** Parses one SPOE log line; undefined for other lines. */
export function parseSpoeLogLine(text: string, pid = 0): SpoeLogEvent | undefined {
  const m = SPOE_LOG.exec(text);
  if (!m) return undefined;
  const times = m[6].split('/').map(Number);
  return {
    agent: m[1],
    kind: m[2] as 'EVENT' | 'GROUP',
    event: m[3],
    sid: Number(m[4]),
    st: Number(m[5]),
    pT: times[times.length - 1],
    times,
    errors: Number(m[8]),
    processed: Number(m[9]),
    raw: text,
    pid,
  };
}

/** Options of {@link HaproxyProcess.start}. */
export interface HaproxyStartOptions {
  readonly binary: HaproxyBinary;
  /** Directory for the files (default: a new {@link makeTempDir}). */
  readonly dir?: string;
  /** Files to write into `dir`, by file name; `haproxy.cfg` is the main configuration (`-f`). */
  readonly files: Readonly<Record<string, string>>;
  /**
   * The stats socket path declared in the configuration (`stats socket <path> level admin`). Used to know when the
   * (new) process serves: `show info` must report its PID. Without it, readiness is "every `waitForTcp` port accepts".
   */
  readonly statsSocket?: string;
  /** TCP endpoints that must accept connections before `start()` resolves. */
  readonly waitForTcp?: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  /** Master-worker mode (`-W`): only for reload tests. Default false (`-db`, plain foreground). */
  readonly masterWorker?: boolean;
  /** Extra command-line arguments. */
  readonly args?: readonly string[];
  /** Bound on the start, in ms. Default 15000. */
  readonly startTimeoutMs?: number;
}

/** Where one process's stdout or stderr goes: a regular file (see {@link HaproxyProcess}), read incrementally. */
interface OutputSink {
  readonly pid: number;
  readonly stream: 'stdout' | 'stderr';
  readonly path: string;
  offset: number;
  pending: string;
}

/**
 * A running HAProxy. Every instance is registered for {@link cleanupAll} and the process `exit` handler, so it is
 * killed even when a test fails before its own cleanup. Output of every process of the instance (the original one and
 * those started by {@link reload}) is collected in {@link lines}.
 *
 * stdout and stderr go to regular files in the instance directory, not to pipes: HAProxy writes its `log stdout`
 * lines without blocking and drops those that do not fit (DroppedLogs in `show info`), which a pipe to a busy test
 * process (64 KiB) would cause under load. A file never refuses a write; {@link lines} reads what was appended.
 */
export class HaproxyProcess {
  private readonly collected: LogLine[] = [];
  private readonly sinks: OutputSink[] = [];
  /** The processes started by this instance (the first, then one per `-sf` reload), all tracked for cleanup. */
  private readonly children: ChildProcess[] = [];
  private readonly exited = new Map<number, { code: number | null; signal: NodeJS.Signals | null }>();
  private readonly knownDescendants = new Set<number>();
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly options: HaproxyStartOptions,
    /** Directory holding haproxy.cfg and the other files. */
    readonly dir: string,
  ) {}

  /** Every line printed so far by every process of this instance, in the order read (per process: printed order). */
  get lines(): readonly LogLine[] {
    this.readOutput();
    return this.collected;
  }

  /** Path of haproxy.cfg. */
  get configPath(): string {
    return join(this.dir, 'haproxy.cfg');
  }

  /** PID of the newest process (the master in master-worker mode). */
  get pid(): number {
    const child = this.children[this.children.length - 1];
    if (child?.pid === undefined) throw new Error('HAProxy has no process');
    return child.pid;
  }

  /** Writes the files, starts HAProxy and waits until it serves. On failure, kills it and throws with its output. */
  static async start(options: HaproxyStartOptions): Promise<HaproxyProcess> {
    installExitHandler();
    if (!options.files['haproxy.cfg']) throw new Error('HaproxyProcess.start: files must contain haproxy.cfg');
    const dir = options.dir ?? makeTempDir();
    for (const [name, content] of Object.entries(options.files)) writeFileSync(join(dir, name), content);
    const instance = new HaproxyProcess(options, dir);
    liveProcesses.add(instance);
    try {
      const args = [options.masterWorker ? '-W' : '', '-db', '-f', instance.configPath, ...(options.args ?? [])].filter(Boolean);
      const child = instance.spawnProcess(args);
      await instance.waitReady(child, undefined);
      return instance;
    } catch (error) {
      await instance.stop();
      throw error;
    }
  }

  /** Every SPOE log line seen so far (from line index `from`, e.g. a `lines.length` bookmark), parsed. */
  spoeEvents(from = 0): SpoeLogEvent[] {
    const events: SpoeLogEvent[] = [];
    for (const line of this.lines.slice(from)) {
      const event = parseSpoeLogLine(line.text, line.pid);
      if (event) events.push(event);
    }
    return events;
  }

  /** Lines printed since index `from` (use `lines.length` as a bookmark). */
  linesSince(from: number): LogLine[] {
    return this.lines.slice(from);
  }

  /** All output as one string, for assertion messages. */
  output(from = 0): string {
    return this.lines
      .slice(from)
      .map((l) => `[${l.pid} ${l.stream}] ${l.text}`)
      .join('\n');
  }

  /** Output lines that look like HAProxy alerts or warnings (`[ALERT]`, `[WARNING]`). */
  problems(from = 0): string[] {
    return this.lines.slice(from).filter((l) => /\[(ALERT|WARNING|EMERG)\]/.test(l.text)).map((l) => l.text);
  }

  /** Waits until a line matching `pattern` has been printed (after index `from`). */
  async waitForLine(pattern: RegExp, timeoutMs = 5000, from = 0): Promise<LogLine> {
    return waitFor(`a log line matching ${pattern}`, () => this.lines.slice(from).find((l) => pattern.test(l.text)), timeoutMs, 20);
  }

  /** Runs a command on the stats socket (see {@link haproxyCli}). */
  cli(command: string): Promise<string> {
    if (!this.options.statsSocket) throw new Error('this HAProxy has no statsSocket in its options');
    return haproxyCli(this.options.statsSocket, command);
  }

  /**
   * Soft reload with the same configuration.
   * - Plain mode: starts a new process with `-sf <old pid>` (plus `-x <stats socket>` when `seamless`, so it takes over
   *   the listening sockets, which needs `expose-fd listeners` on that socket). The old process stops accepting and
   *   finishes its connections, then exits.
   * - Master-worker mode: SIGUSR2 to the master, which re-executes itself and starts a new worker (`-sf` internally).
   * Resolves once the new process serves (its PID in `show info`). Needs `statsSocket`.
   */
  async reload(options: { seamless?: boolean } = {}): Promise<void> {
    if (!this.options.statsSocket) throw new Error('reload() needs the statsSocket option');
    const before = await this.servingPid();
    if (this.options.masterWorker) {
      process.kill(this.pid, 'SIGUSR2');
      await waitFor('the reloaded worker to serve', async () => {
        const now = await this.servingPid().catch(() => undefined);
        return now !== undefined && now !== before ? now : undefined;
      }, this.options.startTimeoutMs ?? 15_000);
      this.rememberDescendants();
      return;
    }
    const args = ['-db', '-f', this.configPath, ...(this.options.args ?? [])];
    if (options.seamless) args.push('-x', this.options.statsSocket);
    args.push('-sf', String(before));
    const child = this.spawnProcess(args);
    await this.waitReady(child, before);
  }

  /** `show info` of the serving process, as name → value (Pid, Uptime_sec, DroppedLogs, …). */
  async info(): Promise<Record<string, string>> {
    const text = await this.cli('show info');
    const info: Record<string, string> = {};
    for (const line of text.split('\n')) {
      const colon = line.indexOf(': ');
      if (colon > 0) info[line.slice(0, colon)] = line.slice(colon + 2);
    }
    return info;
  }

  /** The PID that `show info` reports on the stats socket (the process, or the worker in master-worker mode). */
  async servingPid(): Promise<number> {
    const pid = Number((await this.info()).Pid);
    if (!Number.isInteger(pid) || pid <= 0) throw new Error('no Pid in show info');
    return pid;
  }

  /** PIDs of the processes of this instance still running (tracked children and, in master-worker mode, workers). */
  runningPids(): number[] {
    this.rememberDescendants();
    const pids = [...this.children.map((c) => c.pid ?? -1), ...this.knownDescendants];
    return pids.filter((pid) => pid > 0 && !this.exited.has(pid) && isAlive(pid));
  }

  /** Waits until the process `pid` (e.g. the old one after a reload) has exited. */
  async waitForExit(pid: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(`HAProxy pid ${pid} to exit`, () => this.exited.has(pid) || !isAlive(pid), timeoutMs, 50);
  }

  /**
   * Stops every process of this instance: SIGTERM (HAProxy's hard stop), SIGKILL after 3 s. Idempotent; always
   * resolves. Does not remove the directory (cleanupAll does).
   */
  stop(): Promise<void> {
    return (this.stopping ??= this.doStop());
  }

  /** @internal Synchronous SIGKILL of everything (process 'exit' handler). */
  killNow(): void {
    this.rememberDescendants();
    for (const pid of [...this.knownDescendants, ...this.children.map((c) => c.pid ?? -1)]) {
      if (pid > 0 && !this.exited.has(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }

  private async doStop(): Promise<void> {
    this.rememberDescendants();
    const targets = () => [...this.children.map((c) => c.pid ?? -1), ...this.knownDescendants].filter((pid) => pid > 0 && !this.exited.has(pid) && isAlive(pid));
    for (const pid of targets()) signal(pid, 'SIGTERM');
    const deadline = Date.now() + 3000;
    while (targets().length > 0 && Date.now() < deadline) await sleep(25);
    for (const pid of targets()) signal(pid, 'SIGKILL');
    while (targets().length > 0 && Date.now() < deadline + 2000) await sleep(25);
    liveProcesses.delete(this);
  }

  private spawnProcess(args: string[]): ChildProcess {
    const n = this.children.length;
    const outPath = join(this.dir, `haproxy-${n}.stdout`);
    const errPath = join(this.dir, `haproxy-${n}.stderr`);
    const out = openSync(outPath, 'a');
    const err = openSync(errPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.options.binary.path, args, { cwd: this.dir, stdio: ['ignore', out, err] });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    // Never keep the test process alive for HAProxy: a forgotten instance is killed by the exit handler instead.
    child.unref();
    this.children.push(child);
    const pid = child.pid ?? -1;
    this.sinks.push({ pid, stream: 'stdout', path: outPath, offset: 0, pending: '' }, { pid, stream: 'stderr', path: errPath, offset: 0, pending: '' });
    child.on('exit', (code, sig) => this.exited.set(pid, { code, signal: sig }));
    child.on('error', (error) => this.collected.push({ stream: 'stderr', pid, at: Date.now(), text: `spawn error: ${error.message}` }));
    return child;
  }

  /** Appends to {@link collected} the complete lines written to the output files since the last call. */
  private readOutput(): void {
    const at = Date.now();
    for (const sink of this.sinks) {
      let size: number;
      try {
        size = statSync(sink.path).size;
      } catch {
        continue;
      }
      if (size <= sink.offset) continue;
      const buffer = Buffer.alloc(size - sink.offset);
      const fd = openSync(sink.path, 'r');
      try {
        const read = readSync(fd, buffer, 0, buffer.length, sink.offset);
        sink.offset += read;
        sink.pending += buffer.toString('utf8', 0, read);
      } finally {
        closeSync(fd);
      }
      const parts = sink.pending.split('\n');
      sink.pending = parts.pop() ?? '';
      for (const text of parts) this.collected.push({ stream: sink.stream, pid: sink.pid, at, text });
    }
  }

  private async waitReady(child: ChildProcess, previousPid: number | undefined): Promise<void> {
    const pid = child.pid ?? -1;
    const timeoutMs = this.options.startTimeoutMs ?? 15_000;
    const from = this.lines.length;
    try {
      await waitFor(
        `HAProxy ${this.options.binary.fullVersion} (pid ${pid}) to serve`,
        async () => {
          const exit = this.exited.get(pid);
          if (exit) throw new HaproxyExitedError(`exited (code ${exit.code}, signal ${exit.signal})`);
          if (this.options.statsSocket) {
            const serving = await this.servingPid().catch(() => undefined);
            if (serving === undefined) return false;
            if (this.options.masterWorker ? serving === previousPid : serving !== pid) return false;
          }
          for (const endpoint of this.options.waitForTcp ?? []) {
            if (!(await canConnect(endpoint.host, endpoint.port))) return false;
          }
          return true;
        },
        timeoutMs,
        25,
      );
    } catch (error) {
      const detail = error instanceof HaproxyExitedError ? error.message : (error as Error).message;
      throw new Error(`HAProxy ${this.options.binary.fullVersion} did not start: ${detail}\n--- output ---\n${this.output(from)}\n--- haproxy.cfg ---\n${readFileSync(this.configPath, 'utf8')}`, { cause: error });
    }
    this.rememberDescendants();
  }

  private rememberDescendants(): void {
    for (const child of this.children) {
      if (child.pid !== undefined) for (const pid of descendantsOf(child.pid)) this.knownDescendants.add(pid);
    }
  }
}

class HaproxyExitedError extends WaitAborted {}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie (exited, not yet reaped) still "exists": look at its state.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** PIDs of every live descendant of `root` (from /proc; empty where /proc is not available). */
function descendantsOf(root: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  const parentOf = new Map<number, number>();
  for (const entry of entries) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parentOf.set(Number(entry), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const result: number[] = [];
  const frontier = [root];
  while (frontier.length > 0) {
    const parent = frontier.pop() as number;
    for (const [pid, ppid] of parentOf) {
      if (ppid === parent && !result.includes(pid)) {
        result.push(pid);
        frontier.push(pid);
      }
    }
  }
  return result;
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolveConnect) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolveConnect(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

// ------------------------------------------------------------------------------------------------------------------
// Stats socket
// ------------------------------------------------------------------------------------------------------------------

/**
 * Sends one command to an HAProxy stats socket (Unix path) and resolves with the whole answer (HAProxy closes the
 * connection after a command in non-interactive mode).
 */
export function haproxyCli(socketPath: string, command: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolveCli, reject) => {
    if (!existsSync(socketPath)) {
      reject(new Error(`stats socket ${socketPath} does not exist`));
      return;
    }
    const socket: Socket = connect({ path: socketPath });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`stats socket ${socketPath}: no answer to "${command}" within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(`${command}\n`));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolveCli(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/** `show stat` as rows keyed by the CSV header (pxname, svname, status, check_status, …). */
export async function showStat(socketPath: string): Promise<Array<Record<string, string>>> {
  const text = await haproxyCli(socketPath, 'show stat');
  const lines = text.split('\n').filter((l) => l.length > 0);
  const header = lines.shift();
  if (!header?.startsWith('# ')) throw new Error(`unexpected show stat output: ${text.slice(0, 200)}`);
  const columns = header.slice(2).split(',');
  return lines.map((line) => {
    const values = line.split(',');
    const row: Record<string, string> = {};
    columns.forEach((name, i) => {
      if (name) row[name] = values[i] ?? '';
    });
    return row;
  });
}

/** One line of `show servers state`. srv_op_state: 0 stopped (DOWN), 1 starting, 2 running (UP), 3 stopping. */
export interface ServerState {
  readonly backend: string;
  readonly server: string;
  readonly address: string;
  readonly opState: number;
  readonly adminState: number;
  readonly checkStatus: number;
  readonly raw: Readonly<Record<string, string>>;
}

/** `show servers state [backend]`, parsed. */
export async function showServersState(socketPath: string, backend?: string): Promise<ServerState[]> {
  const text = await haproxyCli(socketPath, backend ? `show servers state ${backend}` : 'show servers state');
  const lines = text.split('\n').filter((l) => l.length > 0);
  const headerIndex = lines.findIndex((l) => l.startsWith('# '));
  if (headerIndex < 0) throw new Error(`unexpected show servers state output: ${text.slice(0, 200)}`);
  const columns = lines[headerIndex].slice(2).split(' ');
  return lines.slice(headerIndex + 1).map((line) => {
    const values = line.split(' ');
    const raw: Record<string, string> = {};
    columns.forEach((name, i) => (raw[name] = values[i] ?? ''));
    return {
      backend: raw.be_name,
      server: raw.srv_name,
      address: raw.srv_addr,
      opState: Number(raw.srv_op_state),
      adminState: Number(raw.srv_admin_state),
      checkStatus: Number(raw.srv_check_status),
      raw,
    };
  });
}

/** The `status` column of `show stat` for one server ("UP", "DOWN", "UP 1/2", "no check", …); undefined if absent. */
export async function serverStatus(socketPath: string, backend: string, server: string): Promise<string | undefined> {
  const rows = await showStat(socketPath);
  return rows.find((r) => r.pxname === backend && r.svname === server)?.status;
}

/** Waits until the server's `show stat` status is exactly `status` (transitional "UP 1/2" etc. do not count). */
export async function waitForServerStatus(socketPath: string, backend: string, server: string, status: 'UP' | 'DOWN', timeoutMs = 10_000): Promise<void> {
  let last: string | undefined;
  try {
    await waitFor(`server ${backend}/${server} to be ${status}`, async () => {
      last = await serverStatus(socketPath, backend, server);
      return last === status;
    }, timeoutMs, 50);
  } catch (error) {
    throw new Error(`${(error as Error).message}; last status: ${last}`, { cause: error });
  }
}

// ------------------------------------------------------------------------------------------------------------------
// HTTP client and load generator
// ------------------------------------------------------------------------------------------------------------------

/** One HTTP request. */
export interface HttpRequestOptions {
  readonly host: string;
  readonly port: number;
  readonly path?: string;
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
  /** A keep-alive agent to reuse connections; default: a new connection closed after the response. */
  readonly agent?: HttpAgent;
  readonly timeoutMs?: number;
}

/** An HTTP response, its body read entirely. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** Sends one HTTP/1.1 request and reads the whole response. */
export function httpRequest(options: HttpRequestOptions): Promise<HttpResponse> {
  return new Promise((resolveResponse, reject) => {
    const body = options.body;
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const req = httpRequestRaw(
      {
        host: options.host,
        port: options.port,
        path: options.path ?? '/',
        method: options.method ?? (body !== undefined ? 'POST' : 'GET'),
        headers,
        agent: options.agent ?? false,
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolveResponse({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request timed out after ${options.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** Number of requests. */
  readonly total: number;
  /** Requests in flight at once (the number of concurrent clients). */
  readonly concurrency: number;
  /** The i-th request (host, port, path, headers…); `agent` is set by runLoad (keep-alive, one socket per client). */
  readonly request: (i: number) => Omit<HttpRequestOptions, 'agent'>;
  /** Checks a response: returns a failure reason, or undefined when it is good. Default: status must be 200. */
  readonly check?: (response: HttpResponse, i: number) => string | undefined;
  /** Called after each completed request (e.g. to trigger a reload at some point). */
  readonly onProgress?: (done: number) => void;
  /** Awaited before the i-th request is sent (e.g. to hold the last requests until a reload is done). */
  readonly before?: (i: number) => Promise<void> | undefined;
  /** Keep-alive connections (default true). */
  readonly keepAlive?: boolean;
}

/** Result of {@link runLoad}. */
export interface LoadResult {
  readonly total: number;
  readonly ok: number;
  /** Requests that failed (transport error or a `check` failure), with the reason. */
  readonly failures: ReadonlyArray<{ readonly i: number; readonly reason: string }>;
  /** Number of responses per HTTP status. */
  readonly statuses: Readonly<Record<number, number>>;
  readonly durationMs: number;
  readonly requestsPerSecond: number;
  /** Every response (only the status and headers), for further checks. */
  readonly responses: ReadonlyArray<{ readonly i: number; readonly status: number; readonly headers: IncomingHttpHeaders }>;
}

/**
 * Sends `total` requests from `concurrency` concurrent clients (a pool of workers sharing one keep-alive http.Agent
 * with `concurrency` sockets). Never throws for a failed request: failures are counted and described.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const keepAlive = options.keepAlive ?? true;
  const agent = new HttpAgent({ keepAlive, maxSockets: options.concurrency, maxFreeSockets: options.concurrency });
  const check = options.check ?? ((r: HttpResponse) => (r.status === 200 ? undefined : `status ${r.status}`));
  const failures: Array<{ i: number; reason: string }> = [];
  const statuses: Record<number, number> = {};
  const responses: Array<{ i: number; status: number; headers: IncomingHttpHeaders }> = [];
  let next = 0;
  let done = 0;
  const started = Date.now();
  const worker = async (): Promise<void> => {
    while (next < options.total) {
      const i = next++;
      try {
        await options.before?.(i);
        const response = await httpRequest({ ...options.request(i), agent });
        statuses[response.status] = (statuses[response.status] ?? 0) + 1;
        responses.push({ i, status: response.status, headers: response.headers });
        const reason = check(response, i);
        if (reason !== undefined) failures.push({ i, reason });
      } catch (error) {
        failures.push({ i, reason: `transport: ${(error as Error).message}` });
      }
      done++;
      options.onProgress?.(done);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency, options.total) }, () => worker()));
  } finally {
    agent.destroy();
  }
  const durationMs = Date.now() - started;
  return {
    total: options.total,
    ok: options.total - failures.length,
    failures,
    statuses,
    durationMs,
    requestsPerSecond: Math.round((options.total * 1000) / Math.max(1, durationMs)),
    responses,
  };
}
