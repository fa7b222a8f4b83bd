import { Controller, Logger } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeStatus, SpopStatus } from 'nestjs-spoe';
import { decodeAck, encodeAck, encodeNotify, FrameType } from 'nestjs-spoe/protocol';
import { SpoeClient } from 'nestjs-spoe/testing';
import { once } from 'node:events';
import { connect, createServer, Server as NetServer, Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { haproxyHello, RawPeer } from '../support/raw-peer';
import { startAgent, TestAgent } from '../support/agent';
import { makeTempDir } from '../support/cleanup';
import { waitFor } from '../support/wait';
import { Module } from '@nestjs/common';

const waiting = new Map<string, () => void>();
let started = 0;

@Controller()
class BlockingController {
  @MessagePattern('block')
  async block(@Payload('key') key: string) {
    started++;
    await new Promise<void>((resolve) => waiting.set(key, resolve));
    return SetVar.txn('done', key);
  }

  @MessagePattern('quick')
  quick() {
    return SetVar.txn('quick', true);
  }
}

const release = (key: string): void => waiting.get(key)!();

beforeEach(() => {
  waiting.clear();
  started = 0;
  jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
});
afterEach(() => jest.restoreAllMocks());

describe('back-pressure', () => {
  it('at most maxInFlightPerConnection NOTIFY run at once; the rest wait in the socket', async () => {
    const agent = await startAgent({ controllers: [BlockingController] }, { maxInFlightPerConnection: 2 });
    const accepted = new Promise<Socket>((resolve) => agent.server.unwrap<NetServer>().once('connection', resolve));
    const client = await SpoeClient.connect({ port: agent.port });
    // The agent pauses its socket as the second NOTIFY starts, before it reads a third: once paused, two have started.
    const paused = accepted.then((socket) => new Promise<void>((resolve) => socket.once('pause', resolve)));
    try {
      const acks = ['a', 'b', 'c', 'd'].map((key) => client.notify('block', { key }));
      await paused;
      expect(started).toBe(2);
      expect(agent.server.stats.inFlight).toBe(2);
      release('a');
      await acks[0];
      await waitFor('a third handler to start', () => started === 3);
      release('b');
      release('c');
      await waitFor('the fourth handler to start', () => started === 4);
      release('d');
      expect((await Promise.all(acks)).map((a) => a[0].value)).toEqual(['a', 'b', 'c', 'd']);
    } finally {
      await client.close();
      await agent.close();
    }
  });
});

describe('graceful close', () => {
  it('lets in-flight NOTIFY finish, then AGENT-DISCONNECT status 0; status goes listening → draining → closed', async () => {
    const agent = await startAgent({ controllers: [BlockingController] }, { drainTimeoutMs: 2000 });
    const statuses: string[] = [];
    agent.server.status.subscribe((s) => statuses.push(s));
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(encodeNotify(16380, 1, 1, [{ name: 'block', args: [['key', 'in-flight']] }]));
    await waitFor('the handler to start', () => started === 1);
    const closing = agent.close();
    await waitFor('the server to start draining', () => statuses.includes(SpoeStatus.Draining));
    release('in-flight');
    const ack = await peer.nextFrame();
    expect(ack.type).toBe(FrameType.Ack);
    expect(decodeAck(ack)).toMatchObject([{ name: 'done', value: 'in-flight' }]);
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.Normal });
    await closing;
    expect(statuses).toEqual([SpoeStatus.Listening, SpoeStatus.Draining, SpoeStatus.Closed]);
  });

  it('answers what is still in flight at the drain deadline, then disconnects', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const agent = await startAgent({ controllers: [BlockingController] }, { drainTimeoutMs: 100 });
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(encodeNotify(16380, 1, 1, [{ name: 'block', args: [['key', 'stuck']] }]));
    await waitFor('the handler to start', () => started === 1);
    // The handler never answers: close() returns because the drain deadline answers it.
    await agent.close();
    expect((await peer.nextFrame()).type).toBe(FrameType.Ack);
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.Normal });
  });

  it('while draining, answers the NOTIFY HAProxy sent meanwhile, and disconnects at the first lull', async () => {
    const agent = await startAgent({ controllers: [BlockingController] }, { drainTimeoutMs: 60_000 });
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(encodeNotify(16380, 1, 1, [{ name: 'block', args: [['key', 'in-flight']] }]));
    await waitFor('the handler to start', () => started === 1);
    const closing = agent.close();
    // Sent before HAProxy could read an AGENT-DISCONNECT: HAProxy 2.x would fail it once the connection closes.
    peer.send(encodeNotify(16380, 2, 1, [{ name: 'quick', args: [] }]));
    const quick = await peer.nextFrame();
    expect({ type: quick.type, streamId: quick.streamId }).toEqual({ type: FrameType.Ack, streamId: 2 });
    expect(peer.pendingFrames).toEqual([]);
    release('in-flight');
    expect((await peer.nextFrame()).streamId).toBe(1);
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.Normal });
    await closing;
  });

  it('refuseHealthChecks(): health-check HELLOs get AGENT-DISCONNECT status 0, open connections are served', async () => {
    const agent = await startAgent({ controllers: [BlockingController] });
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      expect((await SpoeClient.healthCheck({ port: agent.port })).version).toBe('2.0');
      agent.server.refuseHealthChecks();
      await expect(SpoeClient.healthCheck({ port: agent.port })).rejects.toMatchObject({
        disconnect: { status: SpopStatus.Normal },
      });
      expect(await client.notify('quick')).toMatchObject([{ name: 'quick', value: true }]);
      // A connection that is not a health check is still accepted.
      const late = await SpoeClient.connect({ port: agent.port });
      expect(await late.notify('quick')).toMatchObject([{ name: 'quick', value: true }]);
      await late.close();
    } finally {
      await client.close();
      await agent.close();
    }
  });

  it('refuses new connections while draining', async () => {
    const agent = await startAgent({ controllers: [BlockingController] });
    await agent.close();
    await expect(SpoeClient.connect({ port: agent.port, timeoutMs: 500 })).rejects.toThrow();
  });
});

describe('listening', () => {
  @Module({ controllers: [BlockingController] })
  class AppModule {}

  it('a port in use fails listen() with the bind error', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(startAgent(AppModule, { port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      blocker.close();
    }
  });

  it('serves HAProxy on a Unix socket', async () => {
    const path = join(makeTempDir('spoe-'), 'agent.sock');
    const agent = await startAgent({ controllers: [BlockingController] }, { path });
    const client = await SpoeClient.connect({ path });
    try {
      expect(agent.server.address).toBe(path);
      expect(await client.notify('quick')).toMatchObject([{ name: 'quick', value: true }]);
    } finally {
      await client.close();
      await agent.close();
    }
  });

  it('closes connections idle for idleTimeoutMs with status 2', async () => {
    const agent = await startAgent({ controllers: [BlockingController] }, { idleTimeoutMs: 100 });
    const { peer } = await RawPeer.hello({ port: agent.port });
    try {
      expect(await peer.expectDisconnect(2000)).toMatchObject({ status: SpopStatus.Timeout });
    } finally {
      await agent.close();
    }
  });

  it('closes a health check whose peer keeps its side open disconnectLingerMs after the AGENT-HELLO', async () => {
    const agent = await startAgent({ controllers: [BlockingController] }, { disconnectLingerMs: 200 });
    // A peer that never closes its side: the agent's end() alone leaves the socket open.
    const check = connect({ port: agent.port, host: '127.0.0.1', allowHalfOpen: true });
    try {
      await once(check, 'connect');
      check.resume();
      check.write(haproxyHello({ healthcheck: true }));
      await once(check, 'end');
      expect(agent.server.stats.connections).toBe(1);
      await waitFor('the agent to close the health check', () => agent.server.stats.connections === 0);
    } finally {
      check.destroy();
      await agent.close();
    }
  });

  it('reports connections, in-flight NOTIFY, and the NOTIFY and ACKs so far in stats', async () => {
    const agent = await startAgent({ controllers: [BlockingController] });
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      const ack = client.notify('block', { key: 'k' });
      await waitFor('the handler to start', () => started === 1);
      expect(agent.server.stats).toEqual({
        listening: true,
        connections: 1,
        inFlight: 1,
        inFlightBytes: expect.any(Number),
        notifies: 1,
        acks: 0,
        ackBytes: 0,
      });
      expect(agent.server.stats.inFlightBytes).toBeGreaterThan(0);
      release('k');
      await ack;
      expect(agent.server.stats).toMatchObject({ inFlightBytes: 0, notifies: 1, acks: 1 });
      expect(agent.server.stats.ackBytes).toBeGreaterThan(0);
    } finally {
      await client.close();
      await agent.close();
    }
    expect(agent.server.stats.listening).toBe(false);
  });
});

describe('ACKs that become ready in the same turn share one write', () => {
  it('pipelined NOTIFY answered together arrive in one TCP chunk', async () => {
    const agent = await startAgent({ controllers: [BlockingController] });
    const { peer } = await RawPeer.hello({ port: agent.port });
    const chunks: Buffer[] = [];
    peer.socket.prependListener('data', (chunk: Buffer) => chunks.push(chunk));
    peer.send(Buffer.concat([1, 3, 5, 7, 9].map((id) => encodeNotify(16380, id, 1, [{ name: 'quick', args: [] }]))));
    for (let i = 0; i < 5; i++) expect((await peer.nextFrame()).type).toBe(FrameType.Ack);
    expect(chunks).toHaveLength(1);
    peer.destroy();
    await agent.close();
  });
});

describe('maxPendingWriteBytes: the ACK bytes an agent holds unsent when it stops reading NOTIFY', () => {
  const blob = SetVar.txn('blob', 'x'.repeat(16_000));
  // Stream-ids from 10000 on take 3 bytes each: every ACK has the same size.
  const notify = (i: number): Buffer => encodeNotify(16380, 10_000 + i, 1, [{ name: 'ack-16k', args: [] }]);
  const ACK_BYTES = encodeAck(16380, 10_000, 1, [blob]).length;
  let handled = 0;
  let wake: () => void = () => undefined;

  @Controller()
  class Ack16kController {
    @MessagePattern('ack-16k')
    ack() {
      handled++;
      wake();
      return blob;
    }
  }

  /** An agent with the given limit, a peer after its HELLO, and the agent's end of their connection. */
  async function connected(maxPendingWriteBytes: number): Promise<{ agent: TestAgent; peer: RawPeer; socket: Socket }> {
    const agent = await startAgent({ controllers: [Ack16kController] }, { maxPendingWriteBytes });
    const accepted = new Promise<Socket>((resolve) => agent.server.unwrap<NetServer>().once('connection', resolve));
    const { peer } = await RawPeer.hello({ port: agent.port });
    handled = 0;
    return { agent, peer, socket: await accepted };
  }

  /** Reads ACKs until `count` have come. */
  async function acks(peer: RawPeer, count: number): Promise<void> {
    for (let n = 0; n < count;) if ((await peer.nextFrame(5000)).type === FrameType.Ack) n++;
  }

  it.each([64 * 1024, 256 * 1024])(
    'a burst of NOTIFY read at once: reading stops as its ACKs reach %i bytes, before any is written',
    async (limit) => {
      const { agent, peer, socket } = await connected(limit);
      try {
        let handledWhenPaused: number | undefined;
        socket.once('pause', () => (handledWhenPaused = handled));
        const count = Math.ceil(limit / ACK_BYTES) + 8;
        peer.send(Buffer.concat(Array.from({ length: count }, (_, i) => notify(i))));
        await acks(peer, count);
        expect(handledWhenPaused).toBeDefined();
        expect(handledWhenPaused! * ACK_BYTES).toBeGreaterThanOrEqual(limit);
        expect(handledWhenPaused! * ACK_BYTES).toBeLessThan(limit + ACK_BYTES);
      } finally {
        peer.destroy();
        await agent.close();
      }
    },
  );

  it.each([64 * 1024, 256 * 1024])(
    'a peer that stops reading: no NOTIFY is read once %i bytes of ACKs wait unsent',
    async (limit) => {
      const { agent, peer, socket } = await connected(limit);
      try {
        peer.socket.pause();
        const writtenBefore = socket.bytesWritten;
        let paused = false;
        socket.once('pause', () => {
          paused = true;
          wake();
        });
        // One NOTIFY at a time, each sent once the previous one was handled: the agent's ACKs fill the kernel's buffers
        // (which this test does not count), then the socket's own, until the agent stops reading.
        let sent = 0;
        while (!paused) {
          const handledOrPaused = new Promise<void>((resolve) => (wake = resolve));
          peer.send(notify(sent++));
          await handledOrPaused;
          if (sent > 10_000) throw new Error(`the agent still reads after ${sent} NOTIFY`);
        }
        expect(handled).toBe(sent - 1);
        // ACK bytes encoded and not yet handed to the socket, plus those the socket holds unsent.
        const unflushed = handled * ACK_BYTES - (socket.bytesWritten - writtenBefore);
        const unsent = unflushed + socket.writableLength;
        expect(unsent).toBeGreaterThanOrEqual(limit);
        expect(unsent).toBeLessThan(limit + ACK_BYTES);
        peer.socket.resume();
        await acks(peer, sent);
      } finally {
        peer.destroy();
        await agent.close();
      }
    },
  );
});

describe('Unix socket files', () => {
  it('a stale socket file left by a dead agent is replaced; a live one is reported as in use', async () => {
    const path = join(makeTempDir('spoe-'), 'agent.sock');
    // A process that listens on the path and is killed: the file stays behind.
    const crashed = spawn(process.execPath, [
      '-e',
      "require('net').createServer().listen(process.argv[1], () => console.log('up'))",
      path,
    ]);
    await new Promise((resolve) => crashed.stdout.once('data', resolve));
    crashed.kill('SIGKILL');
    await new Promise((resolve) => crashed.once('exit', resolve));
    expect(existsSync(path)).toBe(true);
    const agent = await startAgent({ controllers: [BlockingController] }, { path });
    try {
      const client = await SpoeClient.connect({ path });
      expect(await client.notify('quick')).toHaveLength(1);
      await client.close();
      await expect(startAgent({ controllers: [BlockingController] }, { path })).rejects.toMatchObject({
        code: 'EADDRINUSE',
      });
    } finally {
      await agent.close();
    }
  });
});
