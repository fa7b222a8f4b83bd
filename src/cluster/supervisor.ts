import { Logger } from '@nestjs/common';
import cluster, { Worker } from 'node:cluster';
import { AGENT_LIMITS } from '../config/agent.config';
import { Cidr } from '../reputation/cidr';
import { entryToWire } from '../reputation/cluster-blocklist.store';
import { MemoryBlocklistStore } from '../reputation/memory-blocklist.store';
import {
  BlocklistChange,
  isWorkerMessage,
  SupervisorAnswers,
  SupervisorMessage,
  SupervisorRequest,
  WorkerMessage,
  WorkersStatus,
  WorkerState,
} from './messages';
import { runWorker, SupervisedApp, SupervisorLink } from './worker';

/** Options of {@link superviseWorkers}. */
export interface SuperviseOptions {
  /** How many worker processes to keep running (≥ 1). */
  readonly workers: number;
  /** Runs in each worker: starts the app and resolves once it serves. Its rejection is the worker's startup failure. */
  readonly startWorker: (supervisor: SupervisorLink) => Promise<SupervisedApp>;
  /**
   * Default entries of a blocklist that the supervisor holds and every worker replicates (ClusterBlocklistStore).
   * Undefined: the supervisor holds none (e.g. the workers share Redis).
   */
  readonly blocklist?: readonly Cidr[];
}

/** A worker that dies sooner than this after its start is crash-looping: its replacement waits. */
const QUICK_DEATH_MS = 5000;
/** Back-off of a crash-looping slot: 1 s, 2 s, 4 s… capped at 30 s. */
const BACKOFF_MS = 1000;
const BACKOFF_MAX_MS = 30_000;

/**
 * Runs `options.workers` copies of an app on the same ports with node:cluster, and returns once the process runs as
 * what it is: in the primary, the supervisor below; in a worker (this same script, forked by it), `startWorker` under
 * the supervisor's control ({@link runWorker}). Either way the process exits by itself when it is done.
 *
 * The supervisor is not a Nest app. It forks the first worker alone, then the others once it serves: the first one
 * binds the shared listening sockets (a stale Unix socket file is removed by one worker, not raced by N), and a
 * configuration that cannot work (a port taken, Redis unreachable) fails once — the supervisor then exits 1 with the
 * reason, as a single process would. A worker that dies is replaced, at once or, when it died
 * within {@link QUICK_DEATH_MS} of its start, after a back-off; never during shutdown. SIGTERM or SIGINT is forwarded
 * to every worker as `stop` (each runs its graceful shutdown), a second one as `hurry`; the supervisor exits 0 once
 * all have exited cleanly, 1 otherwise. SIGHUP is passed on as `reload`: each worker reads its TLS files again. It answers the workers' readiness question (are all N ready?) and, with
 * `blocklist`, holds the authoritative blocklist: a write returns once every worker has applied it.
 */
export async function superviseWorkers(options: SuperviseOptions): Promise<void> {
  if (!Number.isInteger(options.workers) || options.workers < 1)
    throw new RangeError(`workers must be an integer ≥ 1, got ${options.workers}`);
  if (cluster.isWorker) return runWorker(options.startWorker);
  new Supervisor(options).start();
}

interface Slot {
  worker: Worker | undefined;
  state: WorkerState;
  startedAt: number;
  /** Why the current worker could not start, as it reported. */
  startFailure: string | undefined;
  /** Consecutive deaths within QUICK_DEATH_MS of the start. */
  quickDeaths: number;
  restartTimer: NodeJS.Timeout | undefined;
  replacing: { pid: number; exit: string } | undefined;
}

interface PendingChange {
  readonly waiting: Set<Worker>;
  readonly done: () => void;
}

class Supervisor {
  private readonly log = new Logger('Supervisor');
  private readonly slots: Slot[];
  private readonly blocklist: MemoryBlocklistStore | undefined;
  /** Workers that asked for blocklist changes (`blocklist-subscribe`). */
  private readonly subscribers = new Set<Worker>();
  private readonly pendingChanges = new Map<number, PendingChange>();
  private nextChangeId = 1;
  private everReady = false;
  private announced = false;
  private stopping: string | undefined;
  private failedShutdown = false;

  constructor(options: SuperviseOptions) {
    this.slots = Array.from({ length: options.workers }, () => ({
      worker: undefined,
      state: 'restarting',
      startedAt: 0,
      startFailure: undefined,
      quickDeaths: 0,
      restartTimer: undefined,
      replacing: undefined,
    }));
    this.blocklist = options.blocklist && new MemoryBlocklistStore(options.blocklist);
  }

  start(): void {
    // Round-robin (the default except on Windows, but NODE_CLUSTER_SCHED_POLICY could change it): the primary accepts
    // and hands connections out in turn, so long-lived SPOP connections spread evenly over the workers.
    cluster.schedulingPolicy = cluster.SCHED_RR;
    process.on('SIGTERM', (signal) => this.stop(signal));
    process.on('SIGINT', (signal) => this.stop(signal));
    process.on('SIGHUP', (signal) => this.reload(signal));
    this.fork(this.slots[0]);
  }

  private fork(slot: Slot): void {
    const worker = cluster.fork();
    Object.assign(slot, {
      worker,
      state: 'starting',
      startedAt: Date.now(),
      startFailure: undefined,
      restartTimer: undefined,
    });
    worker.on('message', (message: unknown) => {
      if (isWorkerMessage(message)) this.onMessage(slot, worker, message);
    });
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) =>
      this.onExit(slot, worker, signal ? `signal ${signal}` : `exit code ${code}`, code === 0),
    );
  }

  private onMessage(slot: Slot, worker: Worker, message: WorkerMessage): void {
    switch (message.type) {
      case 'ready':
        if (slot.worker !== worker || this.stopping) return;
        slot.state = 'ready';
        slot.replacing = undefined;
        if (!this.everReady) {
          this.everReady = true;
          for (const other of this.slots) if (!other.worker) this.fork(other);
        }
        if (!this.announced && this.slots.every((s) => s.state === 'ready')) {
          this.announced = true;
          this.log.log(
            `${this.slots.length} workers ready: pids ${this.slots.map((s) => s.worker!.process.pid).join(', ')}`,
          );
        }
        return;
      case 'start-failed':
        slot.startFailure = message.reason;
        return;
      case 'stopping':
        if (slot.worker === worker) slot.state = 'stopping';
        return;
      case 'request':
        this.answer(worker, message.id, message.request);
        return;
      case 'applied':
        this.acknowledge(message.id, worker);
        return;
    }
  }

  private onExit(slot: Slot, worker: Worker, exit: string, clean: boolean): void {
    this.subscribers.delete(worker);
    for (const id of this.pendingChanges.keys()) this.acknowledge(id, worker);
    if (slot.worker !== worker) return;
    const pid = worker.process.pid!;
    const wasStarting = slot.state === 'starting';
    slot.worker = undefined;
    slot.state = 'restarting';

    if (this.stopping) {
      if (!clean) {
        this.failedShutdown = true;
        this.log.error(`worker ${pid} failed its shutdown (${exit})`);
      }
      if (this.slots.every((s) => !s.worker)) this.exit();
      return;
    }
    if (!this.everReady) {
      this.log.error(`no worker could start: ${slot.startFailure ?? `worker ${pid} ended (${exit})`}`);
      process.exit(1);
    }

    const uptime = Date.now() - slot.startedAt;
    slot.quickDeaths = uptime < QUICK_DEATH_MS ? slot.quickDeaths + 1 : 0;
    const delay = slot.quickDeaths > 0 ? Math.min(BACKOFF_MS * 2 ** (slot.quickDeaths - 1), BACKOFF_MAX_MS) : 0;
    slot.replacing = { pid, exit };
    const what = wasStarting
      ? `could not start (${slot.startFailure ?? exit})`
      : `${clean ? 'exited' : 'died'} (${exit})`;
    const when = delay > 0 ? ` in ${delay / 1000} s (it ran for ${(uptime / 1000).toFixed(1)} s)` : '';
    this.log.warn(`worker ${pid} ${what}; starting a replacement${when}`);
    if (delay === 0) this.fork(slot);
    else slot.restartTimer = setTimeout(() => this.fork(slot), delay);
  }

  private stop(signal: NodeJS.Signals): void {
    const live = this.slots.filter((s) => s.worker);
    if (this.stopping) {
      this.log.log(`${signal} again: the workers skip the rest of their grace period`);
      for (const slot of live) this.send(slot.worker!, { type: 'hurry', signal });
      return;
    }
    this.stopping = signal;
    this.log.log(`${signal}: stopping ${live.length} workers`);
    for (const slot of this.slots) {
      clearTimeout(slot.restartTimer);
      if (!slot.worker) continue;
      slot.state = 'stopping';
      this.send(slot.worker, { type: 'stop', signal });
    }
    if (live.length === 0) this.exit();
  }

  /** Every worker, starting ones included, reloads; one forked later reads the files as they are then. */
  private reload(signal: NodeJS.Signals): void {
    const live = this.slots.filter((s) => s.worker);
    this.log.log(`${signal}: the ${live.length} workers reload their TLS certificates`);
    for (const slot of live) this.send(slot.worker!, { type: 'reload', signal });
  }

  private exit(): never {
    if (this.failedShutdown) {
      this.log.error('every worker has exited; one failed its shutdown');
      process.exit(1);
    }
    this.log.log('every worker has exited');
    process.exit(0);
  }

  private status(): WorkersStatus {
    return {
      expected: this.slots.length,
      ready: this.slots.filter((s) => s.state === 'ready').length,
      stopping: this.stopping !== undefined,
      workers: this.slots.map((s) => ({
        pid: s.worker?.process.pid ?? null,
        state: s.state,
        ...(s.replacing && { replacing: s.replacing }),
      })),
    };
  }

  private answer(worker: Worker, id: number, request: SupervisorRequest): void {
    this.handle(worker, request).then(
      (value) => this.send(worker, { type: 'answer', id, ok: true, value }),
      (error: Error) => this.send(worker, { type: 'answer', id, ok: false, error: error.message }),
    );
  }

  private async handle(
    worker: Worker,
    request: SupervisorRequest,
  ): Promise<SupervisorAnswers[keyof SupervisorAnswers]> {
    if (request.kind === 'workers') return this.status();
    const blocklist = this.blocklist;
    if (!blocklist) throw new Error('this supervisor holds no blocklist');
    switch (request.kind) {
      case 'blocklist-subscribe':
        this.subscribers.add(worker);
        return (await blocklist.list()).map(entryToWire);
      case 'blocklist-add': {
        const entry = await blocklist.add({
          cidr: Cidr.parse(request.cidr),
          ...(request.reason !== null && { reason: request.reason }),
          ...(request.ttlSeconds !== null && { ttlSeconds: request.ttlSeconds }),
        });
        await this.broadcast({ op: 'set', entry: entryToWire(entry) });
        return entryToWire(entry);
      }
      case 'blocklist-remove': {
        const cidr = Cidr.parse(request.cidr);
        const removed = await blocklist.remove(cidr);
        if (removed) await this.broadcast({ op: 'delete', cidr: cidr.toString() });
        return removed;
      }
    }
  }

  /** Sends the change to every subscribed worker; resolves once each applied it, died, or after a timeout. */
  private broadcast(change: BlocklistChange): Promise<void> {
    const id = this.nextChangeId++;
    const waiting = new Set([...this.subscribers].filter((w) => w.isConnected()));
    for (const worker of waiting) this.send(worker, { type: 'blocklist-change', id, change });
    if (waiting.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const late = [...waiting].map((w) => w.process.pid).join(', ');
        this.log.warn(
          `blocklist change ${id}: worker(s) ${late} did not acknowledge it within ${AGENT_LIMITS.propagationTimeoutMs} ms`,
        );
        done();
      }, AGENT_LIMITS.propagationTimeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.pendingChanges.delete(id);
        resolve();
      };
      this.pendingChanges.set(id, { waiting, done });
    });
  }

  private acknowledge(id: number, worker: Worker): void {
    const pending = this.pendingChanges.get(id);
    if (!pending) return;
    pending.waiting.delete(worker);
    if (pending.waiting.size === 0) pending.done();
  }

  /** A worker that is gone cannot be told anything: its exit is handled by onExit. */
  private send(worker: Worker, message: SupervisorMessage): void {
    if (worker.isConnected()) worker.send(message, undefined, () => undefined);
  }
}
