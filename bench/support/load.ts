/**
 * One measure of an agent under the C generator's load, and the medians over rounds: the same method for every bench
 * that drives an agent with bench/spop-load.c (frames, workers).
 */
import { GeneratorResult, GeneratorRun, runGenerator } from './generator';
import { machineBusySeconds, treeCpuSeconds } from './processes';
import { median } from './stats';

export interface LoadMeasure {
  readonly generator: GeneratorResult;
  /** CPU seconds (user + system) of the agent's process tree over the measured invocation. */
  readonly agentCpuSeconds: number;
  readonly agentCpuUsPerFrame: number;
  /** Cores the agent kept busy: its CPU seconds over the measured seconds. */
  readonly agentCores: number;
  /** Cores kept busy by everything else on the machine (other jobs): how noisy the measure was. */
  readonly otherCores: number;
}

/** Medians over rounds of {@link LoadMeasure}s. */
export interface LoadSummary {
  readonly rounds: number;
  readonly framesPerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly agentCpuUsPerFrame: number;
  readonly agentCores: number;
  readonly generatorCpuPercent: number;
  readonly otherCores: number;
}

/**
 * A warm-up invocation of the generator, then the measured one with the CPU of the agent's process tree and of the
 * whole machine sampled around it. The warm-up is separate so that the CPU window is the measured invocation only
 * (plus its connect and drain, a few ms out of seconds, when the agent is idle).
 */
export async function measureLoad(
  agentPid: number,
  run: Omit<GeneratorRun, 'durationMs'>,
  warmupMs: number,
  durationMs: number,
): Promise<LoadMeasure> {
  if (warmupMs > 0) await runGenerator({ ...run, durationMs: warmupMs });
  const [before, busyBefore] = [treeCpuSeconds(agentPid), machineBusySeconds()];
  const generator = await runGenerator({ ...run, durationMs });
  const agentCpuSeconds = treeCpuSeconds(agentPid) - before;
  const otherCpuSeconds = machineBusySeconds() - busyBefore - agentCpuSeconds - generator.cpuUserS - generator.cpuSysS;
  return {
    generator,
    agentCpuSeconds,
    agentCpuUsPerFrame: generator.frames > 0 ? (agentCpuSeconds * 1e6) / generator.frames : NaN,
    agentCores: agentCpuSeconds / generator.seconds,
    otherCores: Math.max(0, otherCpuSeconds / generator.seconds),
  };
}

export function summarizeLoad(measures: readonly LoadMeasure[]): LoadSummary {
  const med = (pick: (m: LoadMeasure) => number): number => median(measures.map(pick));
  return {
    rounds: measures.length,
    framesPerSecond: med((m) => m.generator.framesPerSecond),
    p50Us: med((m) => m.generator.p50Us),
    p99Us: med((m) => m.generator.p99Us),
    p999Us: med((m) => m.generator.p999Us),
    agentCpuUsPerFrame: med((m) => m.agentCpuUsPerFrame),
    agentCores: med((m) => m.agentCores),
    generatorCpuPercent: med((m) => m.generator.cpuPercent),
    otherCores: med((m) => m.otherCores),
  };
}
