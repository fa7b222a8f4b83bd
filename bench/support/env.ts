/**
 * Settings of the benchmarks, read from the environment: every duration and count can be changed without editing a
 * script (short runs while developing, longer ones for a report), and a typo fails at once rather than measuring
 * something else.
 */

/** An integer ≥ `min` from `name`, or `fallback` when it is unset or empty. */
export function envInt(name: string, fallback: number, min: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min)
    throw new Error(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(text)}`);
  return value;
}

/** A comma-separated list from `name` (items trimmed, empty ones dropped), or `fallback` when it is unset or empty. */
export function envList(name: string, fallback: readonly string[]): string[] {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return [...fallback];
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** Whether `name` is set to 1 (BENCH_SKIP_BUILD=1, BENCH_TRACE_GC=1). */
export function envFlag(name: string): boolean {
  return process.env[name] === '1';
}
