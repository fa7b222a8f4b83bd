/** Every default of the transport, in one place. Options that are not set take these values. */
export const SPOE_DEFAULTS = {
  host: '0.0.0.0',
  port: 12345,
  /** HAProxy's own default (tune.bufsize 16384 minus the 4-byte length). */
  maxFrameSize: 16380,
  /** HAProxy 3.1+ pipelines up to 20 NOTIFY per connection; leave room above it. */
  maxInFlightPerConnection: 64,
  /** Deadline of a message handler, unless `@MessagePattern(name, { deadline })` says otherwise. */
  handlerDeadlineMs: 1000,
  /** A connection that has not sent its HAPROXY-HELLO by then is closed. */
  helloTimeoutMs: 5000,
  /** A connection with nothing in flight and no frame for this long is closed. 0 disables. */
  idleTimeoutMs: 300_000,
  /** How long `close()` lets in-flight NOTIFY finish before answering them as failed. */
  drainTimeoutMs: 5000,
  /** After an AGENT-DISCONNECT, how long HAProxy has to close before the socket is destroyed. */
  disconnectLingerMs: 1000,
  /** Upper bound of a NOTIFY reassembled from fragments (HAProxy 2.x). */
  maxFragmentedPayload: 1024 * 1024,
  /** ACK bytes a connection may have queued unsent (HAProxy not reading) before the agent stops reading NOTIFY. */
  maxPendingWriteBytes: 1024 * 1024,
  pipelining: true,
  /**
   * Off: async lets HAProxy 2.x expect an ACK on any connection of the engine, and a soft-stopping 2.6 then drops
   * streams whose applet disconnected (measured in the HAProxy reload tests). Pipelining gives the same concurrency.
   */
  async: false,
  fragmentation: true,
} as const;

/** The `extras` key of `@MessagePattern(name, { deadline })` that overrides the handler deadline (milliseconds). */
export const SPOE_DEADLINE_EXTRA = 'deadline';

/** Transport id of {@link SpoeServer}, for `@MessagePattern(name, SPOE_TRANSPORT)` in multi-transport apps. */
export const SPOE_TRANSPORT = Symbol('SPOE_TRANSPORT');
