/** bench/results/<name>.json: what each bench measured, the data behind BENCHMARKS.md (kept with the sources). */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const RESULTS_DIR = join(__dirname, '..', 'results');

function resultsPath(name: string): string {
  return join(RESULTS_DIR, `${name}.json`);
}

/**
 * Writes bench/results/<name>.json (pretty, newline-terminated: diffs between runs stay readable); returns its path.
 */
export function writeResults(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = resultsPath(name);
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
  return path;
}

/**
 * bench/results/<name>.json as written by its bench, or undefined when that bench has not run. The type is the
 * bench's own (its results are trusted: they are written by this code, not typed by hand).
 */
export function readResults<T>(name: string): T | undefined {
  const path = resultsPath(name);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : undefined;
}
