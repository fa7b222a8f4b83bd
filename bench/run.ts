/**
 * `npm run bench`: every benchmark in turn — codec, frames, workers, memory, haproxy — then BENCHMARKS.md and its chart
 * from the results (bench/report/generate.ts).
 *
 * Each bench runs as a child process with this environment (BENCH_* settings pass through): a crash or a failed bench
 * is reported, and the others still run; the exit code is 1 if any failed. The project is built once, first, and the
 * benches are told not to build again. bench/codec.bench.ts prints text only: its output is kept in
 * bench/results/codec.json. The run itself (command, settings, each bench's status and time) goes to
 * bench/results/run.json, which the report quotes.
 *
 * Environment: BENCH_STEPS (all: "codec,frames,workers,memory,haproxy") selects benches; every other BENCH_* setting
 * is the benches' own (see each script's header, or BENCHMARKS.md's "How to reproduce").
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { generateReport } from './report/generate';
import { parseCodecOutput, RunRecord, StepName, StepRecord, STEPS } from './report/types';
import { buildProject, ROOT } from './support/agents';
import { envList } from './support/env';
import { runBench, track } from './support/processes';
import { writeResults } from './support/results';

const SELECTED = envList('BENCH_STEPS', STEPS);
/** What a reader needs to repeat the run: the settings, not the whole environment. */
const RECORDED_ENV = /^(BENCH_\w+|CC|NESTJS_SPOE_CACHE)$/;

function steps(): StepName[] {
  const unknown = SELECTED.filter((name) => !(STEPS as readonly string[]).includes(name));
  if (unknown.length > 0)
    throw new Error(`BENCH_STEPS: unknown bench(es) ${unknown.join(', ')} (known: ${STEPS.join(', ')})`);
  return STEPS.filter((name) => SELECTED.includes(name));
}

function recordedEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env)
      .filter((entry): entry is [string, string] => RECORDED_ENV.test(entry[0]) && entry[1] !== undefined)
      .sort(([a], [b]) => a.localeCompare(b)),
  );
}

/** `BENCH_ROUNDS=1 … npm run bench`: the command with the settings it ran with. */
function commandLine(env: Readonly<Record<string, string>>): string {
  const quote = (value: string): string => (/^[\w.,:/@+-]*$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`);
  return [...Object.entries(env).map(([key, value]) => `${key}=${quote(value)}`), 'npm run bench'].join(' ');
}

/** Runs bench/<name>.bench.ts to its end, its output passed through (and returned: the codec's is kept). */
function runStep(name: StepName, env: NodeJS.ProcessEnv): Promise<{ record: StepRecord; stdout: string }> {
  const script = join('bench', `${name}.bench.ts`);
  const started = Date.now();
  console.log(`\n=== npm run bench:${name} (${new Date().toISOString()})\n`);
  const child = track(
    spawn(process.execPath, ['-r', '@swc-node/register', script], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  let stdout = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    process.stdout.write(chunk);
    stdout += chunk.toString();
  });
  return new Promise((resolve) => {
    child.once('error', (error) => console.error(`bench: ${name} could not start: ${error.message}`));
    child.once('close', (exitCode, signal) => {
      const record = { name, script, exitCode, signal, seconds: (Date.now() - started) / 1000 };
      if (exitCode !== 0)
        console.error(`\nbench: bench:${name} FAILED (${signal ?? `exit code ${exitCode}`}); going on with the others`);
      resolve({ record, stdout });
    });
  });
}

async function main(): Promise<void> {
  const selected = steps();
  const env = recordedEnv();
  const startedAt = new Date().toISOString();
  buildProject();
  // Built once above: each bench would otherwise run `npm run build` again.
  const childEnv = { ...process.env, BENCH_SKIP_BUILD: '1' };
  const records: StepRecord[] = [];
  for (const name of selected) {
    const { record, stdout } = await runStep(name, childEnv);
    records.push(record);
    if (name === 'codec' && record.exitCode === 0)
      writeResults('codec', parseCodecOutput(stdout, new Date(Date.now() - record.seconds * 1000).toISOString()));
  }
  const run: RunRecord = {
    command: commandLine(env),
    env,
    startedAt,
    finishedAt: new Date().toISOString(),
    steps: records,
  };
  writeResults('run', run);
  const { markdown, chart } = await generateReport();
  console.log(`\n=== report: ${markdown}${chart ? `, ${chart}` : ''}`);
  const failed = records.filter((r) => r.exitCode !== 0);
  if (failed.length > 0)
    throw new Error(`${failed.length} bench(es) failed: ${failed.map((r) => r.name).join(', ')} (the report says so)`);
}

runBench('bench', main);
