import { connect, isIP, Socket } from 'node:net';
import { connect as connectTls, ConnectionOptions, TLSSocket } from 'node:tls';
import { decodeAck, DecodedAction } from '../protocol/ack';
import { ByteWriter } from '../protocol/byte-writer';
import { decodeDisconnect, Disconnect, encodeHaproxyDisconnect } from '../protocol/disconnect';
import { SpopError } from '../protocol/errors';
import { encodeFrame, Frame, FrameFlag, FrameType, SpopId } from '../protocol/frame';
import { FrameReader } from '../protocol/frame-reader';
import { AgentHello, decodeAgentHello, encodeHaproxyHello } from '../protocol/hello';
import { encodeNotify, NotifyMessage, writeMessages } from '../protocol/notify';
import { SpopStatus } from '../protocol/status';
import { SpoeEncodable } from '../protocol/typed-data';
import { SPOE_CLIENT_DEFAULTS } from '../spoe.constants';

/** How a {@link SpoeClient} reaches the agent and what it announces, like HAProxy's side of the HELLO. */
export interface SpoeClientOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 12345. */
  port?: number;
  /** Unix socket path (instead of host/port). */
  path?: string;
  /** Announced max-frame-size. Default 16380. */
  maxFrameSize?: number;
  /** Announced capabilities. Default `['pipelining']` (HAProxy 3.1+); HAProxy 2.x announces `pipelining,async`. */
  capabilities?: string[];
  /** Default "2.0". */
  supportedVersions?: string;
  /** Default a fixed test id. */
  engineId?: string;
  /** Bound on connecting, the HELLO and each NOTIFY, in ms. Default 5000. */
  timeoutMs?: number;
  /**
   * Speak TLS, as HAProxy's `server … ssl verify required ca-file ca.pem [crt client.pem]` does: `ca` to verify the
   * agent, `cert` and `key` to present a client certificate (mutual TLS), `servername` for SNI and the name checked.
   * `true`: TLS verified against Node's default CAs. Default: plain TCP.
   */
  tls?: SpoeClientTlsOptions | true;
}

/** TLS options of {@link SpoeClient}, as node:tls takes them. */
export type SpoeClientTlsOptions = Pick<
  ConnectionOptions,
  | 'ca'
  | 'cert'
  | 'key'
  | 'pfx'
  | 'passphrase'
  | 'servername'
  | 'rejectUnauthorized'
  | 'checkServerIdentity'
  | 'minVersion'
  | 'maxVersion'
>;

/** The agent closed the connection with an AGENT-DISCONNECT (or without one: status undefined). */
export class SpoeAgentDisconnectedError extends Error {
  constructor(readonly disconnect: Disconnect | undefined) {
    super(
      disconnect
        ? `agent disconnected: status ${disconnect.status} (${disconnect.message})`
        : 'agent closed the connection',
    );
    this.name = 'SpoeAgentDisconnectedError';
  }
}

/** A message to notify: its name and its arguments, as an object or as ordered pairs (repeated names allowed). */
export type SpoeClientMessage = {
  name: string;
  args?: Record<string, SpoeEncodable> | ReadonlyArray<readonly [string, SpoeEncodable]>;
};

const MAX_FRAGMENTED_PAYLOAD = 4 * 1024 * 1024;

interface Pending {
  resolve(actions: DecodedAction[]): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * Plays HAProxy's part of SPOP against an agent: HELLO, health checks, pipelined NOTIFY frames with typed arguments,
 * and their ACKs decoded. For testing handlers without HAProxy, for health probes and for load generation.
 *
 * ```ts
 * const client = await SpoeClient.connect({ port: 12345 });
 * const actions = await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') });
 * await client.close();
 * ```
 */
export class SpoeClient {
  private readonly reader: FrameReader;
  private readonly pending = new Map<string, Pending>();
  private nextStreamId = 1;
  private closedError: Error | undefined;
  private readonly closed: Promise<Disconnect | undefined>;
  private onDisconnect!: (d: Disconnect | undefined) => void;
  private agentDisconnect: Disconnect | undefined;
  /** Frames the agent sent that were not ACKs of pending NOTIFY (for tests of unusual exchanges). */
  readonly unexpectedFrames: Frame[] = [];

  private constructor(
    private readonly socket: Socket,
    /** What the agent answered in its AGENT-HELLO. */
    readonly settings: AgentHello,
    reader: FrameReader,
    private readonly timeoutMs: number,
  ) {
    this.reader = reader;
    this.closed = new Promise((resolve) => (this.onDisconnect = resolve));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.onClose());
    socket.on('error', () => undefined);
    this.onData(Buffer.alloc(0));
    socket.resume();
  }

  /** Connects and completes the HELLO handshake. Rejects when the agent answers with AGENT-DISCONNECT. */
  static async connect(options: SpoeClientOptions = {}): Promise<SpoeClient> {
    const { socket, reader, hello } = await handshake(options, false);
    return new SpoeClient(socket, hello, reader, options.timeoutMs ?? SPOE_CLIENT_DEFAULTS.timeoutMs);
  }

  /** A health-check HELLO (`healthcheck=true`, as `option spop-check` sends): resolves with the AGENT-HELLO. */
  static async healthCheck(options: SpoeClientOptions = {}): Promise<AgentHello> {
    const { socket, hello } = await handshake(options, true);
    socket.destroy();
    return hello;
  }

  /** Sends one NOTIFY with one message; resolves with the actions of its ACK. */
  notify(name: string, args: SpoeClientMessage['args'] = {}): Promise<DecodedAction[]> {
    return this.notifyMessages([{ name, args }]);
  }

  /** Sends one NOTIFY carrying several messages; resolves with the actions of its ACK. */
  notifyMessages(
    messages: readonly SpoeClientMessage[],
    ids?: { streamId?: SpopId; frameId?: SpopId },
  ): Promise<DecodedAction[]> {
    const streamId = ids?.streamId ?? this.takeStreamId();
    const frameId = ids?.frameId ?? 1;
    const frame = encodeNotify(this.settings.maxFrameSize, streamId, frameId, messages.map(toNotifyMessage));
    return this.expectAck(streamId, frameId, () => this.socket.write(frame));
  }

  /**
   * Sends one NOTIFY split in fragments of at most `fragmentSize` payload bytes (HAProxy 2.x style: NOTIFY with FIN
   * clear, then UNSET frames). With `abort`, the last fragment carries ABORT and no ACK is awaited.
   */
  notifyFragmented(
    messages: readonly SpoeClientMessage[],
    fragmentSize: number,
    options: { abort?: boolean } = {},
  ): Promise<DecodedAction[] | undefined> {
    const streamId = this.takeStreamId();
    const frameId = 1;
    const w = new ByteWriter(Buffer.allocUnsafe(MAX_FRAGMENTED_PAYLOAD), 0, MAX_FRAGMENTED_PAYLOAD);
    writeMessages(w, messages.map(toNotifyMessage));
    const body = w.buf.subarray(0, w.pos);
    const frames: Buffer[] = [];
    for (let at = 0, first = true; first || at < body.length; first = false) {
      const part = body.subarray(at, at + fragmentSize);
      at += part.length;
      const last = at >= body.length;
      const flags = last ? FrameFlag.Fin | (options.abort ? FrameFlag.Abort : 0) : 0;
      frames.push(
        encodeFrame(
          this.settings.maxFrameSize,
          first ? FrameType.Notify : FrameType.Unset,
          flags,
          streamId,
          frameId,
          (w: ByteWriter, b: Buffer) => w.bytes(b),
          part,
        ),
      );
    }
    if (options.abort) {
      this.socket.write(Buffer.concat(frames));
      return Promise.resolve(undefined);
    }
    return this.expectAck(streamId, frameId, () => this.socket.write(Buffer.concat(frames)));
  }

  /** Writes raw bytes (for tests of malformed input). */
  sendRaw(data: Buffer): void {
    this.socket.write(data);
  }

  /** Resolves when the connection is closed, with the AGENT-DISCONNECT if the agent sent one. */
  whenClosed(): Promise<Disconnect | undefined> {
    return this.closed;
  }

  /** Sends HAPROXY-DISCONNECT (status 0), waits for the agent's AGENT-DISCONNECT and the close. */
  async close(): Promise<Disconnect | undefined> {
    if (!this.socket.destroyed) {
      this.socket.write(encodeHaproxyDisconnect({ status: SpopStatus.Normal, message: 'normal' }));
      const timer = setTimeout(() => this.socket.destroy(), this.timeoutMs);
      const result = await this.closed;
      clearTimeout(timer);
      this.socket.destroy();
      return result;
    }
    return this.closed;
  }

  /** Closes the socket at once (a reset, as HAProxy 3.1+ does; over TLS, a plain destroy: node:tls cannot reset). */
  destroy(): void {
    if (this.socket instanceof TLSSocket) this.socket.destroy();
    else this.socket.resetAndDestroy();
  }

  private takeStreamId(): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    return id;
  }

  private expectAck(streamId: SpopId, frameId: SpopId, send: () => void): Promise<DecodedAction[]> {
    if (this.closedError) return Promise.reject(this.closedError);
    const key = `${streamId}:${frameId}`;
    return new Promise<DecodedAction[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new Error(`no ACK for stream-id ${streamId}, frame-id ${frameId} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(key, { resolve, reject, timer });
      send();
    });
  }

  private onData(chunk: Buffer): void {
    this.reader.push(chunk);
    try {
      for (let frame = this.reader.next(); frame; frame = this.reader.next()) this.onFrame(frame);
    } catch (error) {
      this.fail(error as Error);
      this.socket.destroy();
    }
  }

  private onFrame(frame: Frame): void {
    if (frame.type === FrameType.Ack) {
      const key = `${frame.streamId}:${frame.frameId}`;
      const pending = this.pending.get(key);
      if (pending) {
        this.pending.delete(key);
        clearTimeout(pending.timer);
        pending.resolve(decodeAck(frame));
        return;
      }
    }
    if (frame.type === FrameType.AgentDisconnect) {
      this.agentDisconnect = decodeDisconnect(frame);
      return;
    }
    this.unexpectedFrames.push(frame);
  }

  private onClose(): void {
    this.fail(new SpoeAgentDisconnectedError(this.agentDisconnect));
    this.onDisconnect(this.agentDisconnect);
  }

  private fail(error: Error): void {
    this.closedError ??= error;
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
  }
}

function toNotifyMessage(message: SpoeClientMessage): NotifyMessage {
  const args = message.args ?? {};
  return { name: message.name, args: Array.isArray(args) ? args : Object.entries(args) };
}

async function handshake(
  options: SpoeClientOptions,
  healthcheck: boolean,
): Promise<{ socket: Socket; reader: FrameReader; hello: AgentHello }> {
  const timeoutMs = options.timeoutMs ?? SPOE_CLIENT_DEFAULTS.timeoutMs;
  const maxFrameSize = options.maxFrameSize ?? SPOE_CLIENT_DEFAULTS.maxFrameSize;
  const socket = open(options);
  socket.setNoDelay(true);
  const reader = new FrameReader(Math.max(maxFrameSize, 256));
  try {
    const hello = await new Promise<AgentHello>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no AGENT-HELLO within ${timeoutMs} ms`)), timeoutMs);
      const done = (error: Error | undefined, value?: AgentHello): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        if (error) reject(error);
        else resolve(value!);
      };
      const onError = (error: Error): void => done(error);
      const onClose = (): void => done(new SpoeAgentDisconnectedError(undefined));
      const onData = (chunk: Buffer): void => {
        try {
          reader.push(chunk);
          const frame = reader.next();
          if (!frame) return;
          socket.pause();
          if (frame.type === FrameType.AgentHello) done(undefined, decodeAgentHello(frame));
          else if (frame.type === FrameType.AgentDisconnect)
            done(new SpoeAgentDisconnectedError(decodeDisconnect(frame)));
          else done(new Error(`expected AGENT-HELLO, got frame type ${frame.type}`));
        } catch (error) {
          done(error instanceof SpopError ? error : (error as Error));
        }
      };
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('close', onClose);
      socket.once(options.tls ? 'secureConnect' : 'connect', () =>
        socket.write(
          encodeHaproxyHello({
            supportedVersions: options.supportedVersions ?? SPOE_CLIENT_DEFAULTS.supportedVersions,
            maxFrameSize,
            capabilities: options.capabilities ?? (healthcheck ? [] : [...SPOE_CLIENT_DEFAULTS.capabilities]),
            healthcheck,
            ...(!healthcheck && { engineId: options.engineId ?? 'nestjs-spoe-client' }),
          }),
        ),
      );
    });
    reader.maxFrameSize = hello.maxFrameSize;
    return { socket, reader, hello };
  } catch (error) {
    socket.destroy();
    throw error;
  }
}

/** The socket to the agent: TCP or a Unix socket, in TLS when asked. */
function open(options: SpoeClientOptions): Socket {
  const host = options.host ?? SPOE_CLIENT_DEFAULTS.host;
  const port = options.port ?? SPOE_CLIENT_DEFAULTS.port;
  if (!options.tls) return options.path !== undefined ? connect(options.path) : connect(port, host);
  const tls = options.tls === true ? {} : options.tls;
  // SNI takes host names only: an IP address is checked against the certificate's IP SANs, and not sent.
  const servername = tls.servername ?? (options.path === undefined && isIP(host) === 0 ? host : undefined);
  return connectTls({
    ...tls,
    ...(options.path !== undefined ? { path: options.path } : { host, port }),
    ...(servername !== undefined && { servername }),
  });
}
