/**
 * bench/spop-load.c, the SPOP load generator of the benchmarks: it plays HAProxy 3.1+ in C so that it costs far less
 * than any agent it drives (a Node generator saturates near 500k frames/s and would measure itself). Built here, run
 * here, its JSON line parsed here.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { runTool } from './processes';
import { onCpu } from './cpus';

const BENCH_DIR = join(__dirname, '..');
const SOURCE = join(BENCH_DIR, 'spop-load.c');
export const GENERATOR = join(BENCH_DIR, '.build', 'spop-load');
/** Setup and the generator's 2 s drain bound, with room to spare: a hung generator must not hang the bench. */
const SLACK_MS = 20_000;

/** The JSON line spop-load prints. */
export interface GeneratorResult {
  readonly frames: number;
  readonly seconds: number;
  readonly framesPerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
  readonly connections: number;
  readonly inflight: number;
  readonly threads: number;
  readonly cpuUserS: number;
  readonly cpuSysS: number;
  /** The generator's own CPU over the measured period: 100 = one core. */
  readonly cpuPercent: number;
}

export interface GeneratorRun {
  readonly port: number;
  readonly connections: number;
  /** NOTIFY in flight per connection. */
  readonly inflight: number;
  readonly durationMs: number;
  /** Generator threads (one epoll loop each); 1 unless one core cannot keep up. */
  readonly threads?: number;
  /** Every ACK's first action must be set-var of this name (default ip_score, what every bench agent sets). */
  readonly expectVar?: string;
  /** The CPU to run on (see cpus.ts); by default wherever the scheduler puts it. */
  readonly cpu?: number;
  /** Every Nth NOTIFY of a connection carries a `traceparent` argument (a request an edge traced); none by default. */
  readonly tracedEvery?: number;
  /**
   * With `tracedEvery`, the other NOTIFY carry a traceparent too, not sampled: an edge that hands on every request's
   * trace context and samples 1 in `tracedEvery`.
   */
  readonly propagateAll?: boolean;
}

function compiler(): string {
  return process.env.CC ?? 'cc';
}

/** Compiled on every run (a fraction of a second): the binary never lags behind its source. */
export function buildGenerator(): void {
  const cc = compiler();
  mkdirSync(join(BENCH_DIR, '.build'), { recursive: true });
  try {
    execFileSync(cc, ['-O2', '-pthread', '-o', GENERATOR, SOURCE], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`no C compiler: "${cc}" was not found. Install one (e.g. apt-get install gcc) or set CC.`, {
        cause: error,
      });
    }
    throw new Error(`compiling bench/spop-load.c with "${cc}" failed (see above)`, { cause: error });
  }
}

/** `cc --version`'s first line, for the report. */
export function compilerVersion(): string {
  try {
    return execFileSync(compiler(), ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    return 'unknown';
  }
}

/** One invocation, no warm-up of its own (a warm-up is a separate invocation, outside the agent's CPU window). */
export async function runGenerator(run: GeneratorRun): Promise<GeneratorResult> {
  const args = [
    '--host',
    '127.0.0.1',
    '--port',
    String(run.port),
    '--connections',
    String(run.connections),
    '--inflight',
    String(run.inflight),
  ];
  args.push(
    '--duration-ms',
    String(run.durationMs),
    '--warmup-ms',
    '0',
    '--threads',
    String(run.threads ?? 1),
    '--expect-var',
    run.expectVar ?? 'ip_score',
  );
  if (run.tracedEvery) args.push('--traced-every', String(run.tracedEvery));
  if (run.tracedEvery && run.propagateAll) args.push('--propagate-all');
  const { code, signal, stdout, stderr } = await runTool(...onCpu(run.cpu, GENERATOR, args), run.durationMs + SLACK_MS);
  if (code !== 0) throw new Error(`spop-load failed (${signal ?? `exit ${code}`}): ${stderr.trim() || 'no message'}`);
  return JSON.parse(stdout) as GeneratorResult;
}
