import { Logger } from '@nestjs/common';
import { CustomTransportStrategy, MessageHandler, Server } from '@nestjs/microservices';
import { EventEmitter } from 'node:events';
import { lstat, unlink } from 'node:fs/promises';
import { AddressInfo, connect, createServer, Server as NetServer, Socket } from 'node:net';
import { createServer as createTlsServer, Server as TlsServer } from 'node:tls';
import { isObservable } from 'rxjs';
import { finalize } from 'rxjs/operators';
import {
  Dispatcher,
  SpoeHandler,
  SpoeInvoker,
  SpoeMessageHandling,
  SpoeMessageInvoker,
  SpoePayload,
  SpoeRoute,
  toPayload,
} from './dispatcher';
import { peerAddress, refuseConnection, SpoeConnection, SpoeConnectionHost, SpoeTraffic } from './connection';
import { HandlerPipelines, NestHandlerSource } from './handler-pipeline';
import { InFlightBudget } from './in-flight-budget';
import { formatAddress } from '../address';
import { encodeAgentDisconnect } from '../protocol/disconnect';
import { SpopStatus } from '../protocol/status';
import {
  MAX_TIMEOUT_MS,
  SPOE_DEADLINE_EXTRA,
  SPOE_REFUSAL_WARNING_INTERVAL_MS,
  SPOE_TRANSPORT,
} from '../spoe.constants';
import { SpoeContext } from './spoe.context';
import { SpoeEvents, SpoeStatus } from './spoe.events';
import { MESSAGE_CONTEXT_OBSERVER } from './spoe.message-context';
import { combineObservers, SpoeObserver } from './spoe.observer';
import { NormalizedSpoeOptions, normalizeSpoeOptions, SpoeOptionsError, SpoeServerOptions } from './spoe.options';
import { checkTlsOptions, SpoeTlsOptions, tlsFailureOf } from './spoe.tls';

/** A handler registration that cannot work (two handlers for one message, a non-string pattern, a bad deadline). */
export class SpoeHandlerError extends Error {
  constructor(message: string) {
    super(`nestjs-spoe: ${message}`);
    this.name = 'SpoeHandlerError';
  }
}

/** Counters for health checks and metrics. */
export interface SpoeServerStats {
  readonly listening: boolean;
  readonly connections: number;
  readonly inFlight: number;
  /** Payload bytes of the NOTIFY in flight, counted against `maxInFlightBytes`. */
  readonly inFlightBytes: number;
  /** NOTIFY frames read since the server was made (a fragmented one once). */
  readonly notifies: number;
  /** ACK frames written since the server was made. */
  readonly acks: number;
  /** Bytes of those ACK frames, length prefixes included. */
  readonly ackBytes: number;
}

/**
 * The SPOE transport: serves HAProxy over SPOP 2.0 and routes each SPOE message to the `@MessagePattern(name)`
 * handler of the same name.
 *
 * ```ts
 * const app = await NestFactory.createMicroservice(AppModule, { strategy: new SpoeServer({ port: 12345 }) });
 * await app.listen();
 * ```
 */
export class SpoeServer extends Server<SpoeEvents, SpoeStatus> implements CustomTransportStrategy {
  override readonly transportId = SPOE_TRANSPORT;
  protected override readonly logger = new Logger(SpoeServer.name);
  readonly options: NormalizedSpoeOptions;
  private readonly dispatcher: Dispatcher;
  private readonly host: SpoeConnectionHost & { refusingHealthChecks: boolean };
  /**
   * What the dispatcher looks up once per message, derived from Nest's registry (getHandlers()) when first needed and
   * again whenever a handler is registered: Nest's registry holds `(pattern → handler chain)`, this holds what each
   * message needs at once (the handler's invoker, its deadline, its event handlers).
   */
  private routes: Map<string, SpoeRoute> | undefined;
  /** nestjs-spoe's pipeline of each @MessagePattern handler, built when Nest registered it. */
  private readonly compiled = new Map<MessageHandler, SpoeMessageHandling>();
  private readonly connections = new Set<SpoeConnection>();
  private readonly observers: SpoeObserver[] = [];
  private readonly events = new EventEmitter();
  private server: NetServer | undefined;
  /** The TLS options in use: the constructor's, then each reloadTls()'s. */
  private tlsOptions: Readonly<SpoeTlsOptions> | undefined;
  private closing: Promise<void> | undefined;
  private invoker: SpoeInvoker = (handler, payload, context) => handler(payload, context);
  private hooked = false;
  private pipelines: HandlerPipelines | undefined;
  /** The AGENT-DISCONNECT of a connection refused at maxConnections, encoded at the first refusal. */
  private refusal: Buffer | undefined;
  private refusedSinceWarning = 0;
  private lastRefusalWarning = -Infinity;

  constructor(options: SpoeServerOptions = {}) {
    super();
    this.options = normalizeSpoeOptions(options);
    this.tlsOptions = this.options.tls;
    this.dispatcher = new Dispatcher(
      (name) => (this.routes ??= this.buildRoutes()).get(name),
      (handler, payload, context) => this.invoker(handler, payload, context),
      this.options.errorVariable,
    );
    if (this.options.messageContext) this.observe(MESSAGE_CONTEXT_OBSERVER);
    // What each connection sees of its server: a private object, so that none of it is public API.
    this.host = {
      options: this.options,
      dispatcher: this.dispatcher,
      budget: new InFlightBudget(this.options.maxInFlightBytes),
      traffic: new SpoeTraffic(),
      refusingHealthChecks: false,
      connected: (connection) => this.events.emit('connection', { remoteAddress: connection.remoteAddress }),
      closed: (connection, event) => {
        this.connections.delete(connection);
        this.events.emit('disconnect', event);
      },
    };
  }

  /** The bound address (TCP: `{ address, port }`; Unix: the path), once listening. */
  get address(): AddressInfo | string | undefined {
    return this.server?.address() ?? undefined;
  }

  /**
   * Adds an observer of what the transport does (connections, HELLOs, NOTIFY, each message's outcome and duration,
   * ACKs, disconnects, protocol errors, back-pressure): SpoeMetrics of 'nestjs-spoe/metrics' is one. Returns the
   * function that removes it.
   */
  observe(observer: SpoeObserver): () => void {
    this.observers.push(observer);
    this.dispatcher.observer = combineObservers(this.observers);
    return () => {
      const index = this.observers.indexOf(observer);
      if (index >= 0) this.observers.splice(index, 1);
      this.dispatcher.observer = combineObservers(this.observers);
    };
  }

  get stats(): SpoeServerStats {
    let inFlight = 0;
    for (const c of this.connections) inFlight += c.inFlightCount;
    return {
      listening: this.server?.listening ?? false,
      connections: this.connections.size,
      inFlight,
      inFlightBytes: this.host.budget.held,
      notifies: this.host.traffic.notifies,
      acks: this.host.traffic.acks,
      ackBytes: this.host.traffic.ackBytes,
    };
  }

  /**
   * Registers in Nest's registry, with SPOE's rules: a pattern is a message name; one @MessagePattern handler per
   * message (its actions make the ACK), ahead of the message's @EventPattern handlers whatever the order they came in.
   */
  override addHandler(
    pattern: unknown,
    callback: MessageHandler,
    isEventHandler = false,
    extras: Record<string, unknown> = {},
  ): void {
    if (typeof pattern !== 'string') {
      throw new SpoeHandlerError(`SPOE patterns are spoe-message names (strings), got ${JSON.stringify(pattern)}`);
    }
    const existing = this.getHandlerByPattern(pattern);
    if (isEventHandler) {
      super.addHandler(pattern, callback, true, extras);
    } else {
      if (existing && messageHandlerOf(existing)) {
        throw new SpoeHandlerError(
          `two @MessagePattern handlers for SPOE message "${pattern}": each message has one handler (its actions make the ACK)`,
        );
      }
      this.deadlineOf(pattern, extras);
      super.addHandler(pattern, callback, false, extras);
      // Nest's registry keeps one chain per pattern: event handlers registered first follow the message handler.
      if (existing) callback.next = existing;
      const compiled = this.compile(pattern);
      if (compiled) this.compiled.set(callback, compiled);
    }
    this.routes = undefined;
  }

  override setOnProcessingStartHook(hook: Parameters<Server['setOnProcessingStartHook']>[0]): void {
    super.setOnProcessingStartHook(hook);
    this.hooked = true;
    this.invoker = (handler, payload, context) => this.invokeWithHooks(handler, payload, context);
    // The hooks wrap Nest's handler as registered: handlers already compiled go back to it.
    this.compiled.clear();
    this.routes = undefined;
  }

  /**
   * @internal Given by SpoeModule: with Nest's modules and config, handlers run through nestjs-spoe's own pipeline
   * (same enhancers, same order, synchronous when they are; see handler-pipeline.ts) instead of Nest's generic one.
   */
  useNestPipelines(source: NestHandlerSource): void {
    this.pipelines = new HandlerPipelines(source);
  }

  listen(callback: (error?: unknown) => void): void {
    let settled = false;
    const fail = (error: unknown): void => {
      if (settled) return;
      settled = true;
      callback(error);
    };
    try {
      const server = this.createListener();
      this.server = server;
      server.once('error', fail);
      const onListening = (): void => {
        if (settled) return;
        settled = true;
        server.off('error', fail);
        server.on('error', (error) => this.onServerError(error));
        this.logger.log(`SPOE agent listening on ${formatAddress(this.address)}`);
        this._status$.next(SpoeStatus.Listening);
        callback();
      };
      const path = this.options.path;
      if (path === undefined) server.listen(this.options.port, this.options.host, onListening);
      else
        removeStaleSocket(path).then(
          () => server.listen(path, onListening),
          (error: unknown) => fail(error),
        );
    } catch (error) {
      fail(error);
    }
  }

  /** The TLS options in use (the latest {@link reloadTls}'s), undefined when the transport is plain TCP. */
  get tls(): Readonly<SpoeTlsOptions> | undefined {
    return this.tlsOptions;
  }

  /**
   * Replaces the certificate, key, CA… of a TLS transport without a restart: connections accepted from now on
   * handshake with them, live ones keep theirs. The options are checked first (a key that does not match its
   * certificate, a PEM that does not parse): on a {@link SpoeOptionsError} nothing changed. `requestCert` and
   * `rejectUnauthorized` stay as the server was created with.
   */
  reloadTls(options: SpoeTlsOptions): void {
    if (!this.tlsOptions) {
      throw new SpoeOptionsError('reloadTls: this server serves plain TCP (no tls option); TLS needs a new server');
    }
    let checked: Readonly<SpoeTlsOptions>;
    try {
      checked = checkTlsOptions(
        {
          ...options,
          requestCert: this.tlsOptions.requestCert,
          rejectUnauthorized: this.tlsOptions.rejectUnauthorized,
        },
        'reloadTls',
      );
    } catch (error) {
      throw new SpoeOptionsError((error as Error).message);
    }
    if (this.server instanceof TlsServer) this.server.setSecureContext(checked);
    this.tlsOptions = checked;
    this.logger.log('TLS certificates reloaded: new connections use them');
  }

  /**
   * The first step of a graceful rollout, before {@link close}: from now on, health-check HELLOs (`option spop-check`)
   * are answered with AGENT-DISCONNECT (status 0) instead of AGENT-HELLO, which every HAProxy version counts as a failed
   * check. Once `fall` checks failed, HAProxy marks the agent down and sends it no new work, while the connections it
   * has keep being served as before. Call `close()` once HAProxy had the time to notice (`inter` × `fall`).
   */
  refuseHealthChecks(): void {
    if (this.host.refusingHealthChecks) return;
    this.host.refusingHealthChecks = true;
    this.logger.log('health checks are refused from now on: HAProxy will mark this agent down');
  }

  /**
   * Stops accepting connections, lets in-flight NOTIFY finish for up to `drainTimeoutMs` (then answers the rest as
   * failed), sends AGENT-DISCONNECT (status 0) on every connection and resolves once all are closed.
   */
  close(): Promise<void> {
    return (this.closing ??= this.shutdown());
  }

  on<K extends keyof SpoeEvents>(event: K, callback: SpoeEvents[K]): void {
    this.events.on(event, callback as (...args: unknown[]) => void);
  }

  unwrap<T>(): T {
    if (!this.server) throw new Error('nestjs-spoe: the server is not listening yet; call unwrap() after listen()');
    return this.server as T;
  }

  /** A plain TCP listener, or a TLS one whose handshake must end within the HELLO timeout. */
  private createListener(): NetServer {
    const tls = this.tlsOptions;
    if (!tls) return createServer((socket) => this.accept(socket));
    const server = createTlsServer({ ...tls, handshakeTimeout: this.options.helloTimeoutMs }, (socket) =>
      this.accept(socket),
    );
    // A peer that fails the handshake (no certificate, another CA's, plain SPOP, too slow) never reaches SPOP. Its
    // socket is destroyed here: node:tls leaves one that timed out open. Normal enough on an exposed port to be quiet:
    // debug, and counted by observers.
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket) => {
      socket.destroy();
      const reason = tlsFailureOf(error, socket);
      this.logger.debug(
        `TLS handshake with ${peerAddress(socket, this.options.path)} failed (${reason}): ${error.message}`,
      );
      this.dispatcher.observer?.tlsRefused?.(reason);
    });
    // Over TLS a socket reaches accept(), and maxConnections, only once its handshake is done: until then it costs the
    // handshake's CPU and memory. Node closes sockets beyond twice maxConnections before any TLS work, so that a flood
    // of handshakes is bounded by count, not only by helloTimeoutMs.
    server.maxConnections = 2 * this.options.maxConnections;
    server.on('drop', (data) => {
      const peer = data?.remoteAddress === undefined ? 'unknown' : `${data.remoteAddress}:${data.remotePort}`;
      this.dispatcher.observer?.connectionRefused?.(peer);
    });
    return server;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= this.options.maxConnections) return this.refuse(socket);
    const connection = new SpoeConnection(socket, this.host);
    this.connections.add(connection);
    this.dispatcher.observer?.connectionAccepted?.(connection.remoteAddress);
  }

  /** A connection beyond maxConnections: AGENT-DISCONNECT status 13; a warning at most every few seconds. */
  private refuse(socket: Socket): void {
    const max = this.options.maxConnections;
    this.refusal ??= encodeAgentDisconnect({
      status: SpopStatus.ResourceAllocation,
      message: `too many connections: the agent serves at most ${max}`,
    });
    refuseConnection(socket, this.refusal, this.options.disconnectLingerMs);
    const observer = this.dispatcher.observer;
    observer?.connectionRefused?.(peerAddress(socket, this.options.path));
    observer?.agentDisconnect?.(SpopStatus.ResourceAllocation);
    this.refusedSinceWarning++;
    const now = Date.now();
    if (now - this.lastRefusalWarning < SPOE_REFUSAL_WARNING_INTERVAL_MS) return;
    const since = this.lastRefusalWarning === -Infinity ? '' : ' since the previous warning';
    this.logger.warn(
      `maxConnections (${max}) are open: ${this.refusedSinceWarning} connection(s) refused with AGENT-DISCONNECT status 13${since}`,
    );
    this.refusedSinceWarning = 0;
    this.lastRefusalWarning = now;
  }

  private async shutdown(): Promise<void> {
    const server = this.server;
    if (!server) {
      this._status$.next(SpoeStatus.Closed);
      return;
    }
    this._status$.next(SpoeStatus.Draining);
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    const drained = Promise.all([...this.connections].map((c) => c.drain()));
    const deadline = setTimeout(() => {
      this.dispatcher.expireAll();
      for (const connection of this.connections) connection.endDrain();
    }, this.options.drainTimeoutMs);
    await drained;
    clearTimeout(deadline);
    await serverClosed;
    this.dispatcher.close();
    this._status$.next(SpoeStatus.Closed);
    this.logger.log('SPOE agent closed');
  }

  /** The handler between Nest's processing hooks (tracing integrations): the end hook runs once its result is out. */
  private invokeWithHooks(handler: SpoeHandler, payload: SpoePayload, context: SpoeContext): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      this.runWithProcessingHooks(context, async (runEndHook) => {
        try {
          const result = await handler(payload, context);
          if (isObservable(result)) resolve(result.pipe(finalize(runEndHook)));
          else {
            runEndHook();
            resolve(result);
          }
        } catch (error) {
          // Settled here, not rethrown: runWithProcessingHooks would rethrow into a hook's promise nobody awaits.
          runEndHook();
          reject(error);
        }
      });
    });
  }

  /** @internal Which pipeline runs the `@MessagePattern(pattern)` handler (for tests). */
  pipelineOf(pattern: string): 'nestjs-spoe' | 'nest' | undefined {
    const handler = messageHandlerOf(this.getHandlerByPattern(pattern));
    if (!handler) return undefined;
    return this.compiled.has(handler) ? 'nestjs-spoe' : 'nest';
  }

  /** The routing table, from Nest's registry: per message, its handler's invoker, deadline and event handlers. */
  private buildRoutes(): Map<string, SpoeRoute> {
    const routes = new Map<string, SpoeRoute>();
    for (const [pattern, head] of this.getHandlers()) {
      const handler = messageHandlerOf(head);
      const compiled = handler && this.compiled.get(handler);
      // Calling the first event handler runs the others: Nest chains them through `next`.
      const events = handler ? handler.next : head;
      routes.set(pattern, {
        name: pattern,
        handler,
        invoke: handler && (compiled?.invoke ?? this.viaNest(handler)),
        filterError: compiled?.filterError,
        events: events ? [events] : [],
        deadlineMs: handler ? this.deadlineOf(pattern, handler.extras ?? {}) : this.options.handlerDeadlineMs,
      });
    }
    return routes;
  }

  /**
   * nestjs-spoe's pipeline for the `@MessagePattern(pattern)` handler Nest is registering, when one can be built:
   * resolved now, when Nest resolves its own, so both see the same enhancers.
   */
  private compile(pattern: string): SpoeMessageHandling | undefined {
    const pipelines = this.pipelines;
    if (!pipelines || this.hooked) return undefined;
    const reason = pipelines.unsupportedReason();
    try {
      const compiled = reason === undefined ? pipelines.compile(pattern, this.transportId) : undefined;
      if (!compiled)
        this.logger.debug(`"${pattern}" keeps Nest's RPC pipeline: ${reason ?? 'request-scoped or not found'}`);
      return compiled;
    } catch (error) {
      this.logger.debug(`"${pattern}" keeps Nest's RPC pipeline: ${(error as Error).message}`);
      return undefined;
    }
  }

  /** Runs a message through the handler as Nest registered it: `(payload, context)`, every argument decoded. */
  private viaNest(handler: SpoeHandler): SpoeMessageInvoker {
    return (message, streamId, frameId, connection) =>
      this.invoker(handler, toPayload(message), new SpoeContext([message, streamId, frameId, connection]));
  }

  private deadlineOf(pattern: string, extras: Record<string, unknown>): number {
    const deadline = extras[SPOE_DEADLINE_EXTRA];
    if (deadline === undefined) return this.options.handlerDeadlineMs;
    if (typeof deadline !== 'number' || !Number.isInteger(deadline) || deadline < 1 || deadline > MAX_TIMEOUT_MS) {
      throw new SpoeHandlerError(
        `@MessagePattern("${pattern}") extras.deadline must be a positive integer (ms), got ${String(deadline)}`,
      );
    }
    return deadline;
  }

  private onServerError(error: Error): void {
    if (this.events.listenerCount('error') > 0) this.events.emit('error', error);
    else this.logger.error(`server error: ${error.message}`);
  }
}

/**
 * A Unix socket file left by a process that died would make listen() fail with EADDRINUSE. It is removed when nothing
 * accepts connections on it; a live socket, or a path that is not a socket, is left alone (listen() then reports it).
 */
async function removeStaleSocket(path: string): Promise<void> {
  const stats = await lstat(path).catch(() => undefined);
  if (!stats?.isSocket()) return;
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code !== 'ECONNREFUSED'));
  });
  if (!live) await unlink(path);
}

/** The @MessagePattern handler of a registry chain: Nest puts it first, event handlers after it. */
function messageHandlerOf(head: MessageHandler | null | undefined): MessageHandler | undefined {
  return head && !head.isEventHandler ? head : undefined;
}
