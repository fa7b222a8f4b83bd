/** How a HAProxy HELLO ended: a connection that will carry NOTIFY, a health check, or a refusal (a protocol error). */
export type SpoeHelloOutcome = 'accepted' | 'healthcheck' | 'refused';

/**
 * How a message ended: its handler's actions went into the ACK (`ok`), it threw or returned no actions (`failed`), its
 * deadline passed first (`deadline`), or no handler has its name (`unhandled`).
 */
export type SpoeMessageOutcome = 'ok' | 'failed' | 'deadline' | 'unhandled';

import type { SpoeContextArgs } from './spoe.context';
import type { SpoeTlsFailure } from './spoe.tls';

/**
 * Why a connection stopped reading, the causes of its read gate (see SpoeConnection): its own NOTIFY in flight
 * (`maxInFlightPerConnection`), its ACKs not yet written or not yet sent (`maxPendingWriteBytes`), or the bytes of
 * NOTIFY in flight on all the server's connections (`maxInFlightBytes`).
 */
export type SpoePauseCause = 'in-flight' | 'unflushed' | 'unsent' | 'in-flight-bytes';

/**
 * Where one message's handlers run, opened by {@link SpoeObserver.messageScope}: an OpenTelemetry span and its context
 * (see 'nestjs-spoe/tracing'), an AsyncLocalStorage store (see `currentSpoeContext`), or both.
 */
export interface SpoeMessageScope {
  /**
   * Runs `fn` inside the scope and returns what it returns. The transport runs in it the message's `@EventPattern` and
   * `@MessagePattern` handlers (with their guards, interceptors, pipes and filters, and the subscription to an
   * Observable they return) and its own log lines about the message.
   */
  run<T>(fn: () => T): T;
  /**
   * The message ended, once: how, and for `failed` what its handler threw (before Nest's exception filters, when
   * nestjs-spoe's pipeline ran it), or undefined when another message of the NOTIFY failed.
   */
  end?(outcome: SpoeMessageOutcome, error: unknown): void;
}

/**
 * What the transport tells an observer, as it happens: the metrics of 'nestjs-spoe/metrics' are one. Every method is
 * optional and called synchronously on the event loop, so it must be quick and must not throw. With no observer the
 * transport calls nothing and measures nothing.
 */
export interface SpoeObserver {
  /** A socket was accepted (its HELLO comes next). */
  connectionAccepted?(remoteAddress: string): void;
  /**
   * A socket was refused, `maxConnections` being open: it was sent AGENT-DISCONNECT status 13 (told to
   * {@link agentDisconnect} too) and closed, and is not counted as accepted. Over TLS, a socket beyond twice
   * `maxConnections` (handshakes included) is closed before its handshake, without AGENT-DISCONNECT.
   */
  connectionRefused?(remoteAddress: string): void;
  hello?(outcome: SpoeHelloOutcome): void;
  /** A whole NOTIFY was read (fragments count once, when the last arrives), with its number of messages. */
  notify?(messages: number): void;
  /**
   * A message of a NOTIFY ended. `name` is a registered pattern, or undefined when no handler has it (so that a peer
   * cannot grow a label set). `seconds`: from the NOTIFY's dispatch to the handler's answer (0 when unhandled).
   */
  message?(name: string | undefined, outcome: SpoeMessageOutcome, seconds: number): void;
  /**
   * A message with a handler is about to run: a scope to run it in, or undefined for none. Given what a SpoeContext
   * holds (`new SpoeContext(args)` when one is needed): the transport builds nothing more per message.
   */
  messageScope?(...args: SpoeContextArgs): SpoeMessageScope | undefined;
  /** An ACK was encoded for the socket: its size in bytes, length prefix included. */
  ack?(bytes: number): void;
  /** The agent sent AGENT-DISCONNECT with this SPOP status. */
  agentDisconnect?(status: number): void;
  /** HAProxy sent HAPROXY-DISCONNECT with this SPOP status (undefined when it could not be decoded). */
  haproxyDisconnect?(status: number | undefined): void;
  /** A peer broke the protocol: the SPOP status the agent answers with. */
  protocolError?(status: number): void;
  /** A connection stopped reading its socket (back-pressure): once each time it goes from reading to not reading. */
  paused?(cause: SpoePauseCause): void;
  /** A TLS handshake failed (no or a refused client certificate, not TLS, too slow): the socket was closed. */
  tlsRefused?(reason: SpoeTlsFailure): void;
}

/** One observer telling every one of `observers`, in order; undefined for none, the observer itself for one. */
export function combineObservers(observers: readonly SpoeObserver[]): SpoeObserver | undefined {
  if (observers.length <= 1) return observers[0];
  const all = [...observers];
  const scoping = all.filter((o) => o.messageScope);
  return {
    // Scopes nest in the order of the observers: the first one's is the outermost.
    messageScope:
      scoping.length === 0
        ? undefined
        : scoping.length === 1
          ? scoping[0].messageScope!.bind(scoping[0])
          : (...args) => nestScopes(scoping, args),
    connectionAccepted: fanOut(all, 'connectionAccepted'),
    connectionRefused: fanOut(all, 'connectionRefused'),
    hello: fanOut(all, 'hello'),
    notify: fanOut(all, 'notify'),
    // Absent when no observer has it: the transport then reads no clock for durations.
    message: fanOut(all, 'message'),
    ack: fanOut(all, 'ack'),
    agentDisconnect: fanOut(all, 'agentDisconnect'),
    haproxyDisconnect: fanOut(all, 'haproxyDisconnect'),
    protocolError: fanOut(all, 'protocolError'),
    paused: fanOut(all, 'paused'),
    tlsRefused: fanOut(all, 'tlsRefused'),
  };
}

type SpoeEvent = Exclude<keyof SpoeObserver, 'messageScope'>;

/**
 * An event told to each observer that has it: undefined for none, that observer's own method for one (the usual case:
 * metrics and tracing attached, and tracing counts nothing, so per frame nothing stands between), a loop for more.
 */
function fanOut<E extends SpoeEvent>(observers: readonly SpoeObserver[], event: E): SpoeObserver[E] {
  type Listener = (...args: Parameters<NonNullable<SpoeObserver[E]>>) => void;
  const listeners = observers.filter((o) => o[event]).map((o) => (o[event] as unknown as Listener).bind(o) as Listener);
  if (listeners.length <= 1) return listeners[0] as SpoeObserver[E];
  return ((...args: Parameters<Listener>) => {
    for (let i = 0; i < listeners.length; i++) listeners[i](...args);
  }) as SpoeObserver[E];
}

function nestScopes(observers: readonly SpoeObserver[], args: SpoeContextArgs): SpoeMessageScope | undefined {
  const scopes: SpoeMessageScope[] = [];
  for (const observer of observers) {
    const scope = observer.messageScope?.(...args);
    if (scope) scopes.push(scope);
  }
  if (scopes.length <= 1) return scopes[0];
  const runIn = <T>(index: number, fn: () => T): T =>
    index === scopes.length ? fn() : scopes[index].run(() => runIn(index + 1, fn));
  return {
    run: (fn) => runIn(0, fn),
    end: (outcome, error) => scopes.forEach((scope) => scope.end?.(outcome, error)),
  };
}
