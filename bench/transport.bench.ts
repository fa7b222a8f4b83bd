import { ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { runLoad } from './load';

/**
 * `npm run bench:transport`: frames per second through nestjs-spoe against a dependency-free Node agent on the same
 * codec, measured in one run on this machine, reported as a ratio. The load generator runs in this process, each
 * agent in its own, so on 2 cores the agent has one to itself. Not a test: numbers vary with the machine's load.
 */
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 20);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 4000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
/** Extra node flags for the agent processes, e.g. BENCH_AGENT_NODE_OPTIONS="--max-semi-space-size=32". */

async function startAgent(kind: string): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(join(__dirname, 'agents.ts'), [kind], { execArgv: ['-r', '@swc-node/register', ...(process.env.BENCH_AGENT_NODE_OPTIONS ?? '').split(' ').filter(Boolean)], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      const m = /READY (\d+)/.exec(chunk.toString());
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${kind} agent exited with ${code}`)));
  });
  return { child, port };
}

async function measure(kind: string): Promise<number> {
  const { child, port } = await startAgent(kind);
  try {
    await runLoad({ port }, CONNECTIONS, WINDOW, 1000);
    const result = await runLoad({ port }, CONNECTIONS, WINDOW, DURATION_MS);
    return result.framesPerSecond;
  } finally {
    child.kill();
  }
}

async function main(): Promise<void> {
  console.log(`transport benchmark: ${CONNECTIONS} connections × ${WINDOW} NOTIFY in flight, ${DURATION_MS} ms per measure, ${ROUNDS} rounds`);
  const results: Record<string, number[]> = { nest: [], raw: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const kind of ['raw', 'nest']) results[kind].push(await measure(kind));
  }
  const best = (xs: number[]): number => Math.max(...xs);
  const fmt = (n: number): string => `${Math.round(n).toLocaleString('en-US')} frames/s`;
  console.log(`raw Node agent (same codec, no Nest): ${fmt(best(results.raw))}   [${results.raw.map(fmt).join(', ')}]`);
  console.log(`nestjs-spoe (@MessagePattern handler): ${fmt(best(results.nest))}   [${results.nest.map(fmt).join(', ')}]`);
  console.log(`ratio nestjs-spoe / raw: ${(best(results.nest) / best(results.raw)).toFixed(2)}`);
}

void main();
