/*
 * Every default and limit of nestjs-spoe, in one place: the server's options, the client's (health indicator, CLI,
 * tests), and the bounds they share. Nothing else hard-codes a number.
 */

/** The largest delay Node's timers accept (2^31 - 1 ms); longer ones fire at once. */
export const MAX_TIMEOUT_MS = 0x7fffffff;

/** HAProxy's own max-frame-size (tune.bufsize 16384 minus the 4-byte length): what both sides announce by default. */
export const HAPROXY_MAX_FRAME_SIZE = 16380;

/** The port SPOE examples use: what an agent listens on and a client dials unless told otherwise. */
const SPOE_DEFAULT_PORT = 12345;

/** Every default of the transport. Options that are not set take these values. */
export const SPOE_DEFAULTS = {
  host: '0.0.0.0',
  port: SPOE_DEFAULT_PORT,
  maxFrameSize: HAPROXY_MAX_FRAME_SIZE,
  /**
   * Connections open at once (those still in their HELLO, and health checks, included); the next one is refused with
   * AGENT-DISCONNECT status 13. HAProxy opens connections as its SPOE traffic needs them (3.1+ pipelines up to 20
   * NOTIFY on each, per thread; 2.x one per SPOE applet): tens to a few hundred for a busy HAProxy. 4096 leaves room
   * for several HAProxy processes, and for the old ones a reload leaves behind until their connections close, while a
   * flood of connections stays far below what a Node process has in file descriptors and memory.
   */
  maxConnections: 4096,
  /** HAProxy 3.1+ pipelines up to 20 NOTIFY per connection; leave room above it. */
  maxInFlightPerConnection: 64,
  /**
   * Payload bytes of the NOTIFY whose handlers run, across all connections, beyond which no connection reads more.
   * One connection alone holds at most maxInFlightPerConnection NOTIFY (1 MiB of 16 KiB frames, more when reassembled
   * from fragments), which times maxConnections bounds nothing a process can live with. NOTIFY are typically a few
   * hundred bytes: 32 MiB is tens of thousands of them, beyond the concurrency one process serves, while peers sending
   * large frames to slow handlers stop there.
   */
  maxInFlightBytes: 32 * 1024 * 1024,
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
  /** Off: before Node 24, an AsyncLocalStorage in use slows every Promise of the process (a promise hook). */
  messageContext: false,
} as const;

/** At most one warning per this many ms about connections refused at `maxConnections` (the rest are counted). */
export const SPOE_REFUSAL_WARNING_INTERVAL_MS = 10_000;

/**
 * Names of messages without a handler that are each warned about once: the names a process remembers for that, so that
 * a peer sending ever new names cannot grow its memory (nor its logs). A configuration has a handful.
 */
export const SPOE_UNKNOWN_MESSAGES_WARNED = 100;

/** The `extras` key of `@MessagePattern(name, { deadline })` that overrides the handler deadline (milliseconds). */
export const SPOE_DEADLINE_EXTRA = 'deadline';

/** Transport id of {@link SpoeServer}, for `@MessagePattern(name, SPOE_TRANSPORT)` in multi-transport apps. */
export const SPOE_TRANSPORT = Symbol('SPOE_TRANSPORT');

/** Defaults of the HAProxy-side client (SpoeClient): the health indicator, the spoe-health CLI and users' tests. */
export const SPOE_CLIENT_DEFAULTS = {
  host: '127.0.0.1',
  port: SPOE_DEFAULT_PORT,
  maxFrameSize: HAPROXY_MAX_FRAME_SIZE,
  supportedVersions: '2.0',
  /** What HAProxy 3.1+ announces (2.x adds async). */
  capabilities: ['pipelining'],
  /** Bound on connecting, the HELLO and each NOTIFY. */
  timeoutMs: 5000,
  /** Bound on the health indicator's probe: readiness must answer quickly. */
  healthTimeoutMs: 1000,
  /** Bound on the spoe-health CLI's probe: a container probe can wait a little longer. */
  cliTimeoutMs: 2000,
} as const;
