import { Logger } from '@nestjs/common';
import type { Socket } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { SpoeAction, writeAck } from '../protocol/ack';
import { decodeDisconnect, writeAgentDisconnect } from '../protocol/disconnect';
import { SpoeEncodeError, SpopError, SpopFragmentationError, SpopInvalidFrameError } from '../protocol/errors';
import { NotifyAssembler } from '../protocol/fragments';
import { Frame, FrameFlag, FrameType, SpopId } from '../protocol/frame';
import { FrameReader } from '../protocol/frame-reader';
import { FrameWriter } from '../protocol/frame-writer';
import { AgentHello, decodeHaproxyHello, negotiateHello, writeAgentHello } from '../protocol/hello';
import { decodeNotify } from '../protocol/notify';
import { SpopStatus, spopStatusReason } from '../protocol/status';
import { Dispatcher, SpoeFailure } from './dispatcher';
import { InFlightBudget, InFlightBudgetWaiter } from './in-flight-budget';
import { SpoeConnectionInfo } from './spoe.context';
import { SpoeDisconnectEvent } from './spoe.events';
import { NormalizedSpoeOptions } from './spoe.options';

/** What a connection needs from its server. */
export interface SpoeConnectionHost {
  readonly options: NormalizedSpoeOptions;
  readonly dispatcher: Dispatcher;
  /** The bytes of NOTIFY in flight across the server's connections, against `maxInFlightBytes`. */
  readonly budget: InFlightBudget;
  /** What the server's connections carried, counted as it goes: read by `SpoeServer.stats`, and so by the metrics. */
  readonly traffic: SpoeTraffic;
  /** Health-check HELLOs are answered with AGENT-DISCONNECT (see SpoeServer.refuseHealthChecks). */
  readonly refusingHealthChecks: boolean;
  connected(connection: SpoeConnection): void;
  closed(connection: SpoeConnection, event: SpoeDisconnectEvent): void;
}

/**
 * NOTIFY frames read and ACK frames written by all of a server's connections, since it was made. Three additions per
 * frame, whether or not anything reads them: cheaper than telling an observer, which is why metrics read these.
 */
export class SpoeTraffic {
  notifies = 0;
  acks = 0;
  ackBytes = 0;
}

/** Where a connection is in its SPOP life: the transitions are listed on {@link SpoeConnection}. */
type Lifecycle = 'hello' | 'ready' | 'draining' | 'closing' | 'closed';

/**
 * Why a connection whose lifecycle reads (`hello`, `ready`) does not read its socket; `open` when it does. SPOP leaves
 * pacing to the peers: these are the agent's own bounds on what one HAProxy connection, or all of them, can make it
 * hold.
 */
type ReadGate =
  /** `maxInFlightPerConnection` NOTIFY are being handled. */
  | 'in-flight'
  /** `maxPendingWriteBytes` of ACKs are encoded and not yet handed to the socket (one turn's burst). */
  | 'unflushed'
  /** The socket holds `maxPendingWriteBytes` unsent and waits for its 'drain'. */
  | 'unsent'
  /** The server's connections handle `maxInFlightBytes` of NOTIFY: this one waits its turn in the budget. */
  | 'in-flight-bytes'
  | 'open';

const QUIET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

// One for all connections: an idle connection should cost its socket and little else.
const logger = new Logger('SpoeConnection');

/**
 * One HAProxy connection: the HELLO handshake, NOTIFY frames in, one ACK out for each, and every way a connection
 * ends. Frames are decoded and encoded by the protocol layer; handlers run in the {@link Dispatcher}.
 *
 * Lifecycle, to check against SPOE.txt (section numbers are its own). "end()": the socket is ended, and destroyed if
 * HAProxy has not closed it `disconnectLingerMs` later. "disconnect(s)": AGENT-DISCONNECT with status s (3.2.9, 3.5),
 * then end().
 *
 *   state      event                                          next       the agent sends
 *   —          a socket accepted while maxConnections are     —          disconnect(13) in one write: no connection
 *              open (status 13: resource allocation error)               is made, see {@link refuseConnection}
 *   hello      HAPROXY-HELLO, healthcheck (3.2.4)             closing    AGENT-HELLO and end(), no DISCONNECT (3.2.5)
 *   hello      HAPROXY-HELLO, healthcheck, while the server   closing    disconnect(0): HAProxy counts the check as
 *              refuses health checks                                     failed, and marks the server down
 *   hello      HAPROXY-HELLO (3.2.4)                          ready      AGENT-HELLO, max-frame-size negotiated (3.2.5)
 *   hello      a HELLO refused, another frame, a protocol     closing    disconnect(its status) (3.2.3: error during
 *              error, no HELLO within helloTimeoutMs                     the HELLO handshake)
 *   hello      drain()                                        closed     nothing, nothing is owed: socket destroyed
 *   ready      NOTIFY (3.2.6)                                 ready      its ACK, once its handlers answered (3.2.7)
 *   ready      a frame of unknown type (3.2.2)                ready      nothing: it is skipped
 *   ready      a protocol error, or idleTimeoutMs with        closing    disconnect(its status)
 *              nothing in flight
 *   ready      drain()                                        draining   nothing at once (disconnect(0) if idle)
 *   draining   NOTIFY                                         draining   its ACK: frames HAProxy sent before it read
 *                                                                        the AGENT-DISCONNECT are answered
 *   draining   a lull: nothing in flight, no frame unread     closing    disconnect(0), between two NOTIFY
 *   draining   endDrain() (the server's drainTimeoutMs; the   closing    disconnect(0); frames unread are dropped
 *              handlers still running were answered failed)
 *   hello,     HAPROXY-DISCONNECT (3.2.8)                     closing    disconnect(0)
 *    ready,
 *    draining
 *   closing    HAProxy closes, or disconnectLingerMs passes   closed     nothing more
 *   any        the socket closes                              closed     nothing: an ACK still owed is dropped
 *
 * Flow control, while `hello`, `ready` or `draining` ({@link ReadGate}): before each frame the four causes below are checked;
 * the first that holds closes the gate (pauses the socket) until the event that can clear it, when all are checked
 * again.
 *
 *   gate             closed while                                   checked again on
 *   in-flight        NOTIFY in flight >= maxInFlightPerConnection   an ACK written
 *   unflushed        ACK bytes not yet flushed >=                   the writer's flush, at the end of the turn
 *                    maxPendingWriteBytes
 *   unsent           socket bytes unsent >= maxPendingWriteBytes,   the socket's 'drain'
 *                    and the socket asked for a 'drain'
 *   in-flight-bytes  (not hello) payload bytes of the NOTIFY in    the budget's turn: an ACK on any connection
 *                    flight on all the server's connections >=      brings the bytes below the bound, and those
 *                    maxInFlightBytes                               that waited before it had theirs (InFlightBudget)
 */
export class SpoeConnection implements InFlightBudgetWaiter {
  private readonly reader: FrameReader;
  private readonly writer: FrameWriter;
  private assembler: NotifyAssembler | undefined;
  private lifecycle: Lifecycle = 'hello';
  private gate: ReadGate = 'open';
  private info: SpoeConnectionInfo | undefined;
  private inFlight = 0;
  private readonly budget: InFlightBudget;
  private helloTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private closeEvent: SpoeDisconnectEvent | undefined;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  readonly remoteAddress: string;

  constructor(
    private readonly socket: Socket,
    private readonly host: SpoeConnectionHost,
  ) {
    const options = host.options;
    this.remoteAddress = peerAddress(socket, options.path);
    this.budget = host.budget;
    this.reader = new FrameReader(options.maxFrameSize);
    this.writer = new FrameWriter((data) => this.flushed(data), options.maxFrameSize);
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => this.onError(error));
    socket.on('close', () => this.onClose());
    socket.on('drain', this.onDrain);
    this.helloTimer = setTimeout(
      () => this.disconnect(SpopStatus.Timeout, `no HAPROXY-HELLO within ${options.helloTimeoutMs} ms`),
      options.helloTimeoutMs,
    );
  }

  /** NOTIFY frames being handled. */
  get inFlightCount(): number {
    return this.inFlight;
  }

  /** Negotiated settings, once the HELLO is done. */
  get settings(): AgentHello | undefined {
    return this.info?.settings;
  }

  /**
   * Graceful end: AGENT-DISCONNECT (status 0) at the first lull — nothing in flight, no frame received and unread —
   * and close. Until then NOTIFY are read and answered as usual: HAProxy may have sent some before it could read the
   * AGENT-DISCONNECT, and 2.x fails every NOTIFY a connection owes it once that connection is disconnected (its
   * SPOE applets keep using connections to a server marked down). Resolves once the socket is closed. The server
   * bounds the wait with {@link endDrain}.
   */
  drain(): Promise<void> {
    if (this.lifecycle === 'hello') this.destroy();
    else if (this.lifecycle === 'ready') {
      this.lifecycle = 'draining';
      this.disconnectAtLull();
    }
    return this.closedPromise;
  }

  /**
   * The drain's time is up (the server answered what was still in flight as failed): AGENT-DISCONNECT now, whatever
   * HAProxy sent meanwhile.
   */
  endDrain(): void {
    if (this.lifecycle === 'draining') this.disconnect(SpopStatus.Normal, 'agent is shutting down');
  }

  private disconnectAtLull(): void {
    if (this.inFlight === 0 && this.reader.bufferedBytes === 0)
      this.disconnect(SpopStatus.Normal, 'agent is shutting down');
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.lifecycle === 'closing' || this.lifecycle === 'closed') return;
    this.reader.push(chunk);
    this.pump();
  }

  /**
   * Reads and handles whole frames while the lifecycle reads and the gate is open; on the first cause that holds,
   * closes the gate and pauses the socket. Needs no guard against re-entry: besides 'data', only an ACK, a flush or a
   * 'drain' call it, and only while the gate is closed; the gate is open while the pump runs, so a handler that
   * answers at once, whose ACK is written inside handleFrame, does not pump from within the pump.
   */
  private pump(): void {
    const paused = this.gate !== 'open';
    this.gate = 'open';
    this.host.dispatcher.burst();
    try {
      const { maxInFlightPerConnection, maxPendingWriteBytes } = this.host.options;
      const budget = this.budget;
      // Read once per burst: the socket is not written during one (ACKs are flushed at the end of the turn).
      const unsent = this.socket.writableNeedDrain && this.socket.writableLength >= maxPendingWriteBytes;
      while (this.lifecycle === 'ready' || this.lifecycle === 'hello' || this.lifecycle === 'draining') {
        // ACKs not yet flushed count too: a burst of NOTIFY is answered within one turn, before any write. The first
        // cause that holds, each checked once ('open' when none does, nearly always).
        const gate: ReadGate = unsent
          ? 'unsent'
          : this.inFlight >= maxInFlightPerConnection
            ? 'in-flight'
            : this.writer.pendingBytes >= maxPendingWriteBytes
              ? 'unflushed'
              : budget.exhausted && this.lifecycle !== 'hello'
                ? 'in-flight-bytes'
                : 'open';
        if (gate !== 'open') {
          this.gate = gate;
          if (gate === 'in-flight-bytes') budget.wait(this);
          if (!paused) {
            this.socket.pause();
            this.host.dispatcher.observer?.paused?.(gate);
          }
          return;
        }
        const frame = this.reader.next();
        if (!frame) break;
        this.handleFrame(frame);
      }
      if (this.lifecycle === 'draining') this.disconnectAtLull();
      if (paused && (this.lifecycle === 'ready' || this.lifecycle === 'hello' || this.lifecycle === 'draining'))
        this.socket.resume();
    } catch (error) {
      this.protocolError(error);
    }
  }

  private handleFrame(frame: Frame): void {
    if (this.lifecycle === 'hello') return this.onHello(frame);
    switch (frame.type) {
      case FrameType.Notify:
      case FrameType.Unset: {
        const notify = this.assembler!.accept(frame);
        if (notify) this.onNotify(notify);
        return;
      }
      case FrameType.HaproxyDisconnect:
        return this.onHaproxyDisconnect(frame);
      case FrameType.HaproxyHello:
        throw new SpopInvalidFrameError('HAPROXY-HELLO after the handshake');
      case FrameType.AgentHello:
      case FrameType.AgentDisconnect:
      case FrameType.Ack:
        throw new SpopInvalidFrameError(`${FrameType[frame.type]} frame received from HAProxy`);
      default:
        // SPOE.txt 3.2.2: unknown frames may be silently skipped.
        logger.debug(`skipped a frame of unknown type ${frame.type} from ${this.remoteAddress}`);
    }
  }

  private onHello(frame: Frame): void {
    if (frame.type === FrameType.HaproxyDisconnect) return this.onHaproxyDisconnect(frame);
    if (frame.type !== FrameType.HaproxyHello) {
      throw new SpopInvalidFrameError(
        `expected HAPROXY-HELLO, got ${FrameType[frame.type] ?? `frame type ${frame.type}`}`,
      );
    }
    if (!(frame.flags & FrameFlag.Fin)) throw new SpopFragmentationError('fragmented HAPROXY-HELLO');
    if (frame.streamId !== 0 || frame.frameId !== 0)
      throw new SpopInvalidFrameError('HAPROXY-HELLO with a non-zero stream-id or frame-id');
    const options = this.host.options;
    const hello = decodeHaproxyHello(frame);
    if (hello.healthcheck && this.host.refusingHealthChecks) {
      // Every HAProxy version fails a check answered with AGENT-DISCONNECT instead of AGENT-HELLO.
      this.host.dispatcher.observer?.hello?.('healthcheck');
      return this.disconnect(SpopStatus.Normal, 'agent is draining: send it no new work');
    }
    const settings = negotiateHello(hello, { maxFrameSize: options.maxFrameSize, capabilities: options.capabilities });
    clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    const w = this.writer.begin();
    writeAgentHello(w, settings);
    this.writer.commit();
    this.host.dispatcher.observer?.hello?.(hello.healthcheck ? 'healthcheck' : 'accepted');
    if (hello.healthcheck) {
      // A health check gets its AGENT-HELLO and a plain close: HAProxy ≥ 3.2 fails a check followed by a DISCONNECT.
      this.lifecycle = 'closing';
      this.writer.flush();
      this.end();
      this.closeEvent = { remoteAddress: this.remoteAddress, status: undefined, reason: 'health check' };
      return;
    }
    this.lifecycle = 'ready';
    this.reader.maxFrameSize = settings.maxFrameSize;
    this.writer.maxFrameSize = settings.maxFrameSize;
    this.assembler = new NotifyAssembler(settings.capabilities.includes('fragmentation'), options.maxFragmentedPayload);
    this.info = {
      remoteAddress: this.remoteAddress,
      engineId: hello.engineId,
      settings,
      peerCertificate: verifiedPeerCertificate(this.socket),
    };
    if (options.idleTimeoutMs > 0) {
      this.socket.setTimeout(options.idleTimeoutMs, () => {
        // Not idle when it waits for the server's budget: it would read if it could.
        if (this.inFlight === 0 && this.gate !== 'in-flight-bytes')
          this.disconnect(SpopStatus.Timeout, `idle for ${options.idleTimeoutMs} ms`);
      });
    }
    this.host.connected(this);
  }

  private onNotify(frame: Frame): void {
    const messages = decodeNotify(frame);
    const { streamId, frameId } = frame;
    const dispatcher = this.host.dispatcher;
    const size = frame.end - frame.payloadOffset;
    this.inFlight++;
    this.budget.take(size);
    this.host.traffic.notifies++;
    dispatcher.observer?.notify?.(messages.length);
    dispatcher.dispatch(messages, streamId, frameId, this.info!, this.ackBound, size);
  }

  /** @internal The server's budget has room again, and it is this connection's turn. */
  resume(): void {
    if (this.gate === 'in-flight-bytes') this.pump();
  }

  /** The writer's sink: one socket write per turn; a gate closed on unflushed ACKs may open now. */
  private flushed(data: Buffer): void {
    this.socket.write(data);
    if (this.gate === 'unflushed') this.pump();
  }

  private readonly onDrain = (): void => {
    if (this.gate === 'unsent') this.pump();
  };
  private readonly ackBound = (streamId: SpopId, frameId: SpopId, actions: readonly SpoeAction[], size: number): void =>
    this.ack(streamId, frameId, actions, size);

  private ack(streamId: SpopId, frameId: SpopId, actions: readonly SpoeAction[], size: number): void {
    this.inFlight--;
    // Connections waiting for these bytes may resume from here (this one included: its ACK is written after).
    this.budget.release(size);
    const lifecycle = this.lifecycle;
    // Once closing, nothing follows the AGENT-DISCONNECT (SPOE.txt 3.2.9: the agent closes just after it).
    if (lifecycle !== 'ready' && lifecycle !== 'draining') return;
    try {
      this.writeAck(streamId, frameId, actions);
      if (this.gate === 'in-flight') this.pump();
      else if (lifecycle === 'draining') this.disconnectAtLull();
    } catch (error) {
      this.protocolError(error);
    }
  }

  private writeAck(streamId: SpopId, frameId: SpopId, actions: readonly SpoeAction[]): void {
    const w = this.writer.begin();
    const start = w.pos;
    try {
      writeAck(w, streamId, frameId, actions);
    } catch (error) {
      if (!(error instanceof SpoeEncodeError)) throw error;
      logger.error(
        `ACK for stream-id ${streamId}, frame-id ${frameId} could not be encoded (${error.message}); sent without its actions`,
      );
      const flag = this.host.dispatcher.failureAction(SpoeFailure.HandlerFailed);
      writeAck(w, streamId, frameId, flag ? [flag] : []);
    }
    const traffic = this.host.traffic;
    traffic.acks++;
    traffic.ackBytes += w.pos - start;
    this.host.dispatcher.observer?.ack?.(w.pos - start);
    this.writer.commit();
  }

  private onHaproxyDisconnect(frame: Frame): void {
    let reason = 'HAPROXY-DISCONNECT';
    const observer = this.host.dispatcher.observer;
    try {
      const { status, message } = decodeDisconnect(frame);
      observer?.haproxyDisconnect?.(status);
      reason = `HAPROXY-DISCONNECT status ${status} (${message})`;
      if (status !== SpopStatus.Normal)
        logger.warn(`${this.remoteAddress} disconnected: status ${status} ${spopStatusReason(status)}: ${message}`);
    } catch (error) {
      observer?.haproxyDisconnect?.(undefined);
      logger.warn(`${this.remoteAddress} sent a malformed HAPROXY-DISCONNECT: ${(error as Error).message}`);
    }
    this.disconnect(SpopStatus.Normal, spopStatusReason(SpopStatus.Normal), reason);
  }

  private protocolError(error: unknown): void {
    const observer = this.host.dispatcher.observer;
    if (this.lifecycle === 'hello') observer?.hello?.('refused');
    if (error instanceof SpopError) {
      observer?.protocolError?.(error.status);
      logger.warn(
        `protocol error from ${this.remoteAddress}: status ${error.status} (${spopStatusReason(error.status)}): ${error.message}`,
      );
      this.disconnect(error.status, error.message);
      return;
    }
    logger.error(
      `internal error on connection ${this.remoteAddress}: ${(error as Error)?.message}`,
      (error as Error)?.stack,
    );
    this.disconnect(SpopStatus.Unknown, 'internal agent error');
  }

  /** Sends AGENT-DISCONNECT with `status` and closes; HAProxy gets `disconnectLingerMs` to close its side. */
  private disconnect(status: SpopStatus, message: string, reason = message): void {
    if (this.lifecycle === 'closing' || this.lifecycle === 'closed') return;
    this.lifecycle = 'closing';
    clearTimeout(this.helloTimer);
    this.closeEvent = { remoteAddress: this.remoteAddress, status, reason };
    this.host.dispatcher.observer?.agentDisconnect?.(status);
    const w = this.writer.begin();
    writeAgentDisconnect(w, { status, message });
    this.writer.commit();
    this.writer.flush();
    this.end();
  }

  /** Ends the socket: the peer has `disconnectLingerMs` to close its side, a peer that does not is destroyed. */
  private end(): void {
    this.socket.end();
    this.lingerTimer = setTimeout(() => this.socket.destroy(), this.host.options.disconnectLingerMs);
    this.lingerTimer.unref();
  }

  private onError(error: NodeJS.ErrnoException): void {
    // HAProxy 3.1+ closes connections (and every `option spop-check`) with a reset: an ordinary end, not logged, since
    // Nest's default levels print even debug lines.
    if (!QUIET_ERRORS.has(error.code ?? '')) logger.warn(`socket error on ${this.remoteAddress}: ${error.message}`);
  }

  private onClose(): void {
    const previous = this.lifecycle;
    this.lifecycle = 'closed';
    this.budget.cancel(this);
    clearTimeout(this.helloTimer);
    clearTimeout(this.lingerTimer);
    this.writer.discard();
    const event = this.closeEvent ?? {
      remoteAddress: this.remoteAddress,
      status: undefined,
      reason: previous === 'hello' ? 'closed before HELLO' : 'closed by peer',
    };
    this.host.closed(this, event);
    this.resolveClosed();
  }
}

/** The client certificate of a TLS socket, when node:tls verified it against the CA (mutual TLS). */
function verifiedPeerCertificate(socket: Socket): PeerCertificate | undefined {
  const tls = socket as Partial<TLSSocket>;
  return tls.encrypted && tls.authorized ? tls.getPeerCertificate?.() : undefined;
}

/** The peer of a socket as logs and events name it: `address:port`, or the Unix socket's path. */
export function peerAddress(socket: Socket, path: string | undefined): string {
  return socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : (path ?? 'unix');
}

/**
 * Refuses a socket the server will not serve (maxConnections are open): `disconnect`, an encoded AGENT-DISCONNECT, in
 * one write, then end(). What the peer sends meanwhile is read and dropped, so that its close is seen (and unread bytes
 * do not turn the close into a reset); the socket is destroyed if the peer has not closed it `lingerMs` later.
 */
export function refuseConnection(socket: Socket, disconnect: Buffer, lingerMs: number): void {
  socket.on('error', () => undefined);
  socket.resume();
  socket.end(disconnect);
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
