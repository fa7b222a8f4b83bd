import type { ChildProcess } from 'node:child_process';

/** What bench/memory/probe.js reports of the agent's memory (process.memoryUsage(), bytes). */
export interface MemoryUsage {
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

/** One GC the agent went through, as its PerformanceObserver saw it. */
export interface GcEvent {
  /** Start, epoch ms (the bench's clock: same machine). */
  readonly at: number;
  /** V8's GCType: 1 scavenge, 2 minor mark-sweep, 4 mark-sweep-compact, 8 incremental marking, 16 weak callbacks. */
  readonly kind: number;
  readonly flags: number;
  readonly durationMs: number;
  /** Caused by the bench (global.gc()): never counted as a pause of the agent. */
  readonly forced: boolean;
}

export interface ProbeAnswer {
  /** When the agent answered, epoch ms. */
  readonly at: number;
  readonly memory: MemoryUsage;
  /** GC events since the previous answer. */
  readonly gcEvents: readonly GcEvent[];
  /** Whether global.gc() exists in the agent (started with --expose-gc). */
  readonly gcExposed: boolean;
}

interface Waiting {
  resolve(answer: ProbeAnswer): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** Under full load the agent answers between two batches of frames: far below this, unless it is stuck. */
const ANSWER_TIMEOUT_MS = 10_000;

/** The bench's side of the probe: requests over the agent's IPC channel, answers matched by id. */
export class ProbeClient {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();

  constructor(private readonly child: ChildProcess) {
    child.on('message', (message: unknown) => this.onMessage(message));
    child.once('exit', () => this.failAll(new Error('the agent exited before the probe answered')));
  }

  /** Memory now and the GC events since the last call; with `forceGc`, after two full collections. */
  stats(forceGc = false): Promise<ProbeAnswer> {
    const id = this.nextId++;
    return new Promise<ProbeAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`the probe did not answer within ${ANSWER_TIMEOUT_MS} ms`));
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(id, { resolve, reject, timer });
      this.child.send({ probe: 'stats', id, forceGc }, (error) => {
        if (error) this.settle(id, error);
      });
    });
  }

  private onMessage(message: unknown): void {
    if (!isAnswer(message)) return;
    const { id, ...answer } = message;
    this.settle(id, answer);
  }

  private settle(id: number, outcome: ProbeAnswer | Error): void {
    const waiting = this.waiting.get(id);
    if (!waiting) return;
    this.waiting.delete(id);
    clearTimeout(waiting.timer);
    if (outcome instanceof Error) waiting.reject(outcome);
    else waiting.resolve(outcome);
  }

  private failAll(error: Error): void {
    for (const id of [...this.waiting.keys()]) this.settle(id, error);
  }
}

function isAnswer(message: unknown): message is ProbeAnswer & { id: number } {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Record<string, unknown>;
  return m.probe === 'stats' && typeof m.id === 'number' && typeof m.memory === 'object' && Array.isArray(m.gcEvents);
}
