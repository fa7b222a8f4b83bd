import { median, percentile } from '../support/stats';
import type { GcEvent } from './probe-client';

/** The bound on a GC pause. */
export const GC_PAUSE_LIMIT_MS = 10;

/** A value sampled over time: `t` in seconds. */
export interface TimedValue {
  readonly t: number;
  readonly value: number;
}

export interface SeriesSummary {
  readonly samples: number;
  readonly min: number;
  readonly median: number;
  readonly max: number;
  /** Median of the first `windowS` seconds, of the last `windowS` seconds. */
  readonly firstMedian: number;
  readonly lastMedian: number;
  /** (last − first) / first, in %. */
  readonly driftPercent: number;
  /** |drift| within the tolerance. */
  readonly flat: boolean;
}

/** Summarizes samples taken from `from` to `to` (seconds): extremes, and drift between the first and last windows. */
export function summarizeSeries(
  samples: readonly TimedValue[],
  from: number,
  to: number,
  windowS: number,
  tolerancePercent: number,
): SeriesSummary {
  const kept = samples.filter((s) => s.t >= from && s.t <= to);
  const values = kept.map((s) => s.value);
  const firstMedian = median(kept.filter((s) => s.t < from + windowS).map((s) => s.value));
  const lastMedian = median(kept.filter((s) => s.t > to - windowS).map((s) => s.value));
  const driftPercent = ((lastMedian - firstMedian) / firstMedian) * 100;
  return {
    samples: kept.length,
    min: Math.min(...values),
    median: median(values),
    max: Math.max(...values),
    firstMedian,
    lastMedian,
    driftPercent,
    flat: Math.abs(driftPercent) <= tolerancePercent,
  };
}

/** V8's GCType values (perf_hooks.constants.NODE_PERFORMANCE_GC_*). */
const GC_KINDS: Readonly<Record<number, string>> = {
  1: 'scavenge',
  2: 'minor-mark-sweep',
  4: 'mark-sweep-compact',
  8: 'incremental-marking',
  16: 'weak-callbacks',
};

export function gcKindName(kind: number): string {
  return GC_KINDS[kind] ?? `kind-${kind}`;
}

export interface GcKindSummary {
  readonly count: number;
  readonly totalMs: number;
  readonly maxMs: number;
  readonly p99Ms: number;
  readonly overLimit: number;
}

export interface GcSummary extends GcKindSummary {
  /** Forced by the bench (global.gc()) in the same period: left out of every other figure. */
  readonly forcedExcluded: number;
  readonly byKind: Readonly<Record<string, GcKindSummary>>;
  /** The longest pauses, `t` in seconds from the start of the run. */
  readonly longest: readonly { readonly t: number; readonly kind: string; readonly durationMs: number }[];
}

function kindSummary(durations: readonly number[]): GcKindSummary {
  return {
    count: durations.length,
    totalMs: durations.reduce((sum, d) => sum + d, 0),
    maxMs: durations.length ? Math.max(...durations) : 0,
    p99Ms: durations.length ? percentile(durations, 99) : 0,
    overLimit: durations.filter((d) => d > GC_PAUSE_LIMIT_MS).length,
  };
}

/**
 * GC pauses of the agent (not the forced ones) that started between `from` and `to` seconds after `origin` (epoch ms).
 */
export function summarizeGc(events: readonly GcEvent[], origin: number, from: number, to: number): GcSummary {
  const inPeriod = events.filter((e) => (e.at - origin) / 1000 >= from && (e.at - origin) / 1000 <= to);
  const natural = inPeriod.filter((e) => !e.forced);
  const byKind: Record<string, GcKindSummary> = {};
  for (const kind of [...new Set(natural.map((e) => e.kind))].sort((a, b) => a - b)) {
    byKind[gcKindName(kind)] = kindSummary(natural.filter((e) => e.kind === kind).map((e) => e.durationMs));
  }
  const longest = [...natural]
    .sort((a, b) => b.durationMs - a.durationMs)
    .slice(0, 5)
    .map((e) => ({ t: (e.at - origin) / 1000, kind: gcKindName(e.kind), durationMs: e.durationMs }));
  return {
    ...kindSummary(natural.map((e) => e.durationMs)),
    forcedExcluded: inPeriod.length - natural.length,
    byKind,
    longest,
  };
}
