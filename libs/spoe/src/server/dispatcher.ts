import { Logger } from '@nestjs/common';
import { isObservable, Subscription } from 'rxjs';
import { isSpoeAction } from '../actions/set-var';
import { ActionType, SpoeAction } from '../protocol/ack';
import { SpopId } from '../protocol/frame';
import { SpoeMessage } from '../protocol/notify';
import { SpoeValue } from '../protocol/typed-data';
import { DeadlineQueue, Expirable } from './deadline-queue';
import { causeOf, wasFiltered } from './handler-errors';
import { SpoeConnectionInfo, SpoeContext } from './spoe.context';
import { SpoeMessageOutcome, SpoeMessageScope, SpoeObserver } from './spoe.observer';
import { SpoeErrorVariable } from './spoe.options';
import { SPOE_UNKNOWN_MESSAGES_WARNED } from '../spoe.constants';

/** A handler as Nest registers it: `(payload, context)` → a value, a Promise or an Observable. */
export type SpoeHandler = (payload: SpoePayload, context: SpoeContext) => unknown;

/** `@Payload()` of an SPOE handler: arguments by name (the first one wins for a repeated name). */
export type SpoePayload = Record<string, SpoeValue>;

/**
 * Runs one message through its `@MessagePattern` handler and returns what the handler returned: a value, a Promise or
 * an Observable. Builds only what the handler reads (its payload, its {@link SpoeContext}).
 */
export type SpoeMessageInvoker = (
  message: SpoeMessage,
  streamId: SpopId,
  frameId: SpopId,
  connection: SpoeConnectionInfo,
) => unknown;

/**
 * The exception filters of a handler's pipeline, for an error its Promise or Observable raised: what they make of it
 * (an Observable of what they answer, or of their error). Called by the dispatcher, which alone follows a handler's
 * Promise or Observable: a handler that never settles holds on to the callbacks given to it, possibly forever, and
 * the dispatcher's callbacks let go of the NOTIFY once it is acknowledged (see NotifyJob.release).
 */
export type SpoeErrorFilter = (
  error: unknown,
  message: SpoeMessage,
  streamId: SpopId,
  frameId: SpopId,
  connection: SpoeConnectionInfo,
) => unknown;

/** How a message reaches its `@MessagePattern` handler, and its handler's errors the exception filters. */
export interface SpoeMessageHandling {
  readonly invoke: SpoeMessageInvoker;
  /** Undefined when `invoke` applies the filters itself (Nest's own pipeline). */
  readonly filterError: SpoeErrorFilter | undefined;
}

/** The handlers bound to one message name. */
export interface SpoeRoute {
  /**
   * The message name, as registered: the observer is told this string (always the same one, where a message's own name
   * is decoded anew from each frame).
   */
  readonly name: string;
  /** The `@MessagePattern` handler, whose actions go into the ACK. */
  readonly handler: SpoeHandler | undefined;
  /** How a message reaches `handler` (set with it). */
  readonly invoke: SpoeMessageInvoker | undefined;
  /** The exception filters of `handler`'s pipeline, for the errors of its Promise or Observable. */
  readonly filterError: SpoeErrorFilter | undefined;
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
const NO_MESSAGES: readonly SpoeMessage[] = Object.freeze([]);
const RELEASED_DONE: SpoeAckCallback = () => undefined;
const hrtime = process.hrtime;

/**
 * Milliseconds from an arbitrary origin, for durations: what performance.now() reads (Node's is process.hrtime() less
 * the time origin), without the receiver check it makes first (a call into Node's validators, once per message).
 */
function clock(): number {
  const time = hrtime();
  return time[0] * 1e3 + time[1] / 1e6;
}

/**
 * Receives the actions of a NOTIFY's ACK, and the `size` it was dispatched with; one function per connection, so
 * dispatching allocates no callback.
 */
export type SpoeAckCallback = (streamId: SpopId, frameId: SpopId, actions: readonly SpoeAction[], size: number) => void;

/**
 * Runs the messages of a NOTIFY through their handlers and produces the actions of its ACK: in message order, exactly
 * once, as soon as every handler finished — or at once when one fails or the deadline passes, with what succeeded.
 */
export class Dispatcher {
  private readonly logger = new Logger('SpoeDispatcher');
  private readonly deadlines = new DeadlineQueue();
  private readonly unknownMessages = new Set<string>();
  /** Told how each message ended (with its duration) when set; nothing is measured otherwise. */
  observer: SpoeObserver | undefined;
  private clock = 0;
  private clockStale = true;

  constructor(
    private readonly route: (name: string) => SpoeRoute | undefined,
    private readonly invoke: SpoeInvoker,
    private readonly errorVariable: SpoeErrorVariable | undefined,
  ) {}

  /**
   * Dispatches a NOTIFY; `done` is called exactly once with the ACK's actions: before this returns when every handler
   * answered at once (the common case, which then allocates no job and no deadline), later otherwise. `size` is given
   * back to `done` as it is (the connection's count of the NOTIFY's bytes, released with its ACK).
   */
  dispatch(
    messages: readonly SpoeMessage[],
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
    done: SpoeAckCallback,
    size: number,
  ): void {
    if (messages.length === 1) return this.dispatchOne(messages[0], streamId, frameId, connection, done, size);
    this.dispatchJob(messages, streamId, frameId, connection, done, size);
  }

  /** Dispatches a NOTIFY of several messages through a {@link NotifyJob}. */
  private dispatchJob(
    messages: readonly SpoeMessage[],
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
    done: SpoeAckCallback,
    size: number,
  ): void {
    const observer = this.observer;
    const scopes = observer?.messageScope ? new Array<SpoeMessageScope | undefined>(messages.length) : undefined;
    const job = new NotifyJob(
      this,
      messages,
      streamId,
      frameId,
      connection,
      done,
      size,
      observer?.message ? this.now() : NaN,
      scopes,
    );
    let deadline = Infinity;
    for (let i = 0; i < messages.length; i++) {
      const route = this.lookup(messages[i].name);
      if (!route) {
        job.complete(i, false);
        continue;
      }
      if (route.invoke && route.deadlineMs < deadline) deadline = route.deadlineMs;
      // Once the job settled (a handler failed) the remaining handlers run for their side effects, unscoped.
      const scope =
        scopes && !job.settled ? observer?.messageScope?.(messages[i], streamId, frameId, connection) : undefined;
      if (scope && scopes) {
        scopes[i] = scope;
        scope.run(() => this.start(job, i, route));
      } else {
        this.start(job, i, route);
      }
    }
    if (!job.settled) this.deadlines.add(deadline, job);
  }

  /** Runs the handlers of message `index` of `job`. */
  private start(job: NotifyJob, index: number, route: SpoeRoute): void {
    const message = job.messages[index];
    if (route.events.length > 0) this.fireEvents(route, message, job.streamId, job.frameId, job.connection);
    if (!route.invoke) return job.complete(index, true);
    try {
      follow(job, index, route.invoke(message, job.streamId, job.frameId, job.connection));
    } catch (error) {
      job.fail(index, error);
    }
  }

  /** A NOTIFY of one message (nearly all of them): when its handler answers at once, no job, no deadline. */
  private dispatchOne(
    message: SpoeMessage,
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
    done: SpoeAckCallback,
    size: number,
  ): void {
    // Observed apart, so that this path stays small enough for V8 to inline what it calls.
    if (this.observer) return this.dispatchOneObserved(message, streamId, frameId, connection, done, size);
    const route = this.routeOf(message, streamId, frameId, connection);
    if (!route?.invoke) {
      done(streamId, frameId, NO_ACTIONS, size);
      return;
    }
    let result: unknown;
    try {
      result = route.invoke(message, streamId, frameId, connection);
    } catch (error) {
      return this.failed(message, streamId, frameId, connection, error, done, size, NaN);
    }
    if (result instanceof Promise || isObservable(result)) {
      const job = new NotifyJob(this, [message], streamId, frameId, connection, done, size, NaN);
      follow(job, 0, result);
      if (!job.settled) this.deadlines.add(route.deadlineMs, job);
      return;
    }
    const actions = actionsOf(result);
    if (actions) done(streamId, frameId, actions, size);
    else this.failed(message, streamId, frameId, connection, notActions(result), done, size, NaN);
  }

  /**
   * {@link dispatchOne}, timing the handler and telling the observer how the message ended; in the scope the observer
   * opens for it, if any.
   */
  private dispatchOneObserved(
    message: SpoeMessage,
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
    done: SpoeAckCallback,
    size: number,
  ): void {
    const observer = this.observer!;
    const route = this.lookup(message.name);
    const scope = route && observer.messageScope?.(message, streamId, frameId, connection);
    if (scope) return this.dispatchOneScoped(route, scope, message, streamId, frameId, connection, done, size);
    if (route && route.events.length > 0) this.fireEvents(route, message, streamId, frameId, connection);
    if (!route?.invoke) {
      this.observe(route?.name, route ? 'ok' : 'unhandled', NaN);
      done(streamId, frameId, NO_ACTIONS, size);
      return;
    }
    const timed = observer.message !== undefined;
    const started = timed ? this.now() : NaN;
    let result: unknown;
    try {
      result = route.invoke(message, streamId, frameId, connection);
    } catch (error) {
      return this.failed(message, streamId, frameId, connection, error, done, size, started);
    }
    if (result instanceof Promise || isObservable(result)) {
      const job = new NotifyJob(this, [message], streamId, frameId, connection, done, size, started);
      follow(job, 0, result);
      if (!job.settled) this.deadlines.add(route.deadlineMs, job);
      return;
    }
    const actions = actionsOf(result);
    if (!actions) return this.failed(message, streamId, frameId, connection, notActions(result), done, size, started);
    // observe(), written out: the duration is passed on unboxed when this is not inlined.
    if (timed) {
      const ended = clock();
      this.clock = ended;
      observer.message!(route.name, 'ok', (ended - started) / 1000);
    }
    done(streamId, frameId, actions, size);
  }

  /**
   * {@link dispatchOneObserved} in the scope the observer opened: the message's handlers run in it, and it ends with
   * the message. A handler that answers at once still needs no job.
   */
  private dispatchOneScoped(
    route: SpoeRoute,
    scope: SpoeMessageScope,
    message: SpoeMessage,
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
    done: SpoeAckCallback,
    size: number,
  ): void {
    if (route.events.length > 0) scope.run(() => this.fireEvents(route, message, streamId, frameId, connection));
    const invoke = route.invoke;
    if (!invoke) {
      this.observe(route.name, 'ok', NaN);
      scope.end?.('ok', undefined);
      done(streamId, frameId, NO_ACTIONS, size);
      return;
    }
    const started = this.observer?.message ? this.now() : NaN;
    let result: unknown;
    try {
      result = scope.run(() => invoke(message, streamId, frameId, connection));
    } catch (error) {
      return this.failed(message, streamId, frameId, connection, error, done, size, started, scope);
    }
    if (result instanceof Promise || isObservable(result)) {
      const job = new NotifyJob(this, [message], streamId, frameId, connection, done, size, started, [scope]);
      // An Observable runs when subscribed: in the scope too.
      scope.run(() => follow(job, 0, result));
      if (!job.settled) this.deadlines.add(route.deadlineMs, job);
      return;
    }
    const actions = actionsOf(result);
    if (!actions)
      return this.failed(message, streamId, frameId, connection, notActions(result), done, size, started, scope);
    this.observe(route.name, 'ok', started);
    scope.end?.('ok', undefined);
    done(streamId, frameId, actions, size);
  }

  /** `started`: {@link clock} when the handler was called, NaN when nothing observes. */
  private failed(
    message: SpoeMessage,
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
    error: unknown,
    done: SpoeAckCallback,
    size: number,
    started: number,
    scope?: SpoeMessageScope,
  ): void {
    if (scope) scope.run(() => this.logFailure(message.name, streamId, frameId, connection, error));
    else this.logFailure(message.name, streamId, frameId, connection, error);
    if (this.observer) this.observe(message.name, 'failed', started);
    scope?.end?.('failed', causeOf(error));
    done(streamId, frameId, this.withFailure(NO_ACTIONS, SpoeFailure.HandlerFailed), size);
  }

  /** @internal Tells the observer how a message ended; `started` is NaN for a message no handler ran. */
  observe(name: string | undefined, outcome: SpoeMessageOutcome, started: number): void {
    let seconds = 0;
    if (started === started) {
      const ended = clock();
      this.clock = ended;
      seconds = (ended - started) / 1000;
    }
    this.observer?.message?.(name, outcome, seconds);
  }

  /**
   * @internal A connection begins reading a burst of frames (see {@link now}): the clock read before is stale. The
   * dispatches of a burst run in one synchronous run, and every dispatch is part of one.
   */
  burst(): void {
    this.clockStale = true;
  }

  /**
   * The time a handler starts, for its duration: the clock is read once when a burst of messages begins, then each
   * message starts when the previous one ended. A clock read costs about 50 ns, 3% of what a frame costs the agent
   * under load; what this adds to a duration (decoding the next frame, well under a microsecond) is below the smallest
   * bucket.
   */
  private now(): number {
    if (this.clockStale) {
      this.clock = clock();
      this.clockStale = false;
    }
    return this.clock;
  }

  /** The route of a message with a `@MessagePattern` handler; event handlers fired on the way; undefined otherwise. */
  private routeOf(
    message: SpoeMessage,
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
  ): SpoeRoute | undefined {
    const route = this.lookup(message.name);
    if (route && route.events.length > 0) this.fireEvents(route, message, streamId, frameId, connection);
    return route;
  }

  /** The route of a message name with a handler (`@MessagePattern` or `@EventPattern`); undefined otherwise. */
  private lookup(name: string): SpoeRoute | undefined {
    const route = this.route(name);
    if (!route || (!route.handler && route.events.length === 0)) {
      this.warnUnknown(name);
      return undefined;
    }
    return route;
  }

  private fireEvents(
    route: SpoeRoute,
    message: SpoeMessage,
    streamId: SpopId,
    frameId: SpopId,
    connection: SpoeConnectionInfo,
  ): void {
    const payload = toPayload(message);
    const context = new SpoeContext([message, streamId, frameId, connection]);
    for (const event of route.events) this.fireEvent(event, payload, context);
  }

  /** Answers every pending NOTIFY now, as if its deadline had passed (used on shutdown). */
  expireAll(): void {
    this.deadlines.expireAll();
  }

  close(): void {
    this.deadlines.clear();
  }

  /** @internal The exception filters for the errors of the Promise or Observable of message `name`'s handler. */
  errorFilterOf(name: string): SpoeErrorFilter | undefined {
    return this.route(name)?.filterError;
  }

  /** @internal */
  failureAction(kind: SpoeFailure): SpoeAction | undefined {
    const v = this.errorVariable;
    return v && { type: ActionType.SetVar, scope: v.scope, name: v.name, value: kind };
  }

  /** @internal `actions` plus the error variable set to `kind`, when there is one. */
  withFailure(actions: readonly SpoeAction[], kind: SpoeFailure): readonly SpoeAction[] {
    const flag = this.failureAction(kind);
    return flag ? [...actions, flag] : actions;
  }

  /** @internal */
  logFailure(name: string, streamId: SpopId, frameId: SpopId, connection: SpoeConnectionInfo, error: unknown): void {
    const where = `message "${name}" (${originOf(streamId, frameId, connection)})`;
    this.logger.error(
      `handler failed for ${where}: ${describeError(error)}`,
      error instanceof Error ? error.stack : undefined,
    );
  }

  /** @internal */
  logDeadline(job: NotifyJob, pending: string[]): void {
    this.logger.warn(
      `deadline passed for message(s) ${pending.map((n) => `"${n}"`).join(', ')} (${originOf(job.streamId, job.frameId, job.connection)}); acknowledged with the actions that were ready`,
    );
  }

  private fireEvent(handler: SpoeHandler, payload: SpoePayload, context: SpoeContext): void {
    const report = (error: unknown): void =>
      this.logger.error(
        `event handler failed for message "${context.getMessageName()}" (${originOf(context.getStreamId(), context.getFrameId(), { remoteAddress: context.getRemoteAddress(), engineId: context.getEngineId() })}): ${describeError(error)}`,
      );
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
    const warned = this.unknownMessages;
    if (warned.size >= SPOE_UNKNOWN_MESSAGES_WARNED || warned.has(name)) return;
    warned.add(name);
    this.logger.warn(`no @MessagePattern handler for SPOE message "${name}": it is acknowledged without actions`);
    if (warned.size === SPOE_UNKNOWN_MESSAGES_WARNED) {
      this.logger.warn(
        `${SPOE_UNKNOWN_MESSAGES_WARNED} SPOE message names without a handler were warned about: others are acknowledged without actions, and without a warning`,
      );
    }
  }
}

/** The state of one NOTIFY while its handlers run. */
class NotifyJob implements Expirable {
  settled = false;
  private remaining: number;
  /** Per message: its actions once it finished (NO_ACTIONS when none); undefined while it runs. */
  private readonly actions: Array<readonly SpoeAction[] | undefined>;
  private subscriptions: Subscription[] | undefined;
  /** Per message, true once its error went through the exception filters: what they answer is final. */
  private filtered: boolean[] | undefined;

  // messages, done and scopes are let go of once the job settles with handlers still running (see release).
  constructor(
    private readonly dispatcher: Dispatcher,
    public messages: readonly SpoeMessage[],
    readonly streamId: SpopId,
    readonly frameId: SpopId,
    readonly connection: SpoeConnectionInfo,
    private done: SpoeAckCallback,
    /** Given back to `done`. */
    private readonly size: number,
    /** {@link clock} at dispatch when the dispatcher has an observer, NaN otherwise. */
    private readonly started: number,
    /** Per message, the scope its handlers run in, when the observer opens scopes. */
    private scopes: ReadonlyArray<SpoeMessageScope | undefined> | undefined = undefined,
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
      error: (error: unknown) => this.reject(index, error),
      complete: () => this.finish(index, emitted),
    });
    if (!this.settled && !subscription.closed) (this.subscriptions ??= []).push(subscription);
  }

  /** A message finished with no actions: `routed` when it has event handlers only, not when it has no handler. */
  complete(index: number, routed: boolean): void {
    this.finish(index, NO_ACTIONS, routed);
  }

  /**
   * The Promise or Observable of a handler raised `error`: it goes through the handler's exception filters first, once
   * (Nest's RpcProxy catches the errors of the handler's result), then fails the message if they answer an error.
   */
  reject(index: number, error: unknown): void {
    if (this.settled) return;
    // Filters run once: not again on what they answered (an error the pipeline filtered itself included).
    const filter =
      this.filtered?.[index] || wasFiltered(error)
        ? undefined
        : this.dispatcher.errorFilterOf(this.messages[index].name);
    if (!filter) return this.fail(index, error);
    (this.filtered ??= new Array<boolean>(this.messages.length))[index] = true;
    let filtered: unknown;
    try {
      filtered = filter(error, this.messages[index], this.streamId, this.frameId, this.connection);
    } catch (thrown) {
      return this.fail(index, thrown);
    }
    follow(this, index, filtered);
  }

  /**
   * A handler failed: the ACK goes now with the error variable. Messages still running count as failed too (their
   * actions are dropped).
   */
  fail(index: number, error: unknown): void {
    if (this.settled) return;
    this.inScope(index, () =>
      this.dispatcher.logFailure(this.messages[index].name, this.streamId, this.frameId, this.connection, error),
    );
    this.observePending('failed', index, error);
    this.settleWithFailure(SpoeFailure.HandlerFailed);
  }

  expire(): void {
    if (this.settled) return;
    const pending = this.messages.findIndex((_, i) => this.actions[i] === undefined);
    this.inScope(pending, () =>
      this.dispatcher.logDeadline(
        this,
        this.messages.filter((_, i) => this.actions[i] === undefined).map((m) => m.name),
      ),
    );
    this.observePending('deadline', -1, undefined);
    this.settleWithFailure(SpoeFailure.DeadlinePassed);
  }

  /** Runs `fn` in the scope of message `index` when it has one (so that a log line about it carries its context). */
  private inScope(index: number, fn: () => void): void {
    const scope = this.scopes?.[index];
    if (scope) scope.run(fn);
    else fn();
  }

  private finish(index: number, list: readonly SpoeAction[], routed = true): void {
    if (this.settled || this.actions[index] !== undefined) return;
    this.actions[index] = list;
    if (this.dispatcher.observer) {
      if (routed) this.dispatcher.observe(this.messages[index].name, 'ok', this.started);
      else this.dispatcher.observe(undefined, 'unhandled', NaN);
    }
    this.scopes?.[index]?.end?.(routed ? 'ok' : 'unhandled', undefined);
    if (--this.remaining === 0) this.settle(this.collected());
  }

  /** Tells the observer how the messages still running ended; message `failed` with `error`, the others without. */
  private observePending(outcome: SpoeMessageOutcome, failed: number, error: unknown): void {
    for (let i = 0; i < this.messages.length; i++) {
      if (this.actions[i] !== undefined) continue;
      if (this.dispatcher.observer) this.dispatcher.observe(this.messages[i].name, outcome, this.started);
      this.scopes?.[i]?.end?.(outcome, i === failed ? causeOf(error) : undefined);
    }
  }

  /** `list` plus what `value` adds (an action, an array of them, or nothing); a failure for anything else. */
  private collect(index: number, value: unknown, list: readonly SpoeAction[]): readonly SpoeAction[] | undefined {
    const actions = actionsOf(value);
    if (!actions) {
      this.fail(index, notActions(value));
      return undefined;
    }
    if (list.length === 0) return actions;
    return actions.length === 0 ? list : [...list, ...actions];
  }

  /** The actions of the finished messages, in message order. */
  private collected(): readonly SpoeAction[] {
    if (this.actions.length === 1) return this.actions[0] ?? NO_ACTIONS;
    const all: SpoeAction[] = [];
    for (const list of this.actions) if (list) for (const action of list) all.push(action);
    return all;
  }

  private settleWithFailure(kind: SpoeFailure): void {
    this.settle(this.dispatcher.withFailure(this.collected(), kind));
    this.release();
  }

  /**
   * Once acknowledged before every handler finished (a deadline, a failure), forgets the NOTIFY: a handler that never
   * settles holds on to this job through the callbacks its Promise keeps, and must not keep the frame (nor, through
   * `done`, the connection). Only then: a job whose handlers all finished is unreachable already.
   */
  private release(): void {
    this.messages = NO_MESSAGES;
    this.done = RELEASED_DONE;
    this.scopes = undefined;
    this.subscriptions = undefined;
    this.actions.length = 0;
  }

  private settle(actions: readonly SpoeAction[]): void {
    this.settled = true;
    if (this.subscriptions) for (const s of this.subscriptions) s.unsubscribe();
    this.done(this.streamId, this.frameId, actions, this.size);
  }
}

/** Feeds a handler's result, or once settled a Promise's, into the job. */
function follow(job: NotifyJob, index: number, result: unknown): void {
  if (result instanceof Promise) {
    result.then(
      (value: unknown) => job.accept(index, value),
      (error: unknown) => job.reject(index, error),
    );
  } else {
    job.accept(index, result);
  }
}

/**
 * What a handler returned, as the actions it adds: nothing, one action or an array of them; undefined for anything
 * else.
 */
function actionsOf(value: unknown): readonly SpoeAction[] | undefined {
  if (value === undefined || value === null) return NO_ACTIONS;
  if (!Array.isArray(value)) return isSpoeAction(value) ? [value] : undefined;
  // A loop, not every(): this runs once per message.
  for (let i = 0; i < value.length; i++) if (!isSpoeAction(value[i])) return undefined;
  return value as SpoeAction[];
}

function notActions(value: unknown): TypeError {
  return new TypeError(`handler returned ${describeValue(value)}; expected a SpoeAction, an array of them, or nothing`);
}

/** `@Payload()` of a message: its arguments by name, the first one winning for a repeated name. */
export function toPayload(message: SpoeMessage): SpoePayload {
  const payload: SpoePayload = {};
  for (let i = 0; i < message.size; i++) {
    const name = message.nameAt(i);
    if (Object.prototype.hasOwnProperty.call(payload, name)) continue;
    if (name === '__proto__')
      Object.defineProperty(payload, name, {
        value: message.valueAt(i),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    else payload[name] = message.valueAt(i);
  }
  return payload;
}

/** Where a message came from, as every log line about one says it: its ids, the HAProxy peer and its engine. */
function originOf(
  streamId: SpopId,
  frameId: SpopId,
  connection: Pick<SpoeConnectionInfo, 'remoteAddress' | 'engineId'>,
): string {
  const engine = connection.engineId === undefined ? '' : `, engine ${connection.engineId}`;
  return `stream-id ${streamId}, frame-id ${frameId}, from ${connection.remoteAddress}${engine}`;
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
