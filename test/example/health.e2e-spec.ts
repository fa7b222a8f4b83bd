// /health/live and /health/ready of the example agent, with the in-memory store and with a real redis-server that
// goes away and comes back.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { cleanupAll } from '../support/cleanup';
import { describeIf } from '../support/prerequisites';
import { waitFor } from '../support/wait';
import { api, ExampleAgent, RedisServer, redisServer, startExampleAgent } from './support/example';

jest.setTimeout(60_000);

interface Health {
  status: 'ok' | 'degraded' | 'error';
  info: Record<string, Record<string, unknown>>;
  error: Record<string, Record<string, unknown>>;
  details: Record<string, Record<string, unknown>>;
}

describe('example agent: health (in-memory store)', () => {
  let agent: ExampleAgent;
  beforeAll(async () => {
    agent = await startExampleAgent();
  });
  afterAll(() => agent?.close());

  it('is live', async () => {
    expect(await api(agent.httpUrl, 'GET', '/health/live')).toEqual({
      status: 200,
      body: { status: 'ok', info: {}, error: {}, details: {} },
    });
  });

  it('is ready: serving, SPOE listening and answering a health-check HELLO; no Redis indicator', async () => {
    const { status, body } = await api<Health>(agent.httpUrl, 'GET', '/health/ready');
    expect(status).toBe(200);
    expect(Object.keys(body.details).sort()).toEqual(['lifecycle', 'spoe']);
    expect(body.details.lifecycle).toEqual({ status: 'up', state: 'serving' });
    expect(body.details.spoe).toMatchObject({
      status: 'up',
      listening: true,
      inFlight: 0,
      probe: { version: '2.0', maxFrameSize: 16380 },
    });
  });

  it('counts HAProxy connections in the SPOE details', async () => {
    const clients = await Promise.all([
      SpoeClient.connect({ port: agent.spoePort }),
      SpoeClient.connect({ port: agent.spoePort }),
    ]);
    const { body } = await api<Health>(agent.httpUrl, 'GET', '/health/ready');
    expect(body.details.spoe.connections).toBe(2);
    await Promise.all(clients.map((c) => c.close()));
  });
});

const describeRedis = describeIf(redisServer());

describeRedis('example agent: health with Redis', () => {
  let redis: RedisServer;
  let agent: ExampleAgent;
  let client: SpoeClient;

  // Each test has a Redis and an agent of its own.
  beforeEach(async () => {
    redis = await RedisServer.start();
    // The agent warns while Redis is away: expected here.
    agent = await startExampleAgent({ REDIS_URL: redis.url, HEALTH_TIMEOUT_MS: '500', LOG_LEVEL: 'fatal' });
    client = await SpoeClient.connect({ port: agent.spoePort });
  });
  afterEach(async () => {
    await client?.close();
    await agent?.close();
    await redis?.stop();
  });
  afterAll(() => cleanupAll());

  /** 192.0.2.0/24 blocked, then Redis stopped: resolves with the first readiness answer that says so. */
  async function redisAway(): Promise<{ status: number; body: Health }> {
    expect((await api(agent.httpUrl, 'POST', '/blocklist', { cidr: '192.0.2.0/24' })).status).toBe(201);
    await redis.stop();
    return waitFor('readiness to report the store degraded', async () => {
      const response = await api<Health>(agent.httpUrl, 'GET', '/health/ready');
      return response.body.status !== 'ok' && response;
    });
  }

  it('is ready with a Redis indicator: both connections ready, PING answered', async () => {
    const { status, body } = await api<Health>(agent.httpUrl, 'GET', '/health/ready');
    expect(status).toBe(200);
    expect(body.details.redis).toMatchObject({
      status: 'up',
      command: 'ready',
      subscriber: 'ready',
      version: 1,
      entries: 1,
    });
    expect(body.details.redis.pingMs).toEqual(expect.any(Number));
  });

  it('reports the store degraded when Redis stops, readiness staying 200 (decisions go on); liveness 200; SPOE keeps answering', async () => {
    const { status, body } = await redisAway();
    expect(status).toBe(200);
    expect(body.status).toBe('degraded');
    expect(body.error).toEqual({});
    expect(body.info.redis).toMatchObject({
      status: 'degraded',
      version: 2,
      message: expect.stringMatching(/Redis is not connected: serving blocklist version 2|PING failed/),
    });
    expect(body.info.spoe).toMatchObject({ status: 'up' });
    expect((await api(agent.httpUrl, 'GET', '/health/live')).status).toBe(200);
    // The matcher in memory keeps the last version: the agent still scores while Redis is away.
    expect((await client.notify('check-client-ip', { ip: SpoeIp.parse('192.0.2.1') }))[0].value).toBe(100);
  });

  it('answers admin writes 503 at once while Redis is away: refused, not queued until a timeout', async () => {
    await redisAway();
    const { status, body } = await api<{ message: string }>(agent.httpUrl, 'POST', '/blocklist', {
      cidr: '198.51.100.0/24',
    });
    expect(status).toBe(503);
    expect(body.message).toMatch(/^the blocklist store is unavailable: /);
    // A write that waited for Redis would end in ioredis's "Command timed out" (after the command timeout, 2 s); one
    // refused at once says that the connection is down (ioredis's offline queue is off).
    expect(body.message).not.toMatch(/timed out/i);
    expect(body.message).toMatch(/is not connected \(\w+\): nothing was changed; retry once it is back$/);
  });

  it('is ready again once Redis is back, and has caught up with changes made meanwhile', async () => {
    await redisAway();
    await redis.restart();
    await waitFor(
      'readiness to recover',
      async () => (await api<Health>(agent.httpUrl, 'GET', '/health/ready')).body.status === 'ok',
      15_000,
    );
    // The restarted Redis came back empty (no persistence): on reconnection the agent seeded the defaults again and
    // reloaded, so what was added before the restart is gone and the default 10.0.0.0/8 is back.
    await waitFor(
      'the blocklist to follow Redis',
      async () => (await client.notify('check-client-ip', { ip: SpoeIp.parse('192.0.2.1') }))[0].value === 0,
    );
    expect((await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') }))[0].value).toBe(100);
    expect((await api(agent.httpUrl, 'POST', '/blocklist', { cidr: '198.51.100.0/24' })).status).toBe(201);
    expect((await client.notify('check-client-ip', { ip: SpoeIp.parse('198.51.100.1') }))[0].value).toBe(100);
  });
});
