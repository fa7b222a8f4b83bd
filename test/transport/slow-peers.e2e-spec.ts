import { Controller, Logger } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { SetVar, SpopStatus } from 'nestjs-spoe';
import { decodeDisconnect, encodeNotify, Frame, FrameReader, FrameType } from 'nestjs-spoe/protocol';
import { SpoeClient } from 'nestjs-spoe/testing';
import { connect, Socket } from 'node:net';
import { startAgent, TestAgent } from '../support/agent';
import { haproxyHello, RawPeer } from '../support/raw-peer';
import { waitFor } from '../support/wait';

@Controller()
class QuickController {
  @MessagePattern('quick')
  quick() {
    return SetVar.txn('quick', true);
  }
}

/** A peer that sends its HAPROXY-HELLO one byte at a time, and what the agent sent it before closing. */
interface SlowPeer {
  readonly socket: Socket;
  readonly received: Buffer[];
  sent: number;
  closed: boolean;
}

async function slowPeer(port: number, hello: Buffer): Promise<SlowPeer> {
  const socket = connect(port, '127.0.0.1');
  const peer: SlowPeer = { socket, received: [], sent: 0, closed: false };
  socket.on('data', (chunk: Buffer) => peer.received.push(chunk));
  socket.on('error', () => undefined);
  socket.on('close', () => (peer.closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(hello.subarray(0, ++peer.sent));
  return peer;
}

/** The frames a peer received. */
function framesOf(peer: SlowPeer): Frame[] {
  const reader = new FrameReader(16380);
  reader.push(Buffer.concat(peer.received));
  const frames: Frame[] = [];
  for (let frame = reader.next(); frame; frame = reader.next()) frames.push(frame);
  return frames;
}

describe('slow or silent peers hold nothing for long', () => {
  let agent: TestAgent;
  beforeEach(() => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(async () => {
    await agent.close();
    jest.restoreAllMocks();
  });

  it('1,000 connections sending their HELLO one byte per second do not delay real traffic, and are closed at helloTimeoutMs', async () => {
    const HELLO_TIMEOUT_MS = 1500;
    agent = await startAgent({ controllers: [QuickController] }, { helloTimeoutMs: HELLO_TIMEOUT_MS });
    // A NOTIFY not answered within 1 s fails: well below the HELLO timeout, after which the flood is gone anyway.
    const client = await SpoeClient.connect({ port: agent.port, timeoutMs: 1000 });
    const hello = haproxyHello();
    const flood: SlowPeer[] = [];
    const trickle = setInterval(() => {
      for (const peer of flood)
        if (!peer.closed && peer.sent < hello.length) peer.socket.write(hello.subarray(peer.sent, ++peer.sent));
    }, 1000);
    let answered = 0;
    let flooding = true;
    // Real traffic all along: one NOTIFY after another, each answered within the client's 1 s.
    let trafficError: unknown;
    const traffic = (async () => {
      while (flooding) {
        expect(await client.notify('quick')).toMatchObject([{ name: 'quick', value: true }]);
        answered++;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })().catch((error: unknown) => (trafficError = error));
    try {
      for (let batch = 0; batch < 10; batch++) {
        flood.push(...(await Promise.all(Array.from({ length: 100 }, () => slowPeer(agent.port, hello)))));
      }
      // A HAProxy connecting in the middle of the flood completes its HELLO and is served at once.
      const newcomer = await SpoeClient.connect({ port: agent.port, timeoutMs: 1000 });
      expect(await newcomer.notify('quick')).toMatchObject([{ value: true }]);
      const before = answered;
      await waitFor('every slow peer to be closed', () => flood.every((peer) => peer.closed), 20_000);
      expect(answered).toBeGreaterThan(before);
      for (const peer of flood) {
        const frames = framesOf(peer);
        expect(frames.map((frame) => frame.type)).toEqual([FrameType.AgentDisconnect]);
        expect(decodeDisconnect(frames[0])).toEqual({
          status: SpopStatus.Timeout,
          message: `no HAPROXY-HELLO within ${HELLO_TIMEOUT_MS} ms`,
        });
      }
      await waitFor('only the real clients to remain', () => agent.server.stats.connections === 2);
      await newcomer.close();
    } finally {
      flooding = false;
      clearInterval(trickle);
      await traffic;
      await client.close();
      flood.forEach((peer) => peer.socket.destroy());
    }
    expect(trafficError).toBeUndefined();
  }, 60_000);

  it('a peer that completes its HELLO, sends part of a frame and stalls is closed at idleTimeoutMs with status 2', async () => {
    agent = await startAgent({ controllers: [QuickController] }, { idleTimeoutMs: 300 });
    const { peer } = await RawPeer.hello({ port: agent.port });
    const notify = encodeNotify(16380, 1, 1, [{ name: 'quick', args: [] }]);
    peer.send(notify.subarray(0, notify.length - 3));
    expect(await peer.expectDisconnect(5000)).toMatchObject({ status: SpopStatus.Timeout });
    expect(agent.server.stats.inFlight).toBe(0);
  });
});
