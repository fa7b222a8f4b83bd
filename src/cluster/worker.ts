import { Logger } from '@nestjs/common';
import {
  BlocklistChange,
  isSupervisorMessage,
  SupervisorAnswers,
  SupervisorMessage,
  SupervisorRequest,
  WorkerMessage,
} from './messages';

/** What a worker runs: the app, with the same shutdown sequence as a single agent process. */
export interface SupervisedApp {
  /** The graceful shutdown (readiness down, grace period, drain); resolves once the app is closed. */
  shutdown(signal: string): Promise<void>;
  /** Ends the grace period now. */
  hurry(): void;
  /** Reads the TLS certificates again for new connections (SIGHUP). */
  reloadTls(signal: string): void;
}

interface Pending {
  readonly kind: SupervisorRequest['kind'];
  resolve(value: SupervisorAnswers[keyof SupervisorAnswers]): void;
  reject(error: Error): void;
  readonly timer: NodeJS.Timeout;
}

/**
 * A worker's side of the IPC channel to its supervisor: requests (each bounded by a timeout) and the blocklist
 * changes the supervisor broadcasts, acknowledged once the listener has applied them. Injected into the worker's app.
 */
export class SupervisorLink {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private blocklistListener: ((change: BlocklistChange) => void) | undefined;

  /** @internal Built by {@link runWorker}, which handles `stop`, `hurry` and `reload`. */
  constructor(
    private readonly control: { stop(signal: string): void; hurry(signal: string): void; reload(signal: string): void },
  ) {
    process.on('message', (message: unknown) => {
      if (isSupervisorMessage(message)) this.onMessage(message);
    });
  }

  /** Asks the supervisor; rejects when it does not answer within `timeoutMs` or answers with an error. */
  request<R extends SupervisorRequest>(request: R, timeoutMs: number): Promise<SupervisorAnswers[R['kind']]> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the supervisor did not answer "${request.kind}" within ${timeoutMs} ms`));
      }, timeoutMs);
      // The answer to a request of kind K is SupervisorAnswers[K]: the supervisor's handler is typed so.
      this.pending.set(id, { kind: request.kind, resolve: resolve as Pending['resolve'], reject, timer });
      this.send({ type: 'request', id, request }).catch((error: Error) => this.settle(id, error));
    });
  }

  /** Receives every blocklist change after a `blocklist-subscribe`; the supervisor hears of it once it returns. */
  onBlocklistChange(listener: (change: BlocklistChange) => void): void {
    this.blocklistListener = listener;
  }

  /** @internal */
  send(message: WorkerMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!process.send || !process.connected) return reject(new Error('not connected to the supervisor'));
      process.send(message, undefined, {}, (error: Error | null) => (error ? reject(error) : resolve()));
    });
  }

  private onMessage(message: SupervisorMessage): void {
    switch (message.type) {
      case 'answer':
        this.settle(
          message.id,
          message.ok ? undefined : new Error(message.error),
          message.ok ? message.value : undefined,
        );
        return;
      case 'blocklist-change':
        this.blocklistListener?.(message.change);
        this.send({ type: 'applied', id: message.id }).catch(() => undefined);
        return;
      case 'stop':
        this.control.stop(message.signal);
        return;
      case 'hurry':
        this.control.hurry(message.signal);
        return;
      case 'reload':
        this.control.reload(message.signal);
        return;
    }
  }

  private settle(id: number, error: Error | undefined, value?: SupervisorAnswers[keyof SupervisorAnswers]): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (error) pending.reject(new Error(`supervisor: ${pending.kind}: ${error.message}`, { cause: error }));
    else pending.resolve(value!);
  }
}

/**
 * The worker side of {@link superviseWorkers}: starts the app, reports it ready (or why it could not start), and runs
 * its graceful shutdown when the supervisor says so. Owns the process: it exits 0 after a clean shutdown, 1 otherwise.
 *
 * Signals sent to the worker itself begin the same graceful shutdown but never count as a second signal: Ctrl-C
 * reaches every process of the terminal's group and systemd signals the whole cgroup, so each worker gets the
 * supervisor's `stop` as well as the signal; only the supervisor, which sees each signal once, says `hurry`.
 *
 * SIGHUP, from the supervisor (`reload`) or sent to the worker itself, reloads the TLS certificates — never Node's
 * default, which is to exit. One that comes while the app starts is applied once it serves: the files may have been
 * read before they were replaced.
 */
export async function runWorker(startWorker: (supervisor: SupervisorLink) => Promise<SupervisedApp>): Promise<void> {
  const log = new Logger('Worker');
  let app: SupervisedApp | undefined;
  let stopSignal: string | undefined;
  let hurried = false;
  let reloadSignal: string | undefined;

  const shutDown = (started: SupervisedApp, signal: string): void => {
    started.shutdown(signal).then(
      () => process.exit(0),
      (error: Error) => {
        log.error(`shutdown failed: ${error.message}`, error.stack);
        process.exit(1);
      },
    );
    if (hurried) started.hurry();
  };
  const stop = (signal: string): void => {
    if (stopSignal !== undefined) return;
    stopSignal = signal;
    link.send({ type: 'stopping' }).catch(() => undefined);
    if (app) shutDown(app, signal);
  };
  const reload = (signal: string): void => {
    if (app) app.reloadTls(signal);
    else reloadSignal = signal;
  };
  const link = new SupervisorLink({
    stop,
    hurry: () => {
      hurried = true;
      app?.hurry();
    },
    reload,
  });
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', reload);

  try {
    app = await startWorker(link);
  } catch (error) {
    log.debug(`startup failed: ${(error as Error).stack}`);
    await link.send({ type: 'start-failed', reason: (error as Error).message }).catch(() => undefined);
    process.exit(1);
  }
  // Told to stop while starting: never ready, straight to the shutdown.
  if (stopSignal !== undefined) return shutDown(app, stopSignal);
  if (reloadSignal !== undefined) app.reloadTls(reloadSignal);
  await link.send({ type: 'ready' });
}
