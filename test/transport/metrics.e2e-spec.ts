import { Controller, Logger } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { SetVar, SpopStatus } from 'nestjs-spoe';
import { SpoeMetrics, SpoeMetricsModule } from 'nestjs-spoe/metrics';
import { encodeAck } from 'nestjs-spoe/protocol';
import { SpoeClient } from 'nestjs-spoe/testing';
import { Registry } from 'prom-client';
import { NEVER } from 'rxjs';
import { startAgent, TestAgent } from '../support/agent';
import { RawPeer } from '../support/raw-peer';
import { waitFor } from '../support/wait';

/** Answers 'held' when the test releases it, so that a scrape can see it in flight. */
const held = { release: (): void => undefined };

@Controller()
class MeteredController {
  @MessagePattern('ok')
  ok() {
    return SetVar.txn('ok', 1);
  }

  @MessagePattern('fails')
  fails(): never {
    throw new Error('handler exploded');
  }

  // A deadline the test expects to pass: 50 ms, while the transport's is a minute.
  @MessagePattern('slow', { deadline: 50 })
  slow() {
    return NEVER;
  }

  @MessagePattern('held')
  held() {
    return new Promise((resolve) => (held.release = () => resolve(SetVar.txn('held', 1))));
  }
}

describe('SpoeMetricsModule: the transport in Prometheus series', () => {
  let agent: TestAgent;
  let registry: Registry;

  /** The value of one series (a histogram's by its `_bucket`, `_count`… name), 0 when it does not exist (yet). */
  async function value(name: string, labels: Record<string, string> = {}): Promise<number> {
    for (const metric of await registry.getMetricsAsJSON()) {
      for (const v of metric.values) {
        const sample = v as { metricName?: string; labels: Record<string, unknown>; value: number };
        if ((sample.metricName ?? metric.name) !== name) continue;
        if (Object.entries(labels).every(([k, l]) => String(sample.labels[k]) === l)) return sample.value;
      }
    }
    return 0;
  }

  // Each test has an agent and a registry of its own: exact counts, in any order.
  beforeEach(async () => {
    registry = new Registry();
    agent = await startAgent(
      { imports: [SpoeMetricsModule.forRoot({ registry })], controllers: [MeteredController] },
      { handlerDeadlineMs: 60_000, maxInFlightPerConnection: 1 },
    );
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await agent.close();
  });

  it('counts a known workload exactly: messages by name and outcome, NOTIFY, ACKs and their bytes, HELLOs', async () => {
    const client = await SpoeClient.connect({ port: agent.port });
    for (let frameId = 1; frameId <= 3; frameId++)
      await client.notifyMessages([{ name: 'ok' }], { streamId: 1, frameId });
    await client.notify('fails');
    await client.notify('slow');
    await client.notify('nobody-handles-this');
    await client.notify('nor-this');
    await SpoeClient.healthCheck({ port: agent.port });

    expect(await value('spoe_messages_total', { message: 'ok', outcome: 'ok' })).toBe(3);
    expect(await value('spoe_messages_total', { message: 'fails', outcome: 'failed' })).toBe(1);
    expect(await value('spoe_messages_total', { message: 'slow', outcome: 'deadline' })).toBe(1);
    // Names without a handler share one label value: a peer cannot grow the series set.
    expect(await value('spoe_messages_total', { message: '(unhandled)', outcome: 'unhandled' })).toBe(2);
    expect(await value('spoe_notify_frames_total')).toBe(7);
    expect(await value('spoe_acks_total')).toBe(7);
    expect(await value('spoe_handler_duration_seconds_count', { message: 'ok' })).toBe(3);
    expect(await value('spoe_handler_duration_seconds_count', { message: 'slow' })).toBe(1);
    // The slow handler is counted at its deadline: at least 50 ms, in the buckets from 50 ms up.
    expect(await value('spoe_handler_duration_seconds_bucket', { message: 'slow', le: '0.025' })).toBe(0);
    expect(await value('spoe_handler_duration_seconds_bucket', { message: 'slow', le: '+Inf' })).toBe(1);
    expect(await value('spoe_hellos_total', { outcome: 'accepted' })).toBe(1);
    expect(await value('spoe_hellos_total', { outcome: 'healthcheck' })).toBe(1);
    expect(await value('spoe_connections_accepted_total')).toBe(2);

    const before = await value('spoe_ack_bytes_total');
    await client.notifyMessages([{ name: 'ok' }], { streamId: 1, frameId: 4 });
    expect((await value('spoe_ack_bytes_total')) - before).toBe(encodeAck(16380, 1, 4, [SetVar.txn('ok', 1)]).length);

    await client.close();
    await waitFor('the connection closed', async () => (await value('spoe_connections_open')) === 0);
    expect(await value('spoe_haproxy_disconnects_total', { status: '0' })).toBe(1);
    expect(await value('spoe_agent_disconnects_total', { status: '0' })).toBe(1);
  });

  it('shows NOTIFY in flight and connections open in its gauges, and back-pressure pauses by cause', async () => {
    const client = await SpoeClient.connect({ port: agent.port });
    const first = client.notify('held');
    // maxInFlightPerConnection is 1: the second NOTIFY waits in the socket, the connection stops reading.
    const second = client.notify('ok');
    await waitFor('a pause', async () => (await value('spoe_backpressure_pauses_total', { cause: 'in-flight' })) >= 1);
    expect(await value('spoe_notify_in_flight')).toBe(1);
    expect(await value('spoe_connections_open')).toBe(1);
    held.release();
    await Promise.all([first, second]);
    expect(await value('spoe_notify_in_flight')).toBe(0);
    await client.close();
  });

  it('counts protocol errors and the HELLOs they refuse by SPOP status', async () => {
    const peer = await RawPeer.connect({ port: agent.port });
    peer.send(Buffer.from([0, 0, 0, 1, 0xff])); // a frame of an unknown type where the HELLO must come
    await peer.expectDisconnect();
    peer.destroy();
    const status = String(SpopStatus.InvalidFrame);
    expect(await value('spoe_hellos_total', { outcome: 'refused' })).toBe(1);
    expect(await value('spoe_protocol_errors_total', { status })).toBe(1);
    expect(await value('spoe_agent_disconnects_total', { status })).toBe(1);
  });
});

describe('SpoeMetrics on a server built by hand', () => {
  it('counts once attached, and nothing once released', async () => {
    const registry = new Registry();
    const metrics = new SpoeMetrics({ registry, prefix: 'agent_' });
    const agent = await startAgent({ controllers: [MeteredController] });
    const total = async (name: string) => (await registry.getSingleMetric(name)!.get()).values[0]?.value;
    try {
      const client = await SpoeClient.connect({ port: agent.port });
      await client.notify('ok'); // before: not counted
      metrics.attach(agent.server);
      await client.notify('ok');
      await client.notify('ok');
      metrics.release(agent.server);
      await client.notify('ok'); // after: not counted
      const series = await registry.getSingleMetric('agent_messages_total')!.get();
      expect(series.values).toEqual([{ labels: { message: 'ok', outcome: 'ok' }, value: 2 }]);
      // NOTIFY and ACKs are the server's own counts, read at scrape: the same window applies.
      expect(await total('agent_notify_frames_total')).toBe(2);
      expect(await total('agent_acks_total')).toBe(2);
      const ackBytes = (await total('agent_ack_bytes_total'))!;
      expect(ackBytes).toBeGreaterThan(0);
      // Attached again, it adds to what it counted.
      metrics.attach(agent.server);
      await client.notify('ok');
      expect(await total('agent_notify_frames_total')).toBe(3);
      expect(await total('agent_acks_total')).toBe(3);
      expect(await total('agent_ack_bytes_total')).toBe((ackBytes * 3) / 2);
      expect(agent.server.stats).toMatchObject({ notifies: 5, acks: 5, ackBytes: (ackBytes * 5) / 2 });
      await client.close();
    } finally {
      await agent.close();
    }
  });
});
