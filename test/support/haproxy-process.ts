/**
 * A real HAProxy for a test: {@link HaproxyProcess} renders its configuration templates (haproxy-config.ts) into a
 * directory, starts HAProxy in the foreground (`-db`, or master-worker `-W` for reload tests), waits until it serves,
 * captures its output, parses its SPOE log lines, reloads it (`-sf`, or SIGUSR2 in master-worker mode) and stops it.
 * Every instance is tracked for cleanupAll (cleanup.ts), so none outlives its test file.
 *
 * HAProxy runs through the dynamic loader of its private root (see scripts/provision-haproxy.sh), so its process name
 * is `ld-linux-…`: processes are tracked by PID only, never looked up by name.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeTempDir, trackForCleanup } from './cleanup';
import { haproxyCli } from './haproxy-admin';
import { HaproxyBinary } from './haproxy-binaries';
import { renderTemplates, TemplateVars } from './haproxy-config';
import { parseSpoeLogLine, SpoeLogEvent } from './haproxy-spoe-log';
import { waitFor, WaitAborted } from './wait';

/** Bound on a start or a reload. */
const START_TIMEOUT_MS = 15_000;

/** One line HAProxy printed. */
export interface LogLine {
  readonly stream: 'stdout' | 'stderr';
  /** PID of the process that printed it (the master in master-worker mode). */
  readonly pid: number;
  readonly text: string;
}

/** Options of {@link HaproxyProcess.start}. */
export interface HaproxyStartOptions {
  readonly binary: HaproxyBinary;
  /** Directory for the files (default: a new {@link makeTempDir}). */
  readonly dir?: string;
  /**
   * Files to write into `dir`, by file name: templates, rendered with `vars` (see haproxy-config.ts); `haproxy.cfg` is
   * the main configuration (`-f`).
   */
  readonly files: Readonly<Record<string, string>>;
  /** Values of the templates' placeholders. */
  readonly vars?: TemplateVars;
  /**
   * The stats socket path declared in the configuration (`stats socket <path> level admin`). Used to know when the
   * (new) process serves: `show info` must report its PID. Without it, readiness is "every `waitForTcp` port accepts".
   */
  readonly statsSocket?: string;
  /** TCP endpoints that must accept connections before `start()` resolves. */
  readonly waitForTcp?: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  /** Master-worker mode (`-W`): only for reload tests. Default false (`-db`, plain foreground). */
  readonly masterWorker?: boolean;
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
 * A running HAProxy. Every instance is tracked for cleanupAll and the process `exit` handler (cleanup.ts), so it is
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
  private readonly untrack = trackForCleanup({ stop: () => this.stop(), kill: () => this.killNow() });

  private constructor(
    private readonly options: HaproxyStartOptions,
    /** Directory holding haproxy.cfg and the other files. */
    private readonly dir: string,
  ) {}

  /** Every line printed so far by every process of this instance, in the order read (per process: printed order). */
  get lines(): readonly LogLine[] {
    this.readOutput();
    return this.collected;
  }

  /** Path of haproxy.cfg. */
  private get configPath(): string {
    return join(this.dir, 'haproxy.cfg');
  }

  /** PID of the newest process (the master in master-worker mode). */
  get pid(): number {
    const child = this.children[this.children.length - 1];
    if (child?.pid === undefined) throw new Error('HAProxy has no process');
    return child.pid;
  }

  /**
   * Renders the files into the directory, starts HAProxy and waits until it serves. On failure, kills it and throws
   * with its output.
   */
  static async start(options: HaproxyStartOptions): Promise<HaproxyProcess> {
    if (!options.files['haproxy.cfg']) throw new Error('HaproxyProcess.start: files must contain haproxy.cfg');
    const files = renderTemplates(options.files, options.vars);
    const dir = options.dir ?? makeTempDir();
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
    const instance = new HaproxyProcess(options, dir);
    try {
      const args = [options.masterWorker ? '-W' : '', '-db', '-f', instance.configPath].filter(Boolean);
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

  /** All output as one string, for assertion messages. */
  output(from = 0): string {
    return this.lines
      .slice(from)
      .map((l) => `[${l.pid} ${l.stream}] ${l.text}`)
      .join('\n');
  }

  /** Output lines that look like HAProxy alerts or warnings (`[ALERT]`, `[WARNING]`). */
  problems(): string[] {
    return this.lines.filter((l) => /\[(ALERT|WARNING|EMERG)\]/.test(l.text)).map((l) => l.text);
  }

  /**
   * {@link problems} but those of running as root, which the tests do and a deployment does not (HAProxy warns of
   * root itself, of no `chroot` and of no `user`/`uid`): what a configuration under test should never produce.
   */
  unexpectedProblems(): string[] {
    return this.problems().filter((line) => !/started as (root|the root user)|'chroot'|'user' nor 'uid'/.test(line));
  }

  /** Runs a command on the stats socket (see {@link haproxyCli}). */
  private cli(command: string): Promise<string> {
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
      await waitFor(
        'the reloaded worker to serve',
        async () => {
          const now = await this.servingPid().catch(() => undefined);
          return now !== undefined && now !== before ? now : undefined;
        },
        START_TIMEOUT_MS,
      );
      this.rememberDescendants();
      return;
    }
    const args = ['-db', '-f', this.configPath];
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
  async waitForExit(pid: number): Promise<void> {
    await waitFor(`HAProxy pid ${pid} to exit`, () => this.exited.has(pid) || !isAlive(pid));
  }

  /**
   * Stops every process of this instance: SIGTERM (HAProxy's hard stop), SIGKILL after 3 s. Idempotent; always
   * resolves. Does not remove the directory (cleanupAll does).
   */
  stop(): Promise<void> {
    return (this.stopping ??= this.doStop());
  }

  /** Synchronous SIGKILL of everything (process 'exit' handler). */
  private killNow(): void {
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
    const targets = () =>
      [...this.children.map((c) => c.pid ?? -1), ...this.knownDescendants].filter(
        (pid) => pid > 0 && !this.exited.has(pid) && isAlive(pid),
      );
    for (const pid of targets()) signal(pid, 'SIGTERM');
    const deadline = Date.now() + 3000;
    while (targets().length > 0 && Date.now() < deadline) await sleep(25);
    for (const pid of targets()) signal(pid, 'SIGKILL');
    while (targets().length > 0 && Date.now() < deadline + 2000) await sleep(25);
    this.untrack();
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
    this.sinks.push(
      { pid, stream: 'stdout', path: outPath, offset: 0, pending: '' },
      { pid, stream: 'stderr', path: errPath, offset: 0, pending: '' },
    );
    child.on('exit', (code, sig) => this.exited.set(pid, { code, signal: sig }));
    child.on('error', (error) => this.collected.push({ stream: 'stderr', pid, text: `spawn error: ${error.message}` }));
    return child;
  }

  /** Appends to {@link collected} the complete lines written to the output files since the last call. */
  private readOutput(): void {
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
      for (const text of parts) this.collected.push({ stream: sink.stream, pid: sink.pid, text });
    }
  }

  private async waitReady(child: ChildProcess, previousPid: number | undefined): Promise<void> {
    const pid = child.pid ?? -1;
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
        START_TIMEOUT_MS,
        25,
      );
    } catch (error) {
      const detail = error instanceof HaproxyExitedError ? error.message : (error as Error).message;
      throw new Error(
        `HAProxy ${this.options.binary.fullVersion} did not start: ${detail}\n--- output ---\n${this.output(from)}\n--- haproxy.cfg ---\n${readFileSync(this.configPath, 'utf8')}`,
        { cause: error },
      );
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
