/** Number formats and tables of the bench reports (console and BENCHMARKS.md), the same in every bench. */

import type { Summary as FramesSummary } from '../frames.bench';

/** 1,234,567 (en-US grouping, whatever the machine's locale); '-' for NaN or infinity. */
export const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

/** n with `digits` decimals; '-' for NaN or infinity. */
export const fixed =
  (digits: number) =>
  (n: number): string =>
    Number.isFinite(n) ? n.toFixed(digits) : '-';

/** +12 / -3 (grouped integers): what something adds. */
export const signed = (n: number): string => (n >= 0 ? `+${int(n)}` : int(n));

/**
 * A console table: columns padded to their widest cell, the first `leftColumns` left-aligned (names), the others
 * right-aligned (numbers).
 */
export function textTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>, leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/**
 * A Markdown (GFM) table, the first `leftColumns` left-aligned, the others right-aligned. Pipes in cells are escaped.
 */
export function markdownTable(
  header: readonly string[],
  rows: ReadonlyArray<readonly string[]>,
  leftColumns = 1,
): string {
  const line = (cells: readonly string[]): string => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  const align = header.map((_, i) => (i < leftColumns ? '---' : '---:'));
  return [line(header), `|${align.map((a) => ` ${a} `).join('|')}|`, ...rows.map(line)].join('\n');
}

/** The columns of a frames table, the same on the console (bench:frames) and in BENCHMARKS.md. */
export const FRAMES_COLUMNS: readonly string[] = [
  'agent',
  'frames/s',
  '× ceiling',
  'p50 µs',
  'p99 µs',
  'p99.9 µs',
  'p99 × ceiling',
  'agent µs/frame',
  'agent cores',
  'generator CPU',
  'other cores',
];

/** One agent's row of a frames table ({@link FRAMES_COLUMNS}). */
export function framesRow(s: FramesSummary): string[] {
  const limited = s.generatorLimitedRounds > 0 ? ` (limit in ${s.generatorLimitedRounds}/${s.rounds})` : '';
  return [
    s.agent,
    int(s.framesPerSecond),
    fixed(2)(s.framesPerSecondVsCeiling),
    int(s.p50Us),
    int(s.p99Us),
    int(s.p999Us),
    fixed(2)(s.p99VsCeiling),
    fixed(2)(s.agentCpuUsPerFrame),
    fixed(2)(s.agentCores),
    `${fixed(0)(s.generatorCpuPercent)}%${limited}`,
    fixed(2)(s.otherCores),
  ];
}
