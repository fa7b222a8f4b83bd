/**
 * `npm run bench:report`: BENCHMARKS.md and bench/results/frames.svg again, from bench/results/*.json, without
 * measuring anything (`npm run bench` measures, then does the same).
 */
import { generateReport } from './report/generate';
import { runBench } from './support/processes';

async function main(): Promise<void> {
  const { markdown, chart } = await generateReport();
  console.log(`${markdown}${chart ? `\n${chart}` : ''}`);
}

runBench('bench:report', main);
