import { connect, Socket } from 'node:net';
import {
  decodeAgentHello,
  decodeDisconnect,
  encodeHaproxyHello,
  Frame,
  FrameReader,
  FrameType,
  HaproxyHello,
} from 'nestjs-spoe/protocol';
import type { AgentHello } from 'nestjs-spoe';
import type { Disconnect } from 'nestjs-spoe/protocol';

/**
 * A bare SPOP peer for tests that need to send exactly the bytes they want (malformed, split, out of order) and see
 * every frame the agent sends back, and when it closes.
 */
export class RawPeer {
  private readonly reader = new FrameReader(16 * 1024 * 1024);
  private readonly frames: Frame[] = [];
  private waiters: Array<() => void> = [];
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      for (let f = this.reader.next(); f; f = this.reader.next()) this.frames.push(f);
      this.wake();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
  }

  static connect(target: { port: number }): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = connect(target.port, '127.0.0.1');
      socket.once('connect', () => resolve(new RawPeer(socket)));
      socket.once('error', reject);
    });
  }

  /** Connects and completes a HELLO (HAProxy 3.1+ style unless overridden). */
  static async hello(
    target: { port: number },
    hello: Partial<HaproxyHello> = {},
  ): Promise<{ peer: RawPeer; agentHello: AgentHello }> {
    const peer = await RawPeer.connect(target);
    peer.send(haproxyHello({ engineId: 'raw-peer', ...hello }));
    const frame = await peer.nextFrame();
    if (frame.type !== FrameType.AgentHello) throw new Error(`expected AGENT-HELLO, got type ${frame.type}`);
    return { peer, agentHello: decodeAgentHello(frame) };
  }

  send(data: Buffer): void {
    this.socket.write(data);
  }

  /** The next frame from the agent; rejects if the connection closes first or nothing comes within `timeoutMs`. */
  async nextFrame(timeoutMs = 3000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.ended) throw new Error('connection closed before a frame arrived');
      if (Date.now() > deadline) throw new Error(`no frame within ${timeoutMs} ms`);
      await this.waitForActivity(deadline - Date.now());
    }
    return this.frames.shift()!;
  }

  /** Expects the agent to send AGENT-DISCONNECT and then close; returns the disconnect payload. */
  async expectDisconnect(timeoutMs = 3000): Promise<Disconnect> {
    const frame = await this.nextFrame(timeoutMs);
    if (frame.type !== FrameType.AgentDisconnect) throw new Error(`expected AGENT-DISCONNECT, got type ${frame.type}`);
    await this.expectClosed(timeoutMs);
    return decodeDisconnect(frame);
  }

  /** Waits for the agent to close the connection. */
  async expectClosed(timeoutMs = 3000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed,
      new Promise(
        (_, reject) =>
          (timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs)),
      ),
    ]).finally(() => clearTimeout(timer));
  }

  /** Frames received and not yet consumed. */
  get pendingFrames(): readonly Frame[] {
    return this.frames;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private waitForActivity(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, ms));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** A HAPROXY-HELLO as HAProxy 3.1+ sends it (SPOP 2.0, 16380 bytes, pipelining, not a health check), amended. */
export function haproxyHello(hello: Partial<HaproxyHello> = {}): Buffer {
  return encodeHaproxyHello({
    supportedVersions: '2.0',
    maxFrameSize: 16380,
    capabilities: ['pipelining'],
    healthcheck: false,
    ...hello,
  });
}
