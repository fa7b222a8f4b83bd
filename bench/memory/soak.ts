import { setTimeout as sleep } from 'node:timers/promises';
import { CPU } from '../support/cpus';
import { GeneratorResult, runGenerator } from '../support/generator';
import { machineBusySeconds, treeCpuSeconds } from '../support/processes';
import { ProbedAgent } from './agents';
import { GcEvent, MemoryUsage, ProbeAnswer } from './probe-client';
import { GC_PAUSE_LIMIT_MS, GcSummary, SeriesSummary, summarizeGc, summarizeSeries } from './stats';

export interface SoakSettings {
  readonly durationS: number;
  /** Samples and GC events before it are left out of the summary (JIT, heap sizing, connection setup). */
  readonly warmupS: number;
  /** Seconds between memory samples. */
  readonly sampleS: number;
  /**
   * Forced-GC samples (post-GC heap, the clearest leak signal): 0 for two only, at the end of the warm-up and just
   * before the end; otherwise one every that many seconds after the warm-up. Each costs the agent a full GC.
   */
  readonly forcedGcEveryS: number;
  readonly connections: number;
  readonly inflight: number;
  /** Length of the first and last windows whose medians give the drift. */
  readonly windowS: number;
  /** The bound on the drift, in %. */
  readonly tolerancePercent: number;
}

/** Who used the machine's cores during the soak (CPU seconds over wall seconds). */
export interface CoreUse {
  readonly wallS: number;
  readonly agentCores: number;
  readonly generatorCores: number;
  /** Everything else on the machine (other jobs): well above 0, pauses stretch while GC threads wait for a core. */
  readonly otherCores: number;
}

export interface SoakSample {
  /** Seconds since the load started. */
  readonly t: number;
  /** Taken right after a forced GC: a post-GC sample, not part of the raw series. */
  readonly forcedGc: boolean;
  readonly memory: MemoryUsage;
}

export interface SoakSummary {
  readonly framesPerSecond: number;
  readonly p99Us: number;
  /** Raw samples (no forced GC) after the warm-up. */
  readonly rss: SeriesSummary;
  readonly heapUsed: SeriesSummary;
  /**
   * Post-GC heapUsed: the first forced sample after the warm-up, the last one, and their drift in %. The raw heap is
   * a sawtooth (the young generation fills between scavenges, many times a second): the medians of two windows of
   * raw samples can differ by 20% with no leak at all; the post-GC heap is what a leak would move.
   */
  readonly postGcHeap:
    | { readonly first: number; readonly last: number; readonly driftPercent: number; readonly flat: boolean }
    | undefined;
  /** GC pauses after the warm-up, forced ones excluded. */
  readonly gc: GcSummary;
  /** The same over the whole soak, warm-up included. */
  readonly gcWholeSoak: GcSummary;
  /** RSS (raw samples) and heap (post-GC samples, raw ones if there are fewer than two) within the tolerance. */
  readonly flat: boolean;
  readonly noPauseOverLimit: boolean;
  readonly cores: CoreUse;
}

export interface SoakResult {
  readonly agent: string;
  readonly settings: SoakSettings;
  /** The warm-up actually used: at most a third of the soak, so that a short run still has two windows. */
  readonly effectiveWarmupS: number;
  /** Epoch ms when the load started: `t` = 0. */
  readonly origin: number;
  readonly generator: GeneratorResult;
  readonly samples: readonly SoakSample[];
  /** Every GC event of the agent during the run, `t` in seconds since the origin. */
  readonly gcEvents: readonly (GcEvent & { readonly t: number })[];
  readonly summary: SoakSummary;
}

function generate(port: number, settings: SoakSettings): Promise<GeneratorResult> {
  return runGenerator({
    port,
    connections: settings.connections,
    inflight: settings.inflight,
    durationMs: settings.durationS * 1000,
    cpu: CPU.generator,
  });
}

/** When to take post-GC samples, in seconds since the origin. */
function forcedGcTimes(settings: SoakSettings, warmupS: number): number[] {
  if (settings.forcedGcEveryS === 0) return [warmupS, settings.durationS - 2].filter((t, i) => i === 0 || t > warmupS);
  const times: number[] = [];
  for (let t = warmupS; t < settings.durationS - 1; t += settings.forcedGcEveryS) times.push(t);
  return times;
}

/** Collects what the probe answers: memory samples and the GC events that came with them. */
class Recorder {
  readonly samples: SoakSample[] = [];
  readonly gcEvents: (GcEvent & { t: number })[] = [];

  constructor(readonly origin: number) {}

  add(answer: ProbeAnswer, forcedGc: boolean, keepSample = true): void {
    for (const event of answer.gcEvents) this.gcEvents.push({ ...event, t: (event.at - this.origin) / 1000 });
    if (keepSample) this.samples.push({ t: (answer.at - this.origin) / 1000, forcedGc, memory: answer.memory });
  }
}

function progressLine(recorder: Recorder, t: number): string {
  const last = recorder.samples.filter((s) => !s.forcedGc).at(-1);
  const natural = recorder.gcEvents.filter((e) => !e.forced);
  const max = Math.max(0, ...natural.map((e) => e.durationMs));
  const over = natural.filter((e) => e.durationMs > GC_PAUSE_LIMIT_MS).length;
  const memory = last
    ? `RSS ${(last.memory.rss / 1e6).toFixed(1)} MB, heap ${(last.memory.heapUsed / 1e6).toFixed(1)} MB`
    : 'no sample';
  return `  t=${t.toFixed(0)}s  ${memory}, ${natural.length} GC pauses so far (max ${max.toFixed(1)} ms, ${over} over ${GC_PAUSE_LIMIT_MS} ms)`;
}

/**
 * Full load from the C generator for the whole soak; meanwhile, one memory sample a second from the probe (no GC
 * forced) and a few post-GC samples. The agent's GC events come along with the samples.
 */
export async function runSoak(
  agent: ProbedAgent,
  settings: SoakSettings,
  log: (line: string) => void,
): Promise<SoakResult> {
  const warmupS = Math.min(settings.warmupS, Math.floor(settings.durationS / 3));
  await agent.probe.stats(false); // GC events of the startup are not the soak's
  const origin = Date.now();
  const [agentCpu, busy] = [treeCpuSeconds(agent.pid), machineBusySeconds()];
  const recorder = new Recorder(origin);
  const generator = generate(agent.port, settings);
  let running = true;
  const finished = generator.then(
    () => (running = false),
    () => (running = false),
  );
  const forcedTimes = forcedGcTimes(settings, warmupS);
  for (let i = 1; running; i++) {
    const due = origin + i * settings.sampleS * 1000;
    await Promise.race([sleep(Math.max(0, due - Date.now())), finished]);
    if (!running) break;
    recorder.add(await agent.probe.stats(false), false);
    const t = (Date.now() - origin) / 1000;
    if (forcedTimes.length > 0 && t >= forcedTimes[0]) {
      forcedTimes.shift();
      recorder.add(await agent.probe.stats(true), true);
    }
    if (i % Math.max(1, Math.round(10 / settings.sampleS)) === 0) log(progressLine(recorder, t));
  }
  const result = await generator;
  const cores = coreUse(
    (Date.now() - origin) / 1000,
    treeCpuSeconds(agent.pid) - agentCpu,
    machineBusySeconds() - busy,
    result,
  );
  // GC events delivered since the last sample; the load is over, so this sample is not part of the series.
  recorder.add(await agent.probe.stats(false), false, false);
  return {
    agent: agent.name,
    settings,
    effectiveWarmupS: warmupS,
    origin,
    generator: result,
    samples: recorder.samples,
    gcEvents: recorder.gcEvents,
    summary: summarize(recorder, result, settings, warmupS, cores),
  };
}

function coreUse(wallS: number, agentS: number, busyS: number, generator: GeneratorResult): CoreUse {
  const generatorS = generator.cpuUserS + generator.cpuSysS;
  return {
    wallS,
    agentCores: agentS / wallS,
    generatorCores: generatorS / wallS,
    otherCores: Math.max(0, (busyS - agentS - generatorS) / wallS),
  };
}

function summarize(
  recorder: Recorder,
  generator: GeneratorResult,
  settings: SoakSettings,
  warmupS: number,
  cores: CoreUse,
): SoakSummary {
  const end = settings.durationS;
  const raw = recorder.samples.filter((s) => !s.forcedGc);
  const series = (pick: (m: MemoryUsage) => number): SeriesSummary =>
    summarizeSeries(
      raw.map((s) => ({ t: s.t, value: pick(s.memory) })),
      warmupS,
      end,
      settings.windowS,
      settings.tolerancePercent,
    );
  const rss = series((m) => m.rss);
  const heapUsed = series((m) => m.heapUsed);
  const postGc = recorder.samples.filter((s) => s.forcedGc && s.t >= warmupS - settings.sampleS);
  const postGcHeap =
    postGc.length >= 2
      ? drift(postGc[0].memory.heapUsed, postGc.at(-1)!.memory.heapUsed, settings.tolerancePercent)
      : undefined;
  const gc = summarizeGc(recorder.gcEvents, recorder.origin, warmupS, end);
  return {
    framesPerSecond: generator.framesPerSecond,
    p99Us: generator.p99Us,
    rss,
    heapUsed,
    postGcHeap,
    gc,
    gcWholeSoak: summarizeGc(recorder.gcEvents, recorder.origin, 0, end),
    flat: rss.flat && (postGcHeap ? postGcHeap.flat : heapUsed.flat),
    noPauseOverLimit: gc.overLimit === 0,
    cores,
  };
}

function drift(first: number, last: number, tolerancePercent: number): NonNullable<SoakSummary['postGcHeap']> {
  const driftPercent = ((last - first) / first) * 100;
  return { first, last, driftPercent, flat: Math.abs(driftPercent) <= tolerancePercent };
}
