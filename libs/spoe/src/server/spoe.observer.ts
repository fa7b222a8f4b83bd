/** How a HAProxy HELLO ended: a connection that will carry NOTIFY, a health check, or a refusal (a protocol error). */
export type SpoeHelloOutcome = 'accepted' | 'healthcheck' | 'refused';

/**
 * How a message ended: its handler's actions went into the ACK (`ok`), it threw or returned no actions (`failed`), its
 * deadline passed first (`deadline`), or no handler has its name (`unhandled`).
 */
export type SpoeMessageOutcome = 'ok' | 'failed' | 'deadline' | 'unhandled';

/** Why a connection stopped reading: the three causes of its read gate (see SpoeConnection). */
export type SpoePauseCause = 'in-flight' | 'unflushed' | 'unsent';

/**
 * What the transport tells an observer, as it happens: the metrics of 'nestjs-spoe/metrics' are one. Every method is
 * optional and called synchronously on the event loop, so it must be quick and must not throw. With no observer the
 * transport calls nothing and measures nothing.
 */
export interface SpoeObserver {
  /** A socket was accepted (its HELLO comes next). */
  connectionAccepted?(remoteAddress: string): void;
  hello?(outcome: SpoeHelloOutcome): void;
  /** A whole NOTIFY was read (fragments count once, when the last arrives), with its number of messages. */
  notify?(messages: number): void;
  /**
   * A message of a NOTIFY ended. `name` is a registered pattern, or undefined when no handler has it (so that a peer
   * cannot grow a label set). `seconds`: from the NOTIFY's dispatch to the handler's answer (0 when unhandled).
   */
  message?(name: string | undefined, outcome: SpoeMessageOutcome, seconds: number): void;
  /** An ACK was encoded for the socket: its size in bytes, length prefix included. */
  ack?(bytes: number): void;
  /** The agent sent AGENT-DISCONNECT with this SPOP status. */
  agentDisconnect?(status: number): void;
  /** HAProxy sent HAPROXY-DISCONNECT with this SPOP status (undefined when it could not be decoded). */
  haproxyDisconnect?(status: number | undefined): void;
  /** A peer broke the protocol: the SPOP status the agent answers with. */
  protocolError?(status: number): void;
  /** A connection stopped reading its socket (back-pressure). */
  paused?(cause: SpoePauseCause): void;
}

/** One observer telling every one of `observers`, in order; undefined for none, the observer itself for one. */
export function combineObservers(observers: readonly SpoeObserver[]): SpoeObserver | undefined {
  if (observers.length <= 1) return observers[0];
  const all = [...observers];
  return {
    connectionAccepted: (remoteAddress) => all.forEach((o) => o.connectionAccepted?.(remoteAddress)),
    hello: (outcome) => all.forEach((o) => o.hello?.(outcome)),
    notify: (messages) => all.forEach((o) => o.notify?.(messages)),
    message: (name, outcome, seconds) => all.forEach((o) => o.message?.(name, outcome, seconds)),
    ack: (bytes) => all.forEach((o) => o.ack?.(bytes)),
    agentDisconnect: (status) => all.forEach((o) => o.agentDisconnect?.(status)),
    haproxyDisconnect: (status) => all.forEach((o) => o.haproxyDisconnect?.(status)),
    protocolError: (status) => all.forEach((o) => o.protocolError?.(status)),
    paused: (cause) => all.forEach((o) => o.paused?.(cause)),
  };
}
