/**
 * Which CPU the agent and the load generator run on. On this 2-core machine the scheduler otherwise sometimes puts
 * them on the same core for a whole measure (they then take turns instead of running side by side): the same agent
 * measured 640k or 1,050k frames/s at 16×64 from one fresh process to the next. Pinned with taskset, the agent on CPU 0
 * and the generator on CPU 1, runs agree within a few percent, for every agent alike. BENCH_PIN=0 leaves placement to
 * the scheduler; machines with one CPU, or without taskset, are not pinned.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

export type CpuRole = 'agent' | 'generator';

const CPU_OF: Readonly<Record<CpuRole, number>> = { agent: 0, generator: 1 };

/** Whether agents and the generator are pinned in this run (reported with the results). */
export const PINNED = process.env.BENCH_PIN !== '0' && availableParallelism() >= 2 && hasTaskset();

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** `command args…` run on the CPU of `role` (taskset execs the command: the PID is the command's own). */
export function onCpu(role: CpuRole | undefined, command: string, args: readonly string[]): [string, string[]] {
  if (!PINNED || role === undefined) return [command, [...args]];
  return ['taskset', ['-c', String(CPU_OF[role]), command, ...args]];
}

/** How placement was decided, for the report. */
export function pinningNote(): string {
  return PINNED ? `agent pinned to CPU ${CPU_OF.agent}, generator to CPU ${CPU_OF.generator} (taskset)` : 'no CPU pinning';
}
