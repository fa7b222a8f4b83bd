/**
 * Which CPU each process of a bench runs on. On this 2-core machine the scheduler otherwise sometimes puts an agent and
 * its load on the same core for a whole measure (they then take turns instead of running side by side): the same agent
 * measured 640k or 1,050k frames/s at 16×64 from one fresh process to the next, and 29k or 34k requests/s through
 * HAProxy. Pinned with taskset, runs agree within a few percent, for every agent alike:
 * - bench:frames and the soak: the agent on CPU 0, the load generator on CPU 1; the HAProxy in front of bench:frames'
 *   proxied agents beside the generator, on CPU 1, so that the agent keeps its core as in every other measure;
 * - bench:haproxy: HAProxy (single-threaded, the busiest) on CPU 0, the agent and wrk on CPU 1.
 * BENCH_PIN=0 leaves placement to the scheduler; machines with one CPU, or without taskset, are not pinned.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

export const CPU = { agent: 0, generator: 1, proxy: 1, haproxy: 0, besideHaproxy: 1 } as const;

/** Whether processes are pinned in this run (reported with the results). */
const PINNED = process.env.BENCH_PIN !== '0' && availableParallelism() >= 2 && hasTaskset();

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** `command args…` run on `cpu` (taskset execs the command: the PID is the command's own). */
export function onCpu(cpu: number | undefined, command: string, args: readonly string[]): [string, string[]] {
  if (!PINNED || cpu === undefined) return [command, [...args]];
  return ['taskset', ['-c', String(cpu), command, ...args]];
}

/** Moves a running process, every thread of it, to `cpu`. */
export function pinRunning(pid: number, cpu: number): void {
  if (PINNED) execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

/** How placement was decided, for the report. */
export function pinningNote(pinned: string): string {
  return PINNED ? `${pinned} (taskset)` : 'no CPU pinning';
}
