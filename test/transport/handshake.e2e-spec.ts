import { Controller } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { SetVar, SpopStatus, TypedData } from 'nestjs-spoe';
import { encodeFrame, encodeNotify, FrameFlag, FrameType, writeKvList } from 'nestjs-spoe/protocol';
import { SpoeClient } from 'nestjs-spoe/testing';
import { haproxyHello, RawPeer } from '../support/raw-peer';
import { startAgent, TestAgent } from '../support/agent';

@Controller()
class PingController {
  @MessagePattern('ping')
  ping() {
    return SetVar.txn('pong', true);
  }
}

/** A HAPROXY-HELLO built item by item, to leave some out. */
function helloWith(items: Array<[string, string | boolean | TypedData]>): Buffer {
  return encodeFrame(16380, FrameType.HaproxyHello, FrameFlag.Fin, 0, 0, writeKvList, items);
}

describe('HELLO handshake', () => {
  let agent: TestAgent;
  beforeAll(async () => {
    agent = await startAgent({ controllers: [PingController] }, { maxFrameSize: 8192, helloTimeoutMs: 300 });
  });
  afterAll(() => agent.close());

  it('answers version 2.0, the smaller max-frame-size and the capabilities both sides announce', async () => {
    const { peer, agentHello } = await RawPeer.hello(
      { port: agent.port },
      { maxFrameSize: 16380, capabilities: ['pipelining', 'async', 'something-new'] },
    );
    expect(agentHello).toEqual({ version: '2.0', maxFrameSize: 8192, capabilities: ['pipelining'] });
    peer.destroy();
  });

  it('announces async only when enabled (it is off by default)', async () => {
    const asyncAgent = await startAgent({ controllers: [PingController] }, { async: true });
    const { peer, agentHello } = await RawPeer.hello(
      { port: asyncAgent.port },
      { capabilities: ['pipelining', 'async'] },
    );
    expect(agentHello.capabilities).toEqual(['pipelining', 'async']);
    peer.destroy();
    await asyncAgent.close();
  });

  it("takes HAProxy's max-frame-size when it is the smaller", async () => {
    const { peer, agentHello } = await RawPeer.hello({ port: agent.port }, { maxFrameSize: 1024 });
    expect(agentHello.maxFrameSize).toBe(1024);
    peer.destroy();
  });

  it('announces fragmentation only when HAProxy offers it', async () => {
    const offered = await RawPeer.hello({ port: agent.port }, { capabilities: ['pipelining', 'fragmentation'] });
    expect(offered.agentHello.capabilities).toEqual(['pipelining', 'fragmentation']);
    const notOffered = await RawPeer.hello({ port: agent.port }, { capabilities: [' pipelining '] });
    expect(notOffered.agentHello.capabilities).toEqual(['pipelining']);
    offered.peer.destroy();
    notOffered.peer.destroy();
  });

  it.each([
    ['2.0, 1.5', true],
    [' 2.1 ', true],
    ['1.5,2.0', true],
    ['1.0', false],
    ['3.0', false],
    ['two', false],
  ])('supported-versions "%s" is accepted: %s', async (versions, accepted) => {
    const peer = await RawPeer.connect({ port: agent.port });
    peer.send(haproxyHello({ supportedVersions: versions, capabilities: [] }));
    if (accepted) {
      expect((await peer.nextFrame()).type).toBe(FrameType.AgentHello);
      peer.destroy();
    } else {
      expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.UnsupportedVersion });
    }
  });

  it.each([
    ['supported-versions', SpopStatus.NoVersion],
    ['max-frame-size', SpopStatus.NoMaxFrameSize],
    ['capabilities', SpopStatus.NoCapabilities],
  ])('a HELLO without %s gets AGENT-DISCONNECT status %i', async (missing, status) => {
    const items: Array<[string, string | boolean | TypedData]> = [
      ['supported-versions', '2.0'],
      ['max-frame-size', TypedData.uint32(16380)],
      ['capabilities', 'pipelining'],
    ];
    const peer = await RawPeer.connect({ port: agent.port });
    peer.send(helloWith(items.filter(([key]) => key !== missing)));
    expect(await peer.expectDisconnect()).toMatchObject({ status });
  });

  it('a max-frame-size below 256 gets AGENT-DISCONNECT status 9', async () => {
    const peer = await RawPeer.connect({ port: agent.port });
    peer.send(haproxyHello({ maxFrameSize: 255, capabilities: [] }));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.BadFrameSize });
  });

  it('a first frame that is not a HELLO gets AGENT-DISCONNECT status 4', async () => {
    const peer = await RawPeer.connect({ port: agent.port });
    peer.send(encodeNotify(16380, 1, 1, [{ name: 'ping', args: [] }]));
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.InvalidFrame });
  });

  it('a health-check HELLO gets AGENT-HELLO and a plain close, without AGENT-DISCONNECT', async () => {
    const peer = await RawPeer.connect({ port: agent.port });
    peer.send(haproxyHello({ capabilities: [], healthcheck: true }));
    expect((await peer.nextFrame()).type).toBe(FrameType.AgentHello);
    await peer.expectClosed();
    expect(peer.pendingFrames).toHaveLength(0);
  });

  it('SpoeClient.healthCheck resolves with the AGENT-HELLO', async () => {
    await expect(SpoeClient.healthCheck({ port: agent.port })).resolves.toMatchObject({ version: '2.0' });
  });

  it('closes a connection that never says HELLO with status 2 (timeout)', async () => {
    const peer = await RawPeer.connect({ port: agent.port });
    expect(await peer.expectDisconnect(2000)).toMatchObject({ status: SpopStatus.Timeout });
  });

  it('answers a HELLO that arrives one byte at a time', async () => {
    const peer = await RawPeer.connect({ port: agent.port });
    const hello = haproxyHello();
    for (const byte of hello) {
      peer.send(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    expect((await peer.nextFrame()).type).toBe(FrameType.AgentHello);
    peer.destroy();
  });

  it('sends the AGENT-HELLO in a single write', async () => {
    const peer = await RawPeer.connect({ port: agent.port });
    const chunks: Buffer[] = [];
    peer.socket.prependListener('data', (chunk: Buffer) => chunks.push(chunk));
    peer.send(haproxyHello());
    expect((await peer.nextFrame()).type).toBe(FrameType.AgentHello);
    expect(chunks).toHaveLength(1);
    expect(chunks[0].length).toBe(4 + chunks[0].readUInt32BE(0));
    peer.destroy();
  });
});
