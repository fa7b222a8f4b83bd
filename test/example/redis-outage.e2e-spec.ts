// Fault 3 of the resilience suite, "Redis goes away", with real processes: HAProxy 3.4 (deploy/haproxy) in front of two
// built agents sharing one redis-server, requests flowing the whole time. redis-server is killed (SIGKILL): every
// request is still decided (no SPOE error), admin writes are refused at once with 503, readiness reports the store
// degraded but stays 200. Meanwhile another agent, on the far side of the partition, changes the blocklist. Redis
// comes back: both agents resync without a restart and see that change.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { cleanupAll } from '../support/cleanup';
import { haproxyVersion } from '../support/haproxy-binaries';
import { HttpBackend, startHttpBackend } from '../support/http-backend';
import { LoadResult, runLoad } from '../support/load';
import { describeIf } from '../support/prerequisites';
import { waitFor } from '../support/wait';
import {
  AgentProcess,
  api,
  HaproxyInFront,
  RedisServer,
  redisServer,
  startExampleAgent,
  startHaproxyInFront,
} from './support/example';

jest.setTimeout(120_000);

const haproxy34 = haproxyVersion('3.4');

/** Readiness as terminus answers it. */
interface Readiness {
  status: 'ok' | 'degraded' | 'error';
  details: Record<string, { status: string; message?: string }>;
}

/** A source for each request: a clean one, one blocked before the outage, one blocked during it (by another agent). */
const SOURCES = ['', '192.0.2.7', '198.51.100.7'] as const;

describeIf(redisServer(), haproxy34.prerequisite)('fault: Redis goes away under load (HAProxy 3.4, two agents)', () => {
  let redis: RedisServer;
  const agents: AgentProcess[] = [];
  let backend: HttpBackend;
  let front: HaproxyInFront;

  beforeAll(async () => {
    // Persistent, as a production Redis is: what was written before the kill is there after the restart.
    redis = await RedisServer.start({ persistent: true });
    for (let i = 0; i < 2; i++) agents.push(await AgentProcess.start({ REDIS_URL: redis.url, SHUTDOWN_GRACE_MS: '0' }));
    backend = await startHttpBackend();
    front = await startHaproxyInFront(
      haproxy34.binary!,
      agents.map((agent) => agent.spoePort),
      backend.port,
    );
  });
  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    await backend?.close();
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

    // Load for the whole scenario: each request's phase is the one in force when it was sent.
    let phase: 'before' | 'outage' | 'after' = 'before';
    const phaseOf: string[] = [];
    const decided = { before: 0, outage: 0, after: 0 };
    const stop = new AbortController();
    const load: Promise<LoadResult> = runLoad({
      total: 1_000_000,
      concurrency: 4,
      stop: stop.signal,
      request: (i) => {
        phaseOf[i] = phase;
        const source = SOURCES[i % SOURCES.length];
        const headers: Record<string, string> = source ? { 'x-forwarded-for': source } : {};
        return { host: '127.0.0.1', port: front.port, headers };
      },
      // A decision is a 403, or a 200 that carries the agent's score: an SPOE error leaves X-IP-Score empty.
      check: (response, i) => {
        const source = SOURCES[i % SOURCES.length];
        const expected = source === '' ? [200] : source === '192.0.2.7' ? [403] : [200, 403];
        if (!expected.includes(response.status)) return `${source || 'clean'}: status ${response.status}`;
        if (response.status === 200 && response.headers['x-ip-score'] !== '0')
          return `${source || 'clean'}: X-IP-Score ${JSON.stringify(response.headers['x-ip-score'])}`;
        decided[phaseOf[i] as keyof typeof decided]++;
        return undefined;
      },
    });
    try {
      await waitFor('decisions before the outage', () => decided.before >= 100, 30_000);

      // Redis dies.
      const killedAt = Date.now();
      await redis.kill();
      phase = 'outage';
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
      await waitFor('decisions during the outage', () => decided.outage >= 300, 30_000);

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
      phase = 'after';
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
      await waitFor('decisions after the outage', () => decided.after >= 100, 30_000);

      stop.abort();
      const result = await load;
      const spoeEvents = front.haproxy.spoeEvents();
      console.log(
        `[fault 3: Redis goes away] ${result.total} requests, ${JSON.stringify(decided)} decided (before/during/after ` +
          `the outage), ${result.failures.length} undecided; ${spoeEvents.filter((e) => e.st !== 0).length} SPOE ` +
          `errors in ${spoeEvents.length} SPOE events; degraded reported ${detectedMs} ms after the kill; a write ` +
          `refused in ${refusedInMs} ms; the other agent's change seen ${resyncedMs} ms after Redis was back`,
      );
      expect(result.failures.slice(0, 5)).toEqual([]);
      expect(decided.outage).toBeGreaterThanOrEqual(300);
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
      stop.abort();
      await load;
    }
  });
});
