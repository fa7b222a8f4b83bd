/*
 * The IPC protocol between the supervisor (the cluster primary) and its workers, over Node's IPC channel (JSON: no
 * undefined, no class instances — absent values are null). A worker's request carries an id that the answer repeats;
 * a blocklist change carries an id that each worker's acknowledgement repeats.
 */

/** A blocklist entry on the wire (times in epoch ms). */
export interface WireBlocklistEntry {
  readonly cidr: string;
  readonly reason: string | null;
  readonly addedAt: number;
  readonly expiresAt: number | null;
}

/** A change of the supervisor's blocklist, which every worker applies to its replica before the write returns. */
export type BlocklistChange =
  { readonly op: 'set'; readonly entry: WireBlocklistEntry } | { readonly op: 'delete'; readonly cidr: string };

/** A worker as the supervisor sees it; `restarting`: its replacement waits for the crash-loop back-off. */
export type WorkerState = 'starting' | 'ready' | 'stopping' | 'restarting';

/** One worker slot of the supervisor. */
export interface WorkerView {
  /** Null while the replacement waits for its back-off. */
  readonly pid: number | null;
  readonly state: WorkerState;
  /**
   * Until the replacement is ready: the worker it replaces and how that one ended ("signal SIGKILL", "exit code 1").
   */
  readonly replacing?: { readonly pid: number; readonly exit: string };
}

/** The supervisor's view of its workers, for readiness. */
export interface WorkersStatus {
  readonly expected: number;
  readonly ready: number;
  /** The supervisor got SIGTERM or SIGINT: it replaces no worker and waits for all to exit. */
  readonly stopping: boolean;
  readonly workers: readonly WorkerView[];
}

/** What a worker asks the supervisor. */
export type SupervisorRequest =
  | { readonly kind: 'workers' }
  /** From now on, send me every blocklist change; answer with the current entries. */
  | { readonly kind: 'blocklist-subscribe' }
  | {
      readonly kind: 'blocklist-add';
      readonly cidr: string;
      readonly reason: string | null;
      readonly ttlSeconds: number | null;
    }
  | { readonly kind: 'blocklist-remove'; readonly cidr: string };

/** The answer to each kind of {@link SupervisorRequest}. */
export interface SupervisorAnswers {
  workers: WorkersStatus;
  'blocklist-subscribe': WireBlocklistEntry[];
  'blocklist-add': WireBlocklistEntry;
  /** Whether a live entry was removed. */
  'blocklist-remove': boolean;
}

/** Worker → supervisor. */
export type WorkerMessage =
  /** The app serves (startWorker resolved). */
  | { readonly type: 'ready' }
  | { readonly type: 'start-failed'; readonly reason: string }
  /** Its graceful shutdown began (the supervisor's stop, or a signal sent to the worker itself). */
  | { readonly type: 'stopping' }
  | { readonly type: 'request'; readonly id: number; readonly request: SupervisorRequest }
  /** The blocklist change `id` is applied to this worker's replica. */
  | { readonly type: 'applied'; readonly id: number };

/** Supervisor → worker. */
export type SupervisorMessage =
  | {
      readonly type: 'answer';
      readonly id: number;
      readonly ok: true;
      readonly value: SupervisorAnswers[keyof SupervisorAnswers];
    }
  | { readonly type: 'answer'; readonly id: number; readonly ok: false; readonly error: string }
  | { readonly type: 'blocklist-change'; readonly id: number; readonly change: BlocklistChange }
  /** Begin the graceful shutdown (the supervisor got `signal`). */
  | { readonly type: 'stop'; readonly signal: string }
  /** Skip the rest of the grace period (the supervisor got a second signal). */
  | { readonly type: 'hurry'; readonly signal: string }
  /** Read the TLS files again (the supervisor got SIGHUP). */
  | { readonly type: 'reload'; readonly signal: string };

const WORKER_MESSAGES: ReadonlySet<string> = new Set<WorkerMessage['type']>([
  'ready',
  'start-failed',
  'stopping',
  'request',
  'applied',
]);
const SUPERVISOR_MESSAGES: ReadonlySet<string> = new Set<SupervisorMessage['type']>([
  'answer',
  'blocklist-change',
  'stop',
  'hurry',
  'reload',
]);

/** Whether an IPC message is one of ours from a worker (anything else on the channel is ignored). */
export function isWorkerMessage(message: unknown): message is WorkerMessage {
  return hasType(message, WORKER_MESSAGES);
}

/** Whether an IPC message is one of ours from the supervisor. */
export function isSupervisorMessage(message: unknown): message is SupervisorMessage {
  return hasType(message, SUPERVISOR_MESSAGES);
}

function hasType(message: unknown, types: ReadonlySet<string>): boolean {
  if (typeof message !== 'object' || message === null) return false;
  const type = (message as { type?: unknown }).type;
  return typeof type === 'string' && types.has(type);
}
