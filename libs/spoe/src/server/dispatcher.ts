import { Logger } from '@nestjs/common';
import { isObservable, Subscription } from 'rxjs';
import { isSpoeAction } from '../actions/set-var';
import { ActionType, SpoeAction } from '../protocol/ack';
import { SpopId } from '../protocol/frame';
import { SpoeMessage } from '../protocol/notify';
import { SpoeValue } from '../protocol/typed-data';
import { DeadlineQueue, Expirable } from './deadline-queue';
import { SpoeConnectionInfo, SpoeContext } from './spoe.context';
import { SpoeErrorVariable } from './spoe.options';

/** A handler as Nest registers it: `(payload, context)` → a value, a Promise or an Observable. */
export type SpoeHandler = (payload: SpoePayload, context: SpoeContext) => unknown;

/** `@Payload()` of an SPOE handler: arguments by name (the first one wins for a repeated name). */
export type SpoePayload = Record<string, SpoeValue>;

/** The handlers bound to one message name. */
export interface SpoeRoute {
  /** The `@MessagePattern` handler, whose actions go into the ACK. */
  readonly handler: SpoeHandler | undefined;
  /** `@EventPattern` handlers: run, never awaited. */
  readonly events: readonly SpoeHandler[];
  /** Deadline of `handler`, in ms. */
  readonly deadlineMs: number;
}

/** Runs a handler; the server wraps Nest's processing hooks around it when some are registered. */
export type SpoeInvoker = (handler: SpoeHandler, payload: SpoePayload, context: SpoeContext) => unknown;

/** Value of the error variable for each kind of failure. */
export enum SpoeFailure {
  HandlerFailed = 1,
  DeadlinePassed = 2,
}

const NO_ACTIONS: readonly SpoeAction[] = Object.freeze([]);

/**
 * Runs the messages of a NOTIFY through their handlers and produces the actions of its ACK: in message order, exactly
 * once, as soon as every handler finished — or at once when one fails or the deadline passes, with what succeeded.
 */
export class Dispatcher {
  private readonly logger = new Logger('SpoeDispatcher');
  private readonly deadlines = new DeadlineQueue();
  private readonly unknownMessages = new Set<string>();

  constructor(
    private readonly route: (name: string) => SpoeRoute | undefined,
    private readonly invoke: SpoeInvoker,
    private readonly errorVariable: SpoeErrorVariable | undefined,
  ) {}

  /** Dispatches a NOTIFY; `done` is called exactly once with the ACK's actions. */
  dispatch(messages: readonly SpoeMessage[], streamId: SpopId, frameId: SpopId, connection: SpoeConnectionInfo, done: (actions: readonly SpoeAction[]) => void): void {
    const job = new NotifyJob(this, messages, streamId, frameId, done);
    let deadline = Infinity;
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i];
      const route = this.route(message.name);
      if (!route || (!route.handler && route.events.length === 0)) {
        this.warnUnknown(message.name);
        job.complete(i);
        continue;
      }
      const payload = toPayload(message);
      const context = new SpoeContext({ message, streamId, frameId, connection });
      for (const event of route.events) this.fireEvent(event, payload, context);
      if (!route.handler) {
        job.complete(i);
        continue;
      }
      if (route.deadlineMs < deadline) deadline = route.deadlineMs;
      this.run(job, i, route.handler, payload, context);
    }
    if (!job.settled) this.deadlines.add(deadline, job);
  }

  /** Answers every pending NOTIFY now, as if its deadline had passed (used on shutdown). */
  expireAll(): void {
    this.deadlines.expireAll();
  }

  close(): void {
    this.deadlines.clear();
  }

  /** @internal */
  failureAction(kind: SpoeFailure): SpoeAction | undefined {
    const v = this.errorVariable;
    return v && { type: ActionType.SetVar, scope: v.scope, name: v.name, value: kind };
  }

  /** @internal */
  logFailure(job: NotifyJob, index: number, error: unknown): void {
    const where = `message "${job.messages[index].name}" (stream-id ${job.streamId}, frame-id ${job.frameId})`;
    this.logger.error(`handler failed for ${where}: ${describeError(error)}`, error instanceof Error ? error.stack : undefined);
  }

  /** @internal */
  logDeadline(job: NotifyJob, pending: string[]): void {
    this.logger.warn(`deadline passed for message(s) ${pending.map((n) => `"${n}"`).join(', ')} (stream-id ${job.streamId}, frame-id ${job.frameId}); acknowledged with the actions that were ready`);
  }

  private run(job: NotifyJob, index: number, handler: SpoeHandler, payload: SpoePayload, context: SpoeContext): void {
    let result: unknown;
    try {
      result = this.invoke(handler, payload, context);
    } catch (error) {
      job.fail(index, error);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (value: unknown) => job.accept(index, value),
        (error: unknown) => job.fail(index, error),
      );
    } else {
      job.accept(index, result);
    }
  }

  private fireEvent(handler: SpoeHandler, payload: SpoePayload, context: SpoeContext): void {
    const report = (error: unknown): void => this.logger.error(`event handler failed for message "${context.getMessageName()}": ${describeError(error)}`);
    try {
      const result = this.invoke(handler, payload, context);
      const settle = (value: unknown): void => {
        if (isObservable(value)) value.subscribe({ error: report });
      };
      if (result instanceof Promise) result.then(settle, report);
      else settle(result);
    } catch (error) {
      report(error);
    }
  }

  private warnUnknown(name: string): void {
    if (this.unknownMessages.has(name)) return;
    this.unknownMessages.add(name);
    this.logger.warn(`no @MessagePattern handler for SPOE message "${name}": it is acknowledged without actions`);
  }
}

/** The state of one NOTIFY while its handlers run. */
class NotifyJob implements Expirable {
  settled = false;
  private remaining: number;
  private readonly actions: Array<SpoeAction[] | undefined>;
  private readonly finished: boolean[];
  private subscriptions: Subscription[] | undefined;

  constructor(
    private readonly dispatcher: Dispatcher,
    readonly messages: readonly SpoeMessage[],
    readonly streamId: SpopId,
    readonly frameId: SpopId,
    private readonly done: (actions: readonly SpoeAction[]) => void,
  ) {
    this.remaining = messages.length;
    this.actions = new Array<SpoeAction[] | undefined>(messages.length);
    this.finished = new Array<boolean>(messages.length).fill(false);
    if (this.remaining === 0) this.settle(NO_ACTIONS);
  }

  /** A handler's result: a value (collected at once) or an Observable (all emissions collected). */
  accept(index: number, value: unknown): void {
    if (this.settled) return;
    if (!isObservable(value)) {
      if (this.collect(index, value)) this.complete(index);
      return;
    }
    const subscription = value.subscribe({
      next: (emitted: unknown) => {
        if (!this.settled) this.collect(index, emitted);
      },
      error: (error: unknown) => this.fail(index, error),
      complete: () => this.complete(index),
    });
    if (!this.settled && !subscription.closed) (this.subscriptions ??= []).push(subscription);
  }

  complete(index: number): void {
    if (this.settled || this.finished[index]) return;
    this.finished[index] = true;
    if (--this.remaining === 0) this.settle(this.collected());
  }

  fail(index: number, error: unknown): void {
    if (this.settled) return;
    this.dispatcher.logFailure(this, index, error);
    this.settleWithFailure(SpoeFailure.HandlerFailed);
  }

  expire(): void {
    if (this.settled) return;
    this.dispatcher.logDeadline(this, this.messages.filter((_, i) => !this.finished[i]).map((m) => m.name));
    this.settleWithFailure(SpoeFailure.DeadlinePassed);
  }

  private collect(index: number, value: unknown): boolean {
    if (value === undefined || value === null) return true;
    const list = (this.actions[index] ??= []);
    if (isSpoeAction(value)) {
      list.push(value);
      return true;
    }
    if (Array.isArray(value) && value.every(isSpoeAction)) {
      for (const action of value) list.push(action);
      return true;
    }
    this.fail(index, new TypeError(`handler returned ${describeValue(value)}; expected a SpoeAction, an array of them, or nothing`));
    return false;
  }

  private collected(): readonly SpoeAction[] {
    const all: SpoeAction[] = [];
    for (let i = 0; i < this.actions.length; i++) {
      const list = this.actions[i];
      if (list && this.finished[i]) for (const action of list) all.push(action);
    }
    return all;
  }

  private settleWithFailure(kind: SpoeFailure): void {
    const actions = this.collected() as SpoeAction[];
    const flag = this.dispatcher.failureAction(kind);
    if (flag) actions.push(flag);
    this.settle(actions);
  }

  private settle(actions: readonly SpoeAction[]): void {
    this.settled = true;
    if (this.subscriptions) for (const s of this.subscriptions) s.unsubscribe();
    this.done(actions);
  }
}

function toPayload(message: SpoeMessage): SpoePayload {
  const payload: SpoePayload = {};
  for (const arg of message.args) {
    if (Object.prototype.hasOwnProperty.call(payload, arg.name)) continue;
    if (arg.name === '__proto__') Object.defineProperty(payload, arg.name, { value: arg.value, enumerable: true, writable: true, configurable: true });
    else payload[arg.name] = arg.value;
  }
  return payload;
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  try {
    return JSON.stringify(error);
  } catch {
    return String(error);
  }
}

function describeValue(value: unknown): string {
  if (typeof value !== 'object' || value === null) return `${typeof value} ${String(value)}`;
  return value.constructor?.name ?? 'object';
}
