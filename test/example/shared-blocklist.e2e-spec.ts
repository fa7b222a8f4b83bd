// Two agent instances sharing one real redis-server: a change made through either admin API is seen by the next
// NOTIFY on both, as soon as the call returns.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { cleanupAll } from '../support/cleanup';
import { describeIf } from '../support/prerequisites';
import { waitFor } from '../support/wait';
import { api, ExampleAgent, RedisServer, redisServer, startExampleAgent } from './support/example';

jest.setTimeout(60_000);

const describeRedis = describeIf(redisServer());

describeRedis('example agent: blocklist shared through Redis', () => {
  let redis: RedisServer;
  const agents: ExampleAgent[] = [];
  const clients: SpoeClient[] = [];

  const startAgent = async (env: Record<string, string> = {}): Promise<{ agent: ExampleAgent; client: SpoeClient }> => {
    const agent = await startExampleAgent({ REDIS_URL: redis.url, ...env });
    agents.push(agent);
    const client = await SpoeClient.connect({ port: agent.spoePort });
    clients.push(client);
    return { agent, client };
  };
  const score = async (client: SpoeClient, ip: string): Promise<unknown> =>
    (await client.notify('check-client-ip', { ip: SpoeIp.parse(ip) }))[0]?.value;

  // Each test has a Redis of its own and two instances on it, a and b: no test sees what another left.
  let a: { agent: ExampleAgent; client: SpoeClient };
  let b: { agent: ExampleAgent; client: SpoeClient };
  beforeEach(async () => {
    redis = await RedisServer.start();
    a = await startAgent();
    b = await startAgent();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    for (const agent of agents.splice(0)) await agent.close();
    await redis?.stop();
  });
  afterAll(() => cleanupAll());

  it('seeds the default blocklist once: a later instance does not re-add what was removed', async () => {
    expect(await score(a.client, '10.1.2.3')).toBe(100);
    expect((await api(a.agent.httpUrl, 'DELETE', '/blocklist?cidr=10.0.0.0/8')).status).toBe(204);
    const later = await startAgent({ BLOCKLIST: '10.0.0.0/8,192.0.2.0/24' });
    expect(await score(later.client, '10.1.2.3')).toBe(0);
    expect(await score(later.client, '192.0.2.1')).toBe(0);
    expect((await api(later.agent.httpUrl, 'GET', '/blocklist')).body).toEqual([]);
  });

  it('agrees on both instances at the next NOTIFY after a POST to either one', async () => {
    expect(
      (await api(a.agent.httpUrl, 'POST', '/blocklist', { cidr: '203.0.113.0/24', reason: 'from a' })).status,
    ).toBe(201);
    expect([await score(a.client, '203.0.113.5'), await score(b.client, '203.0.113.5')]).toEqual([100, 100]);

    expect((await api(b.agent.httpUrl, 'POST', '/blocklist', { cidr: '2001:db8::/32', reason: 'from b' })).status).toBe(
      201,
    );
    expect([await score(a.client, '2001:db8::1'), await score(b.client, '2001:db8::1')]).toEqual([100, 100]);

    expect((await api(b.agent.httpUrl, 'DELETE', '/blocklist?cidr=203.0.113.0/24')).status).toBe(204);
    expect([await score(a.client, '203.0.113.5'), await score(b.client, '203.0.113.5')]).toEqual([0, 0]);
  });

  it('lists the same entries on every instance', async () => {
    expect((await api(b.agent.httpUrl, 'POST', '/blocklist', { cidr: '2001:db8::/32', reason: 'from b' })).status).toBe(
      201,
    );
    const [listA, listB] = await Promise.all(
      [a, b].map(
        async ({ agent }) =>
          (await api<Array<{ cidr: string; reason: string }>>(agent.httpUrl, 'GET', '/blocklist')).body,
      ),
    );
    expect(listA).toEqual(listB);
    expect(listA.map((e) => [e.cidr, e.reason])).toEqual([
      ['10.0.0.0/8', 'default blocklist'],
      ['2001:db8::/32', 'from b'],
    ]);
  });

  it('loads the current blocklist when an instance starts later', async () => {
    expect((await api(a.agent.httpUrl, 'POST', '/blocklist', { cidr: '2001:db8::/32' })).status).toBe(201);
    const later = await startAgent();
    expect(await score(later.client, '2001:db8::1')).toBe(100);
  });

  it('stops blocking everywhere when an entry with a TTL expires', async () => {
    expect((await api(a.agent.httpUrl, 'POST', '/blocklist', { cidr: '198.51.100.7', ttlSeconds: 1 })).status).toBe(
      201,
    );
    expect(await Promise.all(clients.map((c) => score(c, '198.51.100.7')))).toEqual([100, 100]);
    // Redis expires the entry after its TTL; every instance follows.
    await waitFor('the entry to expire on every instance', async () =>
      (await Promise.all(clients.map((c) => score(c, '198.51.100.7')))).every((s) => s === 0),
    );
  });

  it('answers 404 for removing an entry that is not there, on any instance', async () => {
    for (const { agent } of [a, b]) {
      expect((await api(agent.httpUrl, 'DELETE', '/blocklist?cidr=192.0.2.99')).status).toBe(404);
    }
  });
});
