/**
 * The processes a benchmark starts (agents, supervisors and their workers, load generators, wrk), tracked by PID so
 * that every one of them is killed on the way out whatever happens, and the kernel's CPU accounting of them and of
 * the whole machine (Linux /proc). Shared by every bench script: each measures CPU the same way.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const STOP_TIMEOUT_MS = 5_000;

/** Every process this run started and has not seen exit. */
const children = new Set<ChildProcess>();
/**
 * Descendants seen of the tracked processes (a supervisor's workers), killed too: a crash of their parent must not
 * orphan them.
 */
const descendants = new Set<number>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves true once the child exited, false if it is still running after `timeoutMs`. */
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

function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Remembers the live descendants of a tracked process, so that a crash of their parent does not orphan them. */
export function rememberDescendants(child: ChildProcess): void {
  if (child.pid === undefined) return;
  for (const pid of processTree(child.pid)) if (pid !== child.pid) descendants.add(pid);
}

/**
 * SIGTERM (the process's own graceful path), then SIGKILL if it lingers; its descendants still alive afterwards are
 * killed too.
 */
export async function stopProcessTree(child: ChildProcess): Promise<void> {
  rememberDescendants(child);
  const tree = child.pid === undefined ? [] : processTree(child.pid).filter((pid) => pid !== child.pid);
  child.kill('SIGTERM');
  if (!(await waitExit(child, STOP_TIMEOUT_MS))) {
    child.kill('SIGKILL');
    await waitExit(child, STOP_TIMEOUT_MS);
  }
  for (const pid of tree) if (isAlive(pid)) killPid(pid, 'SIGKILL');
}

/**
 * Synchronous (for 'exit' handlers): SIGKILL to every tracked process, its descendants alive now and every descendant
 * seen.
 */
function killAllChildren(): void {
  const stats = children.size > 0 ? allStats() : new Map<number, ProcStat>();
  for (const child of children) {
    if (child.pid === undefined) continue;
    for (const pid of processTree(child.pid, stats)) descendants.add(pid);
    killPid(child.pid, 'SIGKILL');
  }
  for (const pid of descendants) if (isAlive(pid)) killPid(pid, 'SIGKILL');
}

function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== 'Z';
}

/**
 * Runs a bench script's `main`: whatever happens (an error, Ctrl-C, SIGTERM from `npm run bench`), every process it
 * started is killed before it exits. An error is printed as `<name>: message` and makes the exit code 1;
 * `onError` runs after the kill (cleanup that only the script knows, e.g. temporary HAProxy directories).
 */
export function runBench(name: string, main: () => Promise<void>, onError?: () => Promise<void>): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      console.error(`${name}: ${signal}, stopping`);
      // process.exit runs the 'exit' handlers: ours, and those of modules that registered their own.
      killAllChildren();
      process.exit(130);
    });
  }
  process.on('exit', killAllChildren);
  main().catch(async (error: Error) => {
    console.error(`${name}: ${error.message}`);
    killAllChildren();
    await onError?.();
    process.exitCode = 1;
  });
}

/** How a command-line tool ended, and all it printed. */
export interface ToolOutput {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command-line tool (the load generator, wrk) to its end, tracked, its output collected. It is SIGKILLed after
 * `timeoutMs`: a hung tool must not hang the bench. Resolves on 'close', after Node reaped it (its CPU is then in
 * this process's cutime/cstime); rejects only when it cannot start.
 */
export function runTool(command: string, args: readonly string[], timeoutMs: number): Promise<ToolOutput> {
  const child = track(spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${command} could not start: ${error.message}`, { cause: error }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// ------------------------------------------------------------------------------------------------------- CPU
// accounting

interface ProcStat {
  readonly state: string;
  readonly ppid: number;
  /** utime + stime: its own CPU, all its threads (GC helpers included). */
  readonly ownTicks: number;
  /** cutime + cstime: CPU of its children that exited and were reaped. */
  readonly reapedTicks: number;
}

const CLOCK_TICKS_PER_SECOND = clockTicks();

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

function readStat(pid: number | 'self'): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const [ppid, utime, stime, cutime, cstime] = [1, 11, 12, 13, 14].map((i) => Number(fields[i]));
    return { state: fields[0], ppid, ownTicks: utime + stime, reapedTicks: cutime + cstime };
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
 * CPU seconds (user + system) used so far by a process and all its descendants. A descendant that exits and is reaped
 * moves its time into its parent's cutime/cstime, so the sum stays right across exits (a supervisor's workers).
 * NaN once the process itself is gone.
 */
export function treeCpuSeconds(root: number): number {
  const stats = allStats();
  if (!stats.has(root)) return NaN;
  const ticks = processTree(root, stats).reduce(
    (sum, pid) => sum + stats.get(pid)!.ownTicks + stats.get(pid)!.reapedTicks,
    0,
  );
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU seconds of this process's children that exited and were reaped. Read before and after a run of a tool that is
 * the only child to exit in between (wrk: agents and HAProxy outlive the run), the difference is the tool's own CPU.
 */
export function reapedChildrenCpuSeconds(): number {
  return (readStat('self')?.reapedTicks ?? 0) / CLOCK_TICKS_PER_SECOND;
}

/**
 * Busy CPU seconds of the whole machine so far, all cores (/proc/stat). Softirq time is in it and, with tick-based
 * accounting, also in the stime of the process it interrupted: busy minus what the bench's processes used is what
 * other jobs used meanwhile — how shared, so how noisy, the machine was.
 */
export function machineBusySeconds(): number {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'latin1')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_SECOND;
}
