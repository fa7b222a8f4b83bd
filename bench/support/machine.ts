/** What the machine was, for every results file: numbers mean little without it. */
import * as os from 'node:os';

export interface MachineFacts {
  readonly cpuModel: string;
  readonly cpuCount: number;
  /** Total RAM, bytes. */
  readonly memoryBytes: number;
  readonly node: string;
  readonly v8: string;
  /** Kernel: type, release, architecture. */
  readonly os: string;
  /** 1, 5 and 15-minute load averages when the bench started: a busy machine shows here first. */
  readonly loadAverageAtStart: number[];
  readonly date: string;
}

export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    memoryBytes: os.totalmem(),
    node: process.version,
    v8: process.versions.v8,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverageAtStart: os.loadavg(),
    date: new Date().toISOString(),
  };
}

/** The facts with the load average at the end added, as written to a results file. */
export function withLoadAtEnd<T extends MachineFacts>(facts: T): T & { readonly loadAverageAtEnd: number[] } {
  return { ...facts, loadAverageAtEnd: os.loadavg() };
}
