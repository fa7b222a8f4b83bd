import { Controller, Logger } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoePauseCause } from 'nestjs-spoe';
import { SpoeMetricsModule } from 'nestjs-spoe/metrics';
import { SpoeClient } from 'nestjs-spoe/testing';
import { NEVER } from 'rxjs';
import { Registry } from 'prom-client';
import { startAgent, TestAgent } from '../support/agent';
import { waitFor } from '../support/wait';

/** Handlers of 'hold' wait for the test to release them by key. */
const holding = new Map<string, () => void>();
let started: string[] = [];

@Controller()
class HoldingController {
  @MessagePattern('hold')
  hold(@Payload('key') key: string) {
    started.push(key);
    return new Promise((resolve) => holding.set(key, () => resolve(SetVar.txn('held', key))));
  }

  @MessagePattern('quick')
  quick() {
    return SetVar.txn('quick', true);
  }

  /** Answers a few milliseconds later: handlers that hold their bytes for a while, then let go. */
  @MessagePattern('soon')
  soon(@Payload('key') key: string) {
    return new Promise((resolve) => setTimeout(() => resolve(SetVar.txn('soon', key)), 2));
  }

  @MessagePattern('never', { deadline: 200 })
  never() {
    return NEVER;
  }
}

const release = (key: string): void => holding.get(key)!();
/** Makes a NOTIFY's payload about this many bytes. */
const padding = (bytes: number): string => 'x'.repeat(bytes);

describe('maxInFlightBytes: the bytes of NOTIFY being handled across all connections', () => {
  let agent: TestAgent;
  let clients: SpoeClient[];
  let pauses: SpoePauseCause[];

  async function start(maxInFlightBytes: number, registry = new Registry()): Promise<void> {
    agent = await startAgent(
      { imports: [SpoeMetricsModule.forRoot({ registry })], controllers: [HoldingController] },
      { maxInFlightBytes },
    );
    agent.server.observe({ paused: (cause) => pauses.push(cause) });
  }

  async function connect(count: number): Promise<SpoeClient[]> {
    const connected = await Promise.all(Array.from({ length: count }, () => SpoeClient.connect({ port: agent.port })));
    clients.push(...connected);
    return connected;
  }

  beforeEach(() => {
    holding.clear();
    started = [];
    clients = [];
    pauses = [];
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(async () => {
    for (const key of holding.keys()) release(key);
    await Promise.all(clients.map((client) => client.close()));
    await agent.close();
    jest.restoreAllMocks();
  });

  it('a slow handler holding the bound pauses every connection; each one resumes when it answers', async () => {
    const registry = new Registry();
    await start(1000, registry);
    const [holder, ...others] = await connect(4);
    const held = holder.notify('hold', { key: 'big', pad: padding(1200) });
    await waitFor('the holder to be handled', () => started.includes('big'));
    const answers = others.map((client) => client.notify('quick'));
    // Every connection stops before its next frame, the holder's included.
    await waitFor('every connection to pause', () => pauses.length === 4);
    expect(pauses).toEqual(Array(4).fill('in-flight-bytes'));
    expect(agent.server.stats).toMatchObject({ inFlight: 1, inFlightBytes: expect.any(Number) });
    const inFlightBytes = agent.server.stats.inFlightBytes;
    expect(inFlightBytes).toBeGreaterThanOrEqual(1200);
    expect(await registry.metrics()).toContain(`spoe_notify_in_flight_bytes ${inFlightBytes}`);
    release('big');
    expect(await held).toMatchObject([{ name: 'held', value: 'big' }]);
    for (const answer of await Promise.all(answers)) expect(answer).toMatchObject([{ name: 'quick', value: true }]);
    expect(agent.server.stats.inFlightBytes).toBe(0);
    expect(await registry.metrics()).toContain('spoe_backpressure_pauses_total{cause="in-flight-bytes"} 4');
  });

  it('one connection holding everything, with NOTIFY larger than the bound, is read one NOTIFY at a time: no deadlock', async () => {
    await start(1000);
    const [client] = await connect(1);
    const keys = ['a', 'b', 'c', 'd'];
    const answers = keys.map((key) => client.notify('hold', { key, pad: padding(1500) }));
    for (const key of keys) {
      await waitFor(`"${key}" to be handled`, () => started.includes(key));
      // Nothing more is read while it runs.
      expect(started).toEqual(keys.slice(0, keys.indexOf(key) + 1));
      expect(agent.server.stats.inFlight).toBe(1);
      release(key);
    }
    expect((await Promise.all(answers)).map((actions) => actions[0].value)).toEqual(keys);
  });

  it('a handler that never answers holds its bytes until its deadline; then the others resume', async () => {
    await start(1000);
    const [stuck, other] = await connect(2);
    const expired = stuck.notify('never', { pad: padding(1200) });
    await waitFor('the stuck handler to hold the bound', () => agent.server.stats.inFlightBytes >= 1000);
    const answer = other.notify('quick');
    expect(await expired).toEqual([]);
    expect(await answer).toMatchObject([{ name: 'quick', value: true }]);
  });

  it('many connections competing for a small bound are all answered', async () => {
    await start(2000);
    const many = await connect(20);
    const answers = many.flatMap((client, c) =>
      Array.from({ length: 20 }, (_, i) => client.notify('soon', { key: `${c}.${i}`, pad: padding(400) })),
    );
    const values = (await Promise.all(answers)).map((actions) => actions[0].value);
    expect(values).toEqual(many.flatMap((_, c) => Array.from({ length: 20 }, (_, i) => `${c}.${i}`)));
    expect(pauses.filter((cause) => cause === 'in-flight-bytes').length).toBeGreaterThan(0);
    expect(agent.server.stats.inFlightBytes).toBe(0);
  });
});
