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

/** Receives the actions of a NOTIFY's ACK; one function per connection, so dispatching allocates no callback. */
export type SpoeAckCallback = (streamId: SpopId, frameId: SpopId, actions: readonly SpoeAction[]) => void;

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
  dispatch(messages: readonly SpoeMessage[], streamId: SpopId, frameId: SpopId, connection: SpoeConnectionInfo, done: SpoeAckCallback): void {
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
      const context = new SpoeContext([message, streamId, frameId, connection]);
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
  /** Per message: its actions once it finished (NO_ACTIONS when none); undefined while it runs. */
  private readonly actions: Array<readonly SpoeAction[] | undefined>;
  private subscriptions: Subscription[] | undefined;

  constructor(
    private readonly dispatcher: Dispatcher,
    readonly messages: readonly SpoeMessage[],
    readonly streamId: SpopId,
    readonly frameId: SpopId,
    private readonly done: SpoeAckCallback,
  ) {
    this.remaining = messages.length;
    this.actions = new Array<readonly SpoeAction[] | undefined>(messages.length);
    if (this.remaining === 0) this.settle(NO_ACTIONS);
  }

  /** A handler's result: a value (collected at once) or an Observable (all emissions collected). */
  accept(index: number, value: unknown): void {
    if (this.settled) return;
    if (!isObservable(value)) {
      const list = this.collect(index, value, NO_ACTIONS);
      if (list) this.finish(index, list);
      return;
    }
    let emitted: readonly SpoeAction[] = NO_ACTIONS;
    const subscription = value.subscribe({
      next: (item: unknown) => {
        if (this.settled) return;
        const list = this.collect(index, item, emitted);
        if (list) emitted = list;
      },
      error: (error: unknown) => this.fail(index, error),
      complete: () => this.finish(index, emitted),
    });
    if (!this.settled && !subscription.closed) (this.subscriptions ??= []).push(subscription);
  }

  /** A message finished with no actions (no handler, or only event handlers). */
  complete(index: number): void {
    this.finish(index, NO_ACTIONS);
  }

  fail(index: number, error: unknown): void {
    if (this.settled) return;
    this.dispatcher.logFailure(this, index, error);
    this.settleWithFailure(SpoeFailure.HandlerFailed);
  }

  expire(): void {
    if (this.settled) return;
    this.dispatcher.logDeadline(this, this.messages.filter((_, i) => this.actions[i] === undefined).map((m) => m.name));
    this.settleWithFailure(SpoeFailure.DeadlinePassed);
  }

  private finish(index: number, list: readonly SpoeAction[]): void {
    if (this.settled || this.actions[index] !== undefined) return;
    this.actions[index] = list;
    if (--this.remaining === 0) this.settle(this.collected());
  }

  /** `list` plus what `value` adds (an action, an array of them, or nothing); a failure for anything else. */
  private collect(index: number, value: unknown, list: readonly SpoeAction[]): readonly SpoeAction[] | undefined {
    if (value === undefined || value === null) return list;
    if (isSpoeAction(value)) return list.length === 0 ? [value] : [...list, value];
    if (Array.isArray(value) && value.every(isSpoeAction)) return list.length === 0 ? (value as SpoeAction[]) : [...list, ...(value as SpoeAction[])];
    this.fail(index, new TypeError(`handler returned ${describeValue(value)}; expected a SpoeAction, an array of them, or nothing`));
    return undefined;
  }

  /** The actions of the finished messages, in message order. */
  private collected(): readonly SpoeAction[] {
    if (this.actions.length === 1) return this.actions[0] ?? NO_ACTIONS;
    const all: SpoeAction[] = [];
    for (const list of this.actions) if (list) for (const action of list) all.push(action);
    return all;
  }

  private settleWithFailure(kind: SpoeFailure): void {
    const flag = this.dispatcher.failureAction(kind);
    this.settle(flag ? [...this.collected(), flag] : this.collected());
  }

  private settle(actions: readonly SpoeAction[]): void {
    this.settled = true;
    if (this.subscriptions) for (const s of this.subscriptions) s.unsubscribe();
    this.done(this.streamId, this.frameId, actions);
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
