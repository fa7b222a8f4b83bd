import { Controller, Logger } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpopStatus } from 'nestjs-spoe';
import {
  ByteWriter,
  decodeAck,
  encodeFrame,
  encodeHaproxyDisconnect,
  encodeNotify,
  FrameFlag,
  FrameType,
  writeMessages,
} from 'nestjs-spoe/protocol';
import { SpoeClient } from 'nestjs-spoe/testing';
import { RawPeer } from '../support/raw-peer';
import { startAgent, TestAgent } from '../support/agent';

@Controller()
class EchoLengthController {
  @MessagePattern('len')
  len(@Payload('s') s: string) {
    return SetVar.txn('len', s.length);
  }
}

const notifyPayload = (s: string): Buffer => {
  const w = new ByteWriter(Buffer.alloc(1 << 20), 0, 1 << 20);
  writeMessages(w, [{ name: 'len', args: [['s', s]] }]);
  return w.buf.subarray(0, w.pos);
};
const rawFrame = (type: number, flags: number, streamId: number, frameId: number, payload: Buffer): Buffer =>
  encodeFrame(1 << 20, type, flags, streamId, frameId, (w: ByteWriter, p: Buffer) => w.bytes(p), payload);

describe('protocol errors close one connection with the right status; others keep being served', () => {
  let agent: TestAgent;
  let bystander: SpoeClient;
  beforeAll(async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    agent = await startAgent({ controllers: [EchoLengthController] }, { maxFrameSize: 1024 });
    bystander = await SpoeClient.connect({ port: agent.port });
  });
  afterAll(async () => {
    await bystander.close();
    await agent.close();
    jest.restoreAllMocks();
  });
  afterEach(async () => {
    expect(await bystander.notify('len', { s: 'still here' })).toMatchObject([{ value: 10 }]);
  });

  it('a frame longer than the negotiated max-frame-size: status 3, before the frame is read', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port }, { maxFrameSize: 16380 });
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xfffffff0);
    peer.send(header);
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.FrameTooBig });
  });

  it('a NOTIFY whose content does not parse: status 4', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(rawFrame(FrameType.Notify, FrameFlag.Fin, 1, 1, Buffer.from([3, 0x6c, 0x65, 0x6e, 1, 1, 0x73, 0x0c])));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.InvalidFrame });
  });

  it('a length shorter than the frame metadata: status 4', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(Buffer.from([0, 0, 0, 2, 3, 0]));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.InvalidFrame });
  });

  it('a second HAPROXY-HELLO: status 4', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(rawFrame(FrameType.HaproxyHello, FrameFlag.Fin, 0, 0, Buffer.alloc(0)));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.InvalidFrame });
  });

  it('an agent frame type sent to the agent: status 4', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(rawFrame(FrameType.Ack, FrameFlag.Fin, 1, 1, Buffer.alloc(0)));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.InvalidFrame });
  });

  it('a frame of unknown type is skipped', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(rawFrame(42, FrameFlag.Fin, 1, 1, Buffer.from('whatever')));
    peer.send(encodeNotify(1024, 3, 1, [{ name: 'len', args: [['s', 'abc']] }]));
    expect(decodeAck(await peer.nextFrame())).toMatchObject([{ value: 3 }]);
    peer.destroy();
  });

  it('a fragment when fragmentation was not negotiated: status 10', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port }, { capabilities: ['pipelining'] });
    peer.send(rawFrame(FrameType.Notify, 0, 1, 1, notifyPayload('abc').subarray(0, 3)));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.FragmentationNotSupported });
  });

  it('a continuation frame that continues nothing: status 12', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port }, { capabilities: ['pipelining', 'fragmentation'] });
    peer.send(rawFrame(FrameType.Unset, FrameFlag.Fin, 1, 1, Buffer.from([0])));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.FrameIdNotFound });
  });

  it('fragments of two frames interlaced: status 11', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port }, { capabilities: ['pipelining', 'fragmentation'] });
    const payload = notifyPayload('abcdef');
    peer.send(rawFrame(FrameType.Notify, 0, 1, 1, payload.subarray(0, 4)));
    peer.send(rawFrame(FrameType.Unset, FrameFlag.Fin, 3, 1, payload.subarray(4)));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.InterlacedFrames });
  });

  it('HAPROXY-DISCONNECT is answered with AGENT-DISCONNECT status 0 and a close', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(encodeHaproxyDisconnect({ status: SpopStatus.Normal, message: 'bye' }));
    expect(await peer.expectDisconnect()).toEqual({ status: SpopStatus.Normal, message: 'normal' });
  });

  it('a reset in the middle of a frame is an ordinary close', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port });
    peer.send(encodeNotify(1024, 1, 1, [{ name: 'len', args: [['s', 'x'.repeat(100)]] }]).subarray(0, 50));
    peer.socket.resetAndDestroy();
    await peer.closed;
  });

  it('random frames after the HELLO are answered, skipped or refused: never a crash or a hang', async () => {
    for (let i = 0; i < 30; i++) {
      const { peer } = await RawPeer.hello({ port: agent.port });
      const junk = Buffer.alloc(64);
      for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(Math.random() * 256);
      junk.writeUInt32BE(60, 0);
      peer.send(junk);
      peer.send(encodeNotify(1024, 99991, 1, [{ name: 'len', args: [['s', 'probe']] }]));
      // Either the junk was skipped (then the probe is answered) or refused (AGENT-DISCONNECT, close).
      let outcome = 'pending';
      while (outcome === 'pending') {
        const frame = await peer.nextFrame().catch(() => undefined);
        if (!frame) outcome = 'closed';
        else if (frame.type === FrameType.AgentDisconnect) outcome = 'refused';
        else if (frame.type === FrameType.Ack && frame.streamId === 99991) outcome = 'answered';
      }
      expect(['answered', 'refused', 'closed']).toContain(outcome);
      peer.destroy();
    }
  });
});

describe('fragmented NOTIFY (HAProxy 2.x, fragmentation negotiated)', () => {
  let agent: TestAgent;
  beforeAll(async () => {
    agent = await startAgent(
      { controllers: [EchoLengthController] },
      { maxFrameSize: 1024, maxFragmentedPayload: 64 * 1024 },
    );
  });
  afterAll(() => agent.close());

  it('is reassembled and answered once complete', async () => {
    const client = await SpoeClient.connect({
      port: agent.port,
      capabilities: ['pipelining', 'fragmentation'],
      maxFrameSize: 1024,
    });
    expect(client.settings.capabilities).toContain('fragmentation');
    const long = 'x'.repeat(5000);
    expect(await client.notifyFragmented([{ name: 'len', args: { s: long } }], 900)).toMatchObject([{ value: 5000 }]);
    await client.close();
  });

  it('an ABORT drops the payload without an ACK, and the connection goes on', async () => {
    const client = await SpoeClient.connect({
      port: agent.port,
      capabilities: ['pipelining', 'fragmentation'],
      maxFrameSize: 1024,
    });
    await expect(
      client.notifyFragmented([{ name: 'len', args: { s: 'y'.repeat(3000) } }], 900, { abort: true }),
    ).resolves.toBeUndefined();
    expect(await client.notify('len', { s: 'after' })).toMatchObject([{ value: 5 }]);
    expect(client.unexpectedFrames).toHaveLength(0);
    await client.close();
  });

  it('a reassembled payload above maxFragmentedPayload: status 3', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const client = await SpoeClient.connect({
      port: agent.port,
      capabilities: ['pipelining', 'fragmentation'],
      maxFrameSize: 1024,
    });
    await expect(client.notifyFragmented([{ name: 'len', args: { s: 'z'.repeat(70 * 1024) } }], 1000)).rejects.toThrow(
      /status 3/,
    );
    jest.restoreAllMocks();
  });
});
