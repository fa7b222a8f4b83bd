/**
 * wrk (Debian's package), the HTTP load tool of `npm run bench:haproxy`: written in C, it costs far less CPU per
 * request than a Node load tool would, CPU the 2-core machine also needs for HAProxy and the agent.
 *
 * wrk is closed-loop: each connection sends its next request when the previous answer arrives. Latencies are those of
 * the requests sent (no coordinated-omission correction), and at saturation they follow from the rate (Little's law:
 * latency ≈ connections / rate).
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { onCpu } from '../support/cpus';
import { reapedChildrenCpuSeconds, runTool } from '../support/processes';

const REPORT_SCRIPT = join(__dirname, 'wrk-report.lua');

export interface WrkErrors {
  readonly connect: number;
  readonly read: number;
  readonly write: number;
  /** Responses whose status was not 2xx or 3xx. */
  readonly status: number;
  readonly timeout: number;
}

/** The BENCH-JSON line of wrk-report.lua. */
interface WrkReport {
  readonly requests: number;
  readonly durationUs: number;
  readonly bytes: number;
  readonly errors: WrkErrors;
  readonly latencyUs: {
    readonly min: number;
    readonly mean: number;
    readonly max: number;
    readonly p50: number;
    readonly p75: number;
    readonly p90: number;
    readonly p99: number;
    readonly p999: number;
  };
}

export interface WrkResult extends WrkReport {
  readonly requestsPerSecond: number;
  /** wrk's own CPU seconds (user + system) over the run. */
  readonly cpuSeconds: number;
}

export interface WrkRun {
  readonly url: string;
  readonly connections: number;
  readonly threads: number;
  readonly durationS: number;
  /** The CPU to run on (see cpus.ts); by default wherever the scheduler puts it. */
  readonly cpu?: number;
}

function onPath(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Installs wrk with apt-get when it is missing (progress on stderr); throws a clear message when it cannot. */
export function ensureWrk(): void {
  if (onPath('wrk')) return;
  if (!onPath('apt-get'))
    throw new Error(
      'wrk is not installed and apt-get is not available: install wrk (https://github.com/wg/wrk) and put it on PATH',
    );
  console.error('bench:haproxy: wrk is missing, installing it: apt-get install -y wrk');
  const install = (): void => {
    execFileSync('apt-get', ['install', '-y', 'wrk'], {
      stdio: ['ignore', 2, 2],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  };
  try {
    install();
  } catch {
    try {
      // A fresh machine may have no package lists yet.
      execFileSync('apt-get', ['update'], { stdio: ['ignore', 2, 2] });
      install();
    } catch (error) {
      throw new Error(
        `wrk is not installed and "apt-get install -y wrk" failed (see above; it needs root): install wrk and run again`,
        { cause: error },
      );
    }
  }
  if (!onPath('wrk')) throw new Error('apt-get installed wrk, but wrk is still not on PATH');
}

/** `wrk -v`'s first line, e.g. "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer". */
export function wrkVersion(): string {
  try {
    return execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]
      .trim();
  } catch (error) {
    // Some builds print the version and exit non-zero.
    const stdout = (error as { stdout?: string }).stdout;
    return stdout?.split('\n')[0].trim() || 'unknown';
  }
}

/** Runs wrk once against `url`; rejects when it fails or prints no report (its errors are counted, not thrown). */
export async function runWrk(run: WrkRun): Promise<WrkResult> {
  const args = [
    '-t',
    String(run.threads),
    '-c',
    String(run.connections),
    '-d',
    `${run.durationS}s`,
    '--timeout',
    '2s',
    '-s',
    REPORT_SCRIPT,
    run.url,
  ];
  const cpuBefore = reapedChildrenCpuSeconds();
  // A hung wrk must not hang the bench.
  const { code, signal, stdout, stderr } = await runTool(...onCpu(run.cpu, 'wrk', args), (run.durationS + 15) * 1000);
  // wrk has been reaped: its CPU is now in our cutime/cstime.
  const cpuSeconds = reapedChildrenCpuSeconds() - cpuBefore;
  const line = /^BENCH-JSON (.*)$/m.exec(stdout);
  if (code !== 0 || !line)
    throw new Error(
      `wrk ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${(stderr || stdout).trim() || 'no output'}`,
    );
  const report = JSON.parse(line[1]) as WrkReport;
  return { ...report, requestsPerSecond: report.requests / (report.durationUs / 1e6), cpuSeconds };
}

export function errorCount(errors: WrkErrors): number {
  return errors.connect + errors.read + errors.write + errors.status + errors.timeout;
}

export function describeErrors(errors: WrkErrors): string {
  const parts = Object.entries(errors)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => (kind === 'status' ? `${n} non-2xx/3xx responses` : `${n} socket ${kind} errors`));
  return parts.join(', ');
}
