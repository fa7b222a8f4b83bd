import { Controller, Logger } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { SetVar, SpopStatus } from 'nestjs-spoe';
import { SpoeMetricsModule } from 'nestjs-spoe/metrics';
import { decodeAgentHello, decodeDisconnect, FrameReader, FrameType } from 'nestjs-spoe/protocol';
import { SpoeClient } from 'nestjs-spoe/testing';
import { connect } from 'node:net';
import { Registry } from 'prom-client';
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

/** Connects, sends a HAPROXY-HELLO, and returns every byte the agent sends until it closes. */
async function refusedBytes(port: number): Promise<{ chunks: Buffer[] }> {
  const peer = await RawPeer.connect({ port });
  const chunks: Buffer[] = [];
  peer.socket.prependListener('data', (chunk: Buffer) => chunks.push(chunk));
  peer.send(haproxyHello());
  await peer.expectClosed();
  return { chunks };
}

describe('maxConnections: connections beyond it are refused, those open are not disturbed', () => {
  let agent: TestAgent;
  let warn: jest.SpyInstance;
  beforeEach(() => {
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(async () => {
    await agent.close();
    jest.restoreAllMocks();
  });

  it('a connection beyond it reads exactly one AGENT-DISCONNECT status 13, then EOF; open ones keep answering', async () => {
    agent = await startAgent({ controllers: [QuickController] }, { maxConnections: 3 });
    const clients = await Promise.all([1, 2, 3].map(() => SpoeClient.connect({ port: agent.port })));
    try {
      const { chunks } = await refusedBytes(agent.port);
      const bytes = Buffer.concat(chunks);
      const reader = new FrameReader(16380);
      reader.push(bytes);
      const frame = reader.next()!;
      expect(frame.type).toBe(FrameType.AgentDisconnect);
      expect(decodeDisconnect(frame)).toMatchObject({ status: SpopStatus.ResourceAllocation });
      expect(reader.bufferedBytes).toBe(0);
      expect(chunks).toHaveLength(1); // one write
      expect(agent.server.stats.connections).toBe(3);
      for (const client of clients) expect(await client.notify('quick')).toMatchObject([{ value: true }]);
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  });

  it('a slot freed by a closed connection is given to the next one', async () => {
    agent = await startAgent({ controllers: [QuickController] }, { maxConnections: 1 });
    const first = await SpoeClient.connect({ port: agent.port });
    await expect(SpoeClient.connect({ port: agent.port })).rejects.toThrow();
    await first.close();
    await waitFor('the first connection to be closed', () => agent.server.stats.connections === 0);
    const second = await SpoeClient.connect({ port: agent.port });
    expect(await second.notify('quick')).toMatchObject([{ value: true }]);
    await second.close();
  });

  it('connections still in their HELLO count', async () => {
    agent = await startAgent({ controllers: [QuickController] }, { maxConnections: 2 });
    const silent = await Promise.all([1, 2].map(() => RawPeer.connect({ port: agent.port })));
    await waitFor('both connections to be accepted', () => agent.server.stats.connections === 2);
    const refused = await RawPeer.connect({ port: agent.port });
    expect(await refused.expectDisconnect()).toMatchObject({ status: SpopStatus.ResourceAllocation });
    silent.forEach((peer) => peer.destroy());
  });

  it('a health check counts while open, and is closed disconnectLingerMs after its AGENT-HELLO if the peer keeps it', async () => {
    agent = await startAgent({ controllers: [QuickController] }, { maxConnections: 1, disconnectLingerMs: 300 });
    // A peer that never closes its side: the agent's end() alone does not close the socket.
    const check = connect({ port: agent.port, host: '127.0.0.1', allowHalfOpen: true });
    const received: Buffer[] = [];
    check.on('data', (chunk: Buffer) => received.push(chunk));
    const ended = new Promise<void>((resolve) => check.once('end', resolve));
    await new Promise<void>((resolve) => check.once('connect', resolve));
    check.write(haproxyHello({ healthcheck: true }));
    await ended;
    const reader = new FrameReader(16380);
    reader.push(Buffer.concat(received));
    expect(decodeAgentHello(reader.next()!).version).toBe('2.0');
    expect(agent.server.stats.connections).toBe(1);
    const refused = await RawPeer.connect({ port: agent.port });
    expect(await refused.expectDisconnect()).toMatchObject({ status: SpopStatus.ResourceAllocation });
    // The agent's side is destroyed; this peer would only see it by writing.
    await waitFor('the health check to be closed', () => agent.server.stats.connections === 0);
    check.destroy();
    const client = await SpoeClient.connect({ port: agent.port });
    await client.close();
  });

  it('refusals are counted in spoe_connections_refused_total and spoe_agent_disconnects_total{status="13"}', async () => {
    const registry = new Registry();
    agent = await startAgent(
      { imports: [SpoeMetricsModule.forRoot({ registry })], controllers: [QuickController] },
      { maxConnections: 1 },
    );
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      for (let i = 0; i < 3; i++) await refusedBytes(agent.port);
      const metrics = await registry.metrics();
      expect(metrics).toContain('spoe_connections_refused_total 3');
      expect(metrics).toContain('spoe_agent_disconnects_total{status="13"} 3');
      expect(metrics).toContain('spoe_connections_accepted_total 1');
    } finally {
      await client.close();
    }
  });

  it('warns at the first refusal, then at most every few seconds', async () => {
    agent = await startAgent({ controllers: [QuickController] }, { maxConnections: 1 });
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      for (let i = 0; i < 5; i++) await refusedBytes(agent.port);
      const refusals = warn.mock.calls.filter(([message]) => String(message).includes('maxConnections'));
      expect(refusals).toEqual([[expect.stringContaining('1 connection(s) refused with AGENT-DISCONNECT status 13')]]);
    } finally {
      await client.close();
    }
  });
});
