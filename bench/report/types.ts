/** What `npm run bench` records besides each bench's own results: the run itself, and the codec's figures. */

/** The benches `npm run bench` runs, in order. */
export const STEPS = ['codec', 'frames', 'workers', 'memory', 'haproxy'] as const;
export type StepName = (typeof STEPS)[number];

export interface StepRecord {
  readonly name: StepName;
  /** `npm run bench:<name>`'s script, as run. */
  readonly script: string;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly seconds: number;
}

/** bench/results/run.json: the last `npm run bench`. */
export interface RunRecord {
  /** The command as a reader would type it, with the BENCH_* settings it had. */
  readonly command: string;
  /** The settings of the environment the benches saw (BENCH_*, CC, NESTJS_SPOE_CACHE). */
  readonly env: Readonly<Record<string, string>>;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly steps: readonly StepRecord[];
}

/** One line of bench/codec.bench.ts's output (decode, decode-all, encode, total… as it prints them). */
export interface CodecRow {
  readonly name: string;
  readonly bestNs: number;
  readonly medianNs: number;
  readonly bytesPerFrame: number;
}

/** bench/results/codec.json: bench/codec.bench.ts prints text only; `npm run bench` keeps it and its figures. */
export interface CodecResults {
  readonly date: string;
  readonly node: string;
  readonly rows: readonly CodecRow[];
  readonly output: string;
}

const ROW = /^([a-z][\w-]*)\s+(\d+) ns\/frame \(median\s+(\d+)\)\s+(-?\d+|NaN) B\/frame$/;

/** The figures of codec.bench.ts's output (its format: `decode   123 ns/frame (median   130)     45 B/frame`). */
export function parseCodecOutput(output: string, date: string): CodecResults {
  const rows: CodecRow[] = [];
  for (const line of output.split('\n')) {
    const match = ROW.exec(line.trim());
    if (match)
      rows.push({
        name: match[1],
        bestNs: Number(match[2]),
        medianNs: Number(match[3]),
        bytesPerFrame: Number(match[4]),
      });
  }
  return { date, node: process.version, rows, output };
}
