// Fault 3 of the resilience suite, "Redis goes away", with real processes: HAProxy 3.4 (deploy/haproxy) in front of two
// built agents sharing one redis-server, requests flowing the whole time. redis-server is killed (SIGKILL): every
// request is still decided (no SPOE error), admin writes are refused at once with 503, readiness reports the store
// degraded but stays 200. Meanwhile another agent, on the far side of the partition, changes the blocklist. Redis
// comes back: both agents resync without a restart and see that change.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { cleanupAll } from '../support/cleanup';
import { haproxyVersion } from '../support/haproxy-binaries';
import { describeIf } from '../support/prerequisites';
import { waitFor } from '../support/wait';
import {
  AgentProcess,
  AgentsInFront,
  api,
  DecisionLoad,
  HaproxyInFront,
  RedisServer,
  redisServer,
  startExampleAgent,
  startAgentsInFront,
} from './support/example';

jest.setTimeout(120_000);

const haproxy34 = haproxyVersion('3.4');

/** Readiness as terminus answers it. */
interface Readiness {
  status: 'ok' | 'degraded' | 'error';
  details: Record<string, { status: string; message?: string }>;
}

describeIf(redisServer(), haproxy34.prerequisite)('fault: Redis goes away under load (HAProxy 3.4, two agents)', () => {
  let redis: RedisServer;
  let agents: readonly AgentProcess[] = [];
  let front: HaproxyInFront;
  let stack: AgentsInFront | undefined;

  beforeAll(async () => {
    // Persistent, as a production Redis is: what was written before the kill is there after the restart.
    redis = await RedisServer.start({ persistent: true });
    stack = await startAgentsInFront(haproxy34.binary!, { REDIS_URL: redis.url });
    ({ agents, front } = stack);
  });
  afterAll(async () => {
    await stack?.stop();
    await redis?.kill();
    await cleanupAll();
  });

  const readiness = async (agent: AgentProcess): Promise<Readiness & { httpStatus: number }> => {
    const { status, body } = await api<Readiness>(agent.httpUrl, 'GET', '/health/ready');
    return { ...body, httpStatus: status };
  };
  const score = async (agent: AgentProcess, ip: string): Promise<unknown> => {
    const client = await SpoeClient.connect({ port: agent.spoePort });
    try {
      return (await client.notify('check-client-ip', { ip: SpoeIp.parse(ip) }))[0]?.value;
    } finally {
      await client.close();
    }
  };

  it('decides every request while Redis is away, refuses writes with 503, stays ready (degraded), and resyncs when it is back', async () => {
    expect((await api(agents[0].httpUrl, 'POST', '/blocklist', { cidr: '192.0.2.0/24' })).status).toBe(201);

    // Requests for the whole scenario: clean, blocked before the outage, and blocked during it by another agent.
    const load = new DecisionLoad<'before' | 'outage' | 'after'>(
      front.port,
      [{ statuses: [200] }, { source: '192.0.2.7', statuses: [403] }, { source: '198.51.100.7', statuses: [200, 403] }],
      'before',
    );
    try {
      await load.decisions(100);

      // Redis dies.
      const killedAt = Date.now();
      await redis.kill();
      load.phase = 'outage';
      const reports = await waitFor('both agents to report the store degraded', async () => {
        const answers = await Promise.all(agents.map(readiness));
        return answers.every((r) => r.status === 'degraded') && answers;
      });
      const detectedMs = Date.now() - killedAt;
      for (const report of reports) {
        // Degraded, not out of rotation: the agent decides from the blocklist it holds.
        expect(report.httpStatus).toBe(200);
        expect(report.details.redis).toMatchObject({
          status: 'degraded',
          // Seen by the connection's state, or by the PING of the probe when the state did not show it yet.
          message: expect.stringMatching(
            /^(Redis is not connected: serving blocklist version 2, which may be stale|PING failed)/,
          ),
        });
        expect(report.details.spoe.status).toBe('up');
      }
      const writeStarted = Date.now();
      const refused = await api<{ message: string }>(agents[0].httpUrl, 'POST', '/blocklist', {
        cidr: '203.0.113.0/24',
      });
      const refusedInMs = Date.now() - writeStarted;
      expect(refused.status).toBe(503);
      expect(refused.body.message).toMatch(
        /^the blocklist store is unavailable: Redis at redis:\/\/127\.0\.0\.1:\d+\/? is not connected \(\w+\): nothing was changed; retry once it is back$/,
      );
      expect((await api(agents[1].httpUrl, 'DELETE', '/blocklist?cidr=192.0.2.0/24')).status).toBe(503);
      await load.decisions(300);

      // Meanwhile, on the far side of a partition: another agent reaches a Redis with the same data (here, started on
      // its directory while the agents' one is down) and blocks 198.51.100.0/24. Its change is not announced to the
      // agents here: they were not subscribed when it was made.
      const far = await RedisServer.start({ persistent: true, dir: redis.dir });
      const other = await startExampleAgent({ REDIS_URL: far.url, LOG_LEVEL: 'fatal' });
      try {
        expect((await api(other.httpUrl, 'POST', '/blocklist', { cidr: '198.51.100.0/24' })).status).toBe(201);
      } finally {
        await other.close();
        await far.stop();
      }
      expect(await Promise.all(agents.map((agent) => score(agent, '198.51.100.7')))).toEqual([0, 0]);

      // Redis is back, with the far side's change: the agents reconnect and catch up, without a restart.
      await redis.restart();
      const backAt = Date.now();
      load.phase = 'after';
      await waitFor('both agents to block what the other agent blocked', async () =>
        (await Promise.all(agents.map((agent) => score(agent, '198.51.100.7')))).every((s) => s === 100),
      );
      const resyncedMs = Date.now() - backAt;
      await waitFor('both agents to be ready, the store up', async () =>
        (await Promise.all(agents.map(readiness))).every((r) => r.status === 'ok'),
      );
      // Writes work again, and reach the other agent before they return.
      expect((await api(agents[1].httpUrl, 'POST', '/blocklist', { cidr: '203.0.113.0/24' })).status).toBe(201);
      expect(await score(agents[0], '203.0.113.9')).toBe(100);
      await load.decisions(100);

      const result = await load.stop();
      const spoeEvents = front.haproxy.spoeEvents();
      console.log(
        `[fault 3: Redis goes away] ${result.total} requests, ${JSON.stringify(Object.fromEntries(load.decided))} decided (before/during/after ` +
          `the outage), ${result.failures.length} undecided; ${spoeEvents.filter((e) => e.st !== 0).length} SPOE ` +
          `errors in ${spoeEvents.length} SPOE events; degraded reported ${detectedMs} ms after the kill; a write ` +
          `refused in ${refusedInMs} ms; the other agent's change seen ${resyncedMs} ms after Redis was back`,
      );
      expect(result.failures.slice(0, 5)).toEqual([]);
      expect(load.count('outage')).toBeGreaterThanOrEqual(300);
      expect(spoeEvents.filter((e) => e.st !== 0).map((e) => e.raw)).toEqual([]);
      expect(front.haproxy.unexpectedProblems()).toEqual([]);
      // Quiet: one warning when Redis went away and one line when it was back, per agent, whatever the traffic.
      for (const agent of agents) {
        const store = agent.lines.filter((line) => /\b(WARN|ERROR|LOG) \[RedisBlocklistStore\]/.test(line));
        expect(store.filter((line) => /\b(WARN|ERROR) /.test(line))).toEqual([
          expect.stringMatching(/unavailable \(.+\): serving blocklist version 2 until it is back/),
        ]);
        expect(store.filter((line) => /reconnected/.test(line))).toEqual([
          expect.stringMatching(/LOG \[RedisBlocklistStore\] reconnected to Redis at /),
        ]);
      }
    } finally {
      await load.stop();
    }
  });
});
