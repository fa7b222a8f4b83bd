/**
 * An SPOE agent in a child process of its own, for tests that measure the agent: its connections, its open handles and
 * its heap after a full collection, read over IPC, with none of Jest's own heap, sockets and timers in the figures. The
 * child is a script that calls {@link serveForked} with its app ({@link startAgent} there); the test starts it with
 * {@link forkAgent} and kills it by its PID.
 */
import { ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import type { DynamicModule, ModuleMetadata, Type } from '@nestjs/common';
import type { SpoeServerOptions } from 'nestjs-spoe';
import { startAgent } from './agent';
import { trackForCleanup } from './cleanup';

/** What the forked agent reports of itself. */
export interface AgentProbe {
  /** `SpoeServer.stats`. */
  readonly connections: number;
  readonly inFlight: number;
  readonly inFlightBytes: number;
  /** `process.getActiveResourcesInfo()`, counted by kind: TCPSocketWrap, Timeout, TCPServerWrap… */
  readonly resources: Readonly<Record<string, number>>;
  /** `process.memoryUsage()`, in bytes; after two full collections when probed with `gc`. */
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** What the script counts itself (handler calls…), see {@link serveForked}. */
  readonly counters: Readonly<Record<string, number>>;
}

interface ProbeRequest {
  readonly probe: number;
  readonly gc: boolean;
}

type ChildMessage = { readonly ready: number } | { readonly answer: number; readonly probe: AgentProbe };

const REPO_ROOT = join(__dirname, '..', '..');
/** Compiling Nest and the library on the fly takes a few seconds; a slow, shared machine gets many more. */
const START_TIMEOUT_MS = 60_000;
const PROBE_TIMEOUT_MS = 10_000;
/** The last lines the child printed, for the error when it fails. */
const OUTPUT_LINES = 50;

/** A forked agent, as the test sees it. */
export class ForkedAgent {
  port = 0;
  private nextProbe = 1;
  private readonly waiting = new Map<number, (probe: AgentProbe | Error) => void>();
  private readonly output: string[] = [];
  private exit: string | undefined;
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    const collect = (chunk: Buffer): void => {
      this.output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      this.output.splice(0, Math.max(0, this.output.length - OUTPUT_LINES));
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    child.on('message', (message: ChildMessage) => {
      if ('answer' in message) this.waiting.get(message.answer)?.(message.probe);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = signal ?? `code ${code}`;
        const error = new Error(`the forked agent exited (${this.exit}):\n${this.output.join('\n')}`);
        for (const settle of this.waiting.values()) settle(error);
        resolve();
      }),
    );
  }

  /** The child's PID: what it is killed by. */
  get pid(): number {
    return this.child.pid!;
  }

  /** Undefined while the agent runs; how it exited otherwise (a crash shows here). */
  get exitStatus(): string | undefined {
    return this.exit;
  }

  /** Starts `script` (a path from the repository root) with --expose-gc; resolves once its agent listens. */
  static async fork(script: string): Promise<ForkedAgent> {
    const child = fork(join(REPO_ROOT, script), [], {
      cwd: REPO_ROOT,
      execArgv: ['--expose-gc', '-r', '@swc-node/register'],
      env: { ...process.env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const agent = new ForkedAgent(child);
    const untrack = trackForCleanup({ kill: () => agent.kill(), stop: () => agent.stop() });
    void agent.exited.then(untrack);
    try {
      agent.port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`the forked agent did not listen within ${START_TIMEOUT_MS} ms`)),
          START_TIMEOUT_MS,
        );
        child.on('message', (message: ChildMessage) => {
          if (!('ready' in message)) return;
          clearTimeout(timer);
          resolve(message.ready);
        });
        void agent.exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`the forked agent exited before listening:\n${agent.output.join('\n')}`));
        });
      });
    } catch (error) {
      await agent.stop();
      throw error;
    }
    return agent;
  }

  /** The agent's figures now; with `gc`, after two full collections (the second frees what the first's finalizers let go). */
  probe(gc = true): Promise<AgentProbe> {
    if (this.exit !== undefined) return Promise.reject(new Error(`the forked agent exited (${this.exit})`));
    const id = this.nextProbe++;
    return new Promise<AgentProbe>((resolve, reject) => {
      const timer = setTimeout(
        () => settle(new Error(`no probe answer within ${PROBE_TIMEOUT_MS} ms`)),
        PROBE_TIMEOUT_MS,
      );
      const settle = (answer: AgentProbe | Error): void => {
        clearTimeout(timer);
        this.waiting.delete(id);
        if (answer instanceof Error) reject(answer);
        else resolve(answer);
      };
      this.waiting.set(id, settle);
      const request: ProbeRequest = { probe: id, gc };
      this.child.send(request);
    });
  }

  /** SIGKILL by PID, and the exit awaited. */
  async stop(): Promise<void> {
    this.kill();
    await this.exited;
  }

  private kill(): void {
    if (this.exit !== undefined) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Starts a forked agent: see {@link ForkedAgent.fork}. */
export const forkAgent = (script: string): Promise<ForkedAgent> => ForkedAgent.fork(script);

/**
 * The child's side: starts `app` with {@link startAgent} (on 127.0.0.1, a free port), tells the parent its port and
 * answers its probes, with `counters()` in each answer. Exits when the parent goes away, so that it never outlives the
 * test run.
 */
export async function serveForked(
  app: ModuleMetadata | Type<unknown> | DynamicModule,
  serverOptions: SpoeServerOptions,
  counters: () => Record<string, number> = () => ({}),
): Promise<void> {
  const send = process.send?.bind(process);
  if (!send) throw new Error('serveForked runs in a process forked with an IPC channel (forkAgent)');
  process.on('disconnect', () => process.exit(0));
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('serveForked needs --expose-gc');
  const agent = await startAgent(app, serverOptions);
  process.on('message', (request: ProbeRequest) => {
    if (typeof request?.probe !== 'number') return;
    if (request.gc) {
      gc();
      gc();
    }
    const resources: Record<string, number> = {};
    for (const kind of process.getActiveResourcesInfo()) resources[kind] = (resources[kind] ?? 0) + 1;
    const { heapUsed, external, arrayBuffers } = process.memoryUsage();
    const probe: AgentProbe = {
      ...agent.server.stats,
      resources,
      heapUsed,
      external,
      arrayBuffers,
      counters: counters(),
    };
    send({ answer: request.probe, probe });
  });
  send({ ready: agent.port });
}
