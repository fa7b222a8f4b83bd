/**
 * The processes `npm run bench:haproxy` starts (agents, wrk), tracked by PID so that every one of them is killed on the
 * way out whatever happens, and the kernel's CPU accounting of them (/proc).
 */
import { ChildProcess, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const STOP_TIMEOUT_MS = 5_000;

/** Every process this run started and has not seen exit. */
const children = new Set<ChildProcess>();
/** Descendants seen of the tracked processes (e.g. a supervisor's workers), killed too. */
const descendants = new Set<number>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function exited(child: ChildProcess): boolean {
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

/** SIGTERM, then SIGKILL if it lingers; its descendants still alive afterwards are killed too. */
export async function stopProcessTree(child: ChildProcess): Promise<void> {
  rememberDescendants(child);
  const tree = child.pid === undefined ? [] : processTree(child.pid).filter((pid) => pid !== child.pid);
  child.kill('SIGTERM');
  if (!(await waitExit(child, STOP_TIMEOUT_MS))) {
    child.kill('SIGKILL');
    await waitExit(child, STOP_TIMEOUT_MS);
  }
  for (const pid of tree) killPid(pid, 'SIGKILL');
}

/** Synchronous (for 'exit' handlers): SIGKILL to every tracked process and every descendant seen. */
export function killAllChildren(): void {
  for (const child of children) if (child.pid !== undefined) killPid(child.pid, 'SIGKILL');
  for (const pid of descendants) if (isAlive(pid)) killPid(pid, 'SIGKILL');
}

function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== 'Z';
}

// ------------------------------------------------------------------------------------------------------- CPU accounting

interface ProcStat {
  readonly state: string;
  readonly ppid: number;
  /** utime + stime: its own CPU. */
  readonly ownTicks: number;
  /** cutime + cstime: CPU of its children that exited and were reaped. */
  readonly reapedTicks: number;
}

export const CLOCK_TICKS_PER_SECOND = clockTicks();

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
 */
export function treeCpuSeconds(root: number): number {
  const stats = allStats();
  const ticks = processTree(root, stats).reduce((sum, pid) => sum + stats.get(pid)!.ownTicks + stats.get(pid)!.reapedTicks, 0);
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU seconds of this process's children that exited and were reaped. Read before and after a wrk run, the difference
 * is wrk's own CPU, exactly: wrk is the only child that exits in between (agents and HAProxy outlive the run).
 */
export function reapedChildrenCpuSeconds(): number {
  return (readStat('self')?.reapedTicks ?? 0) / CLOCK_TICKS_PER_SECOND;
}

/**
 * Busy CPU seconds of the whole machine so far, all cores (/proc/stat). Minus what the bench's processes used, it is
 * what other jobs used meanwhile: how shared, so how noisy, the machine was.
 */
export function machineBusySeconds(): number {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_SECOND;
}

// ------------------------------------------------------------------------------------------------------- settings

export function envInt(name: string, fallback: number, min: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(text)}`);
  return value;
}
