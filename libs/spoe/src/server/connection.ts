import { Logger } from '@nestjs/common';
import type { Socket } from 'node:net';
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
import { SpoeConnectionInfo } from './spoe.context';
import { SpoeDisconnectEvent } from './spoe.events';
import { NormalizedSpoeOptions } from './spoe.options';

/** What a connection needs from its server. */
export interface SpoeConnectionHost {
  readonly options: NormalizedSpoeOptions;
  readonly dispatcher: Dispatcher;
  connected(connection: SpoeConnection): void;
  closed(connection: SpoeConnection, event: SpoeDisconnectEvent): void;
}

type State = 'hello' | 'ready' | 'closing' | 'closed';

const QUIET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

// One for all connections: an idle connection should cost its socket and little else.
const logger = new Logger('SpoeConnection');

/**
 * One HAProxy connection: the HELLO handshake, NOTIFY frames in (at most `maxInFlightPerConnection` at once, the
 * socket paused beyond), one ACK out for each, and every way a connection ends. Frames are decoded and encoded by the
 * protocol layer; handlers run in the {@link Dispatcher}.
 */
export class SpoeConnection {
  private readonly reader: FrameReader;
  private readonly writer: FrameWriter;
  private assembler: NotifyAssembler | undefined;
  private state: State = 'hello';
  private info: SpoeConnectionInfo | undefined;
  private inFlight = 0;
  private paused = false;
  private pumping = false;
  private draining = false;
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
    this.remoteAddress = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : (options.path ?? 'unix');
    this.reader = new FrameReader(options.maxFrameSize);
    this.writer = new FrameWriter((data) => this.flushed(data), options.maxFrameSize);
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => this.onError(error));
    socket.on('close', () => this.onClose());
    this.helloTimer = setTimeout(() => this.disconnect(SpopStatus.Timeout, `no HAPROXY-HELLO within ${options.helloTimeoutMs} ms`), options.helloTimeoutMs);
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
   * Graceful end: stop reading, let in-flight NOTIFY be answered, then AGENT-DISCONNECT (status 0) and close. Resolves
   * once the socket is closed. The server bounds the wait by expiring what is still in flight.
   */
  drain(): Promise<void> {
    if (this.state === 'hello') this.destroy();
    else if (this.state === 'ready') {
      this.draining = true;
      this.socket.pause();
      if (this.inFlight === 0) this.disconnect(SpopStatus.Normal, 'agent is shutting down');
    }
    return this.closedPromise;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.reader.push(chunk);
    this.pump();
  }

  /**
   * Reads and handles whole frames while the in-flight cap allows and the peer keeps reading its ACKs; otherwise
   * pauses the socket until a NOTIFY finishes or the unsent ACKs drain.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      const options = this.host.options;
      // The socket is not written during the burst (ACKs are written at the end of the turn): its state is read once.
      const socketBlocked = this.socket.writableNeedDrain && this.socket.writableLength >= options.maxPendingWriteBytes;
      while ((this.state === 'hello' || this.state === 'ready') && !this.draining) {
        // ACKs not yet flushed count too: a burst of NOTIFY is answered within one turn, before any write.
        if (socketBlocked || this.inFlight >= options.maxInFlightPerConnection || this.writer.pendingBytes >= options.maxPendingWriteBytes) {
          if (!this.paused) {
            this.paused = true;
            this.socket.pause();
          }
          if (socketBlocked && !this.awaitingDrain) {
            this.awaitingDrain = true;
            this.socket.once('drain', this.onDrain);
          }
          return;
        }
        const frame = this.reader.next();
        if (!frame) break;
        this.handleFrame(frame);
      }
      if (this.paused && !this.draining) {
        this.paused = false;
        this.socket.resume();
      }
    } catch (error) {
      this.protocolError(error);
    } finally {
      this.pumping = false;
    }
  }

  private handleFrame(frame: Frame): void {
    if (this.state === 'hello') return this.onHello(frame);
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
      throw new SpopInvalidFrameError(`expected HAPROXY-HELLO, got ${FrameType[frame.type] ?? `frame type ${frame.type}`}`);
    }
    if (!(frame.flags & FrameFlag.Fin)) throw new SpopFragmentationError('fragmented HAPROXY-HELLO');
    if (frame.streamId !== 0 || frame.frameId !== 0) throw new SpopInvalidFrameError('HAPROXY-HELLO with a non-zero stream-id or frame-id');
    const options = this.host.options;
    const hello = decodeHaproxyHello(frame);
    const settings = negotiateHello(hello, { maxFrameSize: options.maxFrameSize, capabilities: options.capabilities });
    clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    const w = this.writer.begin();
    writeAgentHello(w, settings);
    this.writer.commit();
    if (hello.healthcheck) {
      // A health check gets its AGENT-HELLO and a plain close: HAProxy ≥ 3.2 fails a check followed by a DISCONNECT.
      this.state = 'closing';
      this.writer.flush();
      this.socket.end();
      this.closeEvent = { remoteAddress: this.remoteAddress, status: undefined, reason: 'health check' };
      return;
    }
    this.state = 'ready';
    this.reader.maxFrameSize = settings.maxFrameSize;
    this.writer.maxFrameSize = settings.maxFrameSize;
    this.assembler = new NotifyAssembler(settings.capabilities.includes('fragmentation'), options.maxFragmentedPayload);
    this.info = { remoteAddress: this.remoteAddress, engineId: hello.engineId, settings };
    if (options.idleTimeoutMs > 0) {
      this.socket.setTimeout(options.idleTimeoutMs, () => {
        if (this.inFlight === 0) this.disconnect(SpopStatus.Timeout, `idle for ${options.idleTimeoutMs} ms`);
      });
    }
    this.host.connected(this);
  }

  private onNotify(frame: Frame): void {
    const messages = decodeNotify(frame);
    const { streamId, frameId } = frame;
    this.inFlight++;
    this.host.dispatcher.dispatch(messages, streamId, frameId, this.info!, this.ackBound);
  }

  private awaitingDrain = false;

  /** The writer's sink: one socket write per turn; a connection paused on unflushed ACKs may read again now. */
  private flushed(data: Buffer): void {
    this.socket.write(data);
    if (this.paused && !this.awaitingDrain && this.state === 'ready') this.pump();
  }

  private readonly onDrain = (): void => {
    this.awaitingDrain = false;
    this.pump();
  };
  private readonly ackBound = (streamId: SpopId, frameId: SpopId, actions: readonly SpoeAction[]): void => this.ack(streamId, frameId, actions);

  private ack(streamId: SpopId, frameId: SpopId, actions: readonly SpoeAction[]): void {
    this.inFlight--;
    if (this.state !== 'ready') return;
    try {
      this.writeAck(streamId, frameId, actions);
      if (this.draining) {
        if (this.inFlight === 0) this.disconnect(SpopStatus.Normal, 'agent is shutting down');
      } else if (this.paused) {
        this.pump();
      }
    } catch (error) {
      this.protocolError(error);
    }
  }

  private writeAck(streamId: SpopId, frameId: SpopId, actions: readonly SpoeAction[]): void {
    const w = this.writer.begin();
    try {
      writeAck(w, streamId, frameId, actions);
    } catch (error) {
      if (!(error instanceof SpoeEncodeError)) throw error;
      logger.error(`ACK for stream-id ${streamId}, frame-id ${frameId} could not be encoded (${error.message}); sent without its actions`);
      const flag = this.host.dispatcher.failureAction(SpoeFailure.HandlerFailed);
      writeAck(w, streamId, frameId, flag ? [flag] : []);
    }
    this.writer.commit();
  }

  private onHaproxyDisconnect(frame: Frame): void {
    let reason = 'HAPROXY-DISCONNECT';
    try {
      const { status, message } = decodeDisconnect(frame);
      reason = `HAPROXY-DISCONNECT status ${status} (${message})`;
      if (status !== SpopStatus.Normal) logger.warn(`${this.remoteAddress} disconnected: status ${status} ${spopStatusReason(status)}: ${message}`);
    } catch (error) {
      logger.warn(`${this.remoteAddress} sent a malformed HAPROXY-DISCONNECT: ${(error as Error).message}`);
    }
    this.disconnect(SpopStatus.Normal, spopStatusReason(SpopStatus.Normal), reason);
  }

  private protocolError(error: unknown): void {
    if (error instanceof SpopError) {
      logger.warn(`protocol error from ${this.remoteAddress}: status ${error.status} (${spopStatusReason(error.status)}): ${error.message}`);
      this.disconnect(error.status, error.message);
      return;
    }
    logger.error(`internal error on connection ${this.remoteAddress}: ${(error as Error)?.message}`, (error as Error)?.stack);
    this.disconnect(SpopStatus.Unknown, 'internal agent error');
  }

  /** Sends AGENT-DISCONNECT with `status` and closes; HAProxy gets `disconnectLingerMs` to close its side. */
  private disconnect(status: SpopStatus, message: string, reason = message): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'closing';
    clearTimeout(this.helloTimer);
    this.closeEvent = { remoteAddress: this.remoteAddress, status, reason };
    const w = this.writer.begin();
    writeAgentDisconnect(w, { status, message });
    this.writer.commit();
    this.writer.flush();
    this.socket.end();
    this.lingerTimer = setTimeout(() => this.socket.destroy(), this.host.options.disconnectLingerMs);
    this.lingerTimer.unref();
  }

  private onError(error: NodeJS.ErrnoException): void {
    // HAProxy 3.1+ closes connections with a reset: that is an ordinary end, not a failure.
    if (QUIET_ERRORS.has(error.code ?? '')) logger.debug(`${this.remoteAddress}: ${error.code}`);
    else logger.warn(`socket error on ${this.remoteAddress}: ${error.message}`);
  }

  private onClose(): void {
    const previous = this.state;
    this.state = 'closed';
    clearTimeout(this.helloTimer);
    clearTimeout(this.lingerTimer);
    this.writer.discard();
    const event = this.closeEvent ?? { remoteAddress: this.remoteAddress, status: undefined, reason: previous === 'hello' ? 'closed before HELLO' : 'closed by peer' };
    this.host.closed(this, event);
    this.resolveClosed();
  }
}
