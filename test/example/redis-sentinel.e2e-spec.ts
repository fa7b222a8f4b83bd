// Fault 4 of the resilience suite, "Redis fails over", with real processes: a Redis primary, two replicas and three
// Sentinels (redis-sentinel), two built agents configured with REDIS_SENTINELS and REDIS_MASTER_NAME behind HAProxy 3.4
// (deploy/haproxy), requests and admin writes flowing the whole time. The primary is demoted while alive (SENTINEL
// FAILOVER), then killed (SIGKILL): every request is still decided (no SPOE error), writes are refused until a replica
// is promoted and acknowledged again after, and no write that was acknowledged is lost. Both agents follow the new
// primary, subscriber included.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { setTimeout as sleep } from 'node:timers/promises';
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
  redisCommand,
  redisSentinel,
  redisServer,
  SentinelTopology,
  startAgentsInFront,
} from './support/example';

jest.setTimeout(120_000);

const haproxy34 = haproxyVersion('3.4');

/** One admin write of a {@link Writer}. */
interface WriteOutcome {
  readonly cidr: string;
  readonly status: number;
  readonly message: string | undefined;
  readonly sentAt: number;
}

/**
 * Admin writes one after the other, alternating between the agents, each a new /32, until stopped: a 201 is an
 * acknowledged write.
 */
class Writer {
  readonly outcomes: WriteOutcome[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  /** `network`: 18 or 19, the second byte of the addresses it blocks (198.18.0.0/16 or 198.19.0.0/16). */
  constructor(agents: readonly AgentProcess[], network: 18 | 19) {
    this.done = (async () => {
      for (let n = 0; !this.stopped; n++) {
        const cidr = `198.${network}.${n >> 8}.${n & 255}/32`;
        const sentAt = Date.now();
        const { status, body } = await api<{ message?: string }>(
          agents[n % agents.length].httpUrl,
          'POST',
          '/blocklist',
          {
            cidr,
          },
        );
        this.outcomes.push({ cidr, status, message: body?.message, sentAt });
        // An admin's pace, not a flood: each write makes every agent reload the whole blocklist.
        await sleep(50);
      }
    })();
  }

  acknowledged(since = 0): WriteOutcome[] {
    return this.outcomes.filter((o) => o.status === 201 && o.sentAt >= since);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describeIf(
  redisServer(),
  redisSentinel(),
  haproxy34.prerequisite,
)('fault: the Redis primary fails over through Sentinel under load (HAProxy 3.4, two agents)', () => {
  let topology: SentinelTopology;
  let agents: readonly AgentProcess[] = [];
  let front: HaproxyInFront;
  let stack: AgentsInFront | undefined;

  beforeAll(async () => {
    // Two replicas: after the failover the new primary still has one, to acknowledge writes (REDIS_MIN_REPLICAS=1).
    topology = await SentinelTopology.start(2);
    stack = await startAgentsInFront(haproxy34.binary!, { ...topology.env });
    ({ agents, front } = stack);
  });
  afterAll(async () => {
    await stack?.stop();
    await topology?.stop();
    await cleanupAll();
  });

  const readiness = async (agent: AgentProcess): Promise<{ status: string; details: Record<string, unknown> }> =>
    (await api<{ status: string; details: Record<string, unknown> }>(agent.httpUrl, 'GET', '/health/ready')).body;

  /**
   * The scenario of both tests: requests through HAProxy and admin writes flowing, `failOver` makes the Sentinels
   * promote a replica; every request is decided, writes resume after the promotion, no acknowledged write is lost.
   */
  async function failoverUnderLoad(label: string, network: 18 | 19, failOver: (primary: number) => Promise<void>) {
    const logged = agents.map((agent) => agent.lines.length);
    expect((await api(agents[0].httpUrl, 'POST', '/blocklist', { cidr: '192.0.2.0/24' })).status).toBe(201);
    const oldPrimary = await topology.primaryPort();
    for (const agent of agents)
      expect((await readiness(agent)).details.redis).toMatchObject({
        status: 'up',
        primary: `127.0.0.1:${oldPrimary}`,
      });

    const load = new DecisionLoad<'before' | 'failover' | 'after'>(
      front.port,
      [{ statuses: [200] }, { source: '192.0.2.7', statuses: [403] }],
      'before',
    );
    const writer = new Writer(agents, network);
    try {
      await load.decisions(100);
      await waitFor('acknowledged writes before the failover', () => writer.acknowledged().length >= 10, 30_000);

      const killedAt = Date.now();
      await failOver(oldPrimary);
      load.phase = 'failover';
      const newPrimary = await waitFor(
        'a replica to be promoted',
        async () => {
          const port = await topology.primaryPort();
          return port !== oldPrimary && port;
        },
        30_000,
        100,
      );
      const promotedAt = Date.now();
      const resumed = await waitFor(
        'an acknowledged write after the promotion',
        () => writer.acknowledged(promotedAt)[0],
        30_000,
      );
      load.phase = 'after';
      await waitFor('more acknowledged writes', () => writer.acknowledged(promotedAt).length >= 10, 30_000);
      await load.decisions(100);
      await writer.stop();
      const result = await load.stop();

      // Both agents are on the new primary, subscriber included: a write through either is in the other's next
      // decision.
      await waitFor('both agents ready on the new primary', async () =>
        (await Promise.all(agents.map(readiness))).every(
          (r) => r.status === 'ok' && (r.details.redis as { primary: string }).primary === `127.0.0.1:${newPrimary}`,
        ),
      );
      const clients = await Promise.all(agents.map((agent) => SpoeClient.connect({ port: agent.spoePort })));
      const score = async (client: SpoeClient, ip: string): Promise<unknown> =>
        (await client.notify('check-client-ip', { ip: SpoeIp.parse(ip) }))[0]?.value;
      try {
        expect((await api(agents[0].httpUrl, 'POST', '/blocklist', { cidr: '203.0.113.1' })).status).toBe(201);
        expect(await score(clients[1], '203.0.113.1')).toBe(100);
        expect((await api(agents[1].httpUrl, 'POST', '/blocklist', { cidr: '203.0.113.2' })).status).toBe(201);
        expect(await score(clients[0], '203.0.113.2')).toBe(100);

        // No acknowledged write lost: each is in the new primary's blocklist, and decided by both agents.
        const acknowledged = writer.acknowledged().map((o) => o.cidr);
        const listed = new Set(
          (await api<Array<{ cidr: string }>>(agents[1].httpUrl, 'GET', '/blocklist')).body.map((e) => e.cidr),
        );
        const lost = acknowledged.filter((cidr) => !listed.has(cidr));
        const undecided: string[] = [];
        for (const cidr of acknowledged)
          for (const client of clients)
            if ((await score(client, cidr.replace('/32', ''))) !== 100) undecided.push(cidr);

        const refused = writer.outcomes.filter((o) => o.status !== 201);
        // Why writes were refused, each reason once with its count (numbers and the Sentinels' addresses left out).
        const reasons: Record<string, number> = {};
        for (const { message = '' } of refused) {
          const reason = message.replace(/^.*\(Sentinels [^)]*\):?/, '').replace(/\d+/g, 'N');
          reasons[reason] = (reasons[reason] ?? 0) + 1;
        }
        const spoeEvents = front.haproxy.spoeEvents();
        console.log(
          `[fault 4: Redis fails over, ${label}] ${result.total} requests, ${JSON.stringify(Object.fromEntries(load.decided))} ` +
            `decided (before/during/after the failover), ${result.failures.length} undecided; ` +
            `${spoeEvents.filter((e) => e.st !== 0).length} SPOE errors in ${spoeEvents.length} SPOE events; replica ` +
            `promoted ${promotedAt - killedAt} ms after the fault; writes acknowledged again ` +
            `${resumed.sentAt - promotedAt} ms after the promotion (${resumed.sentAt - killedAt} ms after the fault); ` +
            `${writer.outcomes.length} writes: ${acknowledged.length} acknowledged, ${refused.length} refused (503: ` +
            `${JSON.stringify(reasons)}), ` +
            `${lost.length} acknowledged writes lost`,
        );
        expect(result.failures.slice(0, 5)).toEqual([]);
        expect(load.count('failover')).toBeGreaterThan(0);
        expect(spoeEvents.filter((e) => e.st !== 0).map((e) => e.raw)).toEqual([]);
        expect(front.haproxy.unexpectedProblems()).toEqual([]);
        expect(lost).toEqual([]);
        expect(undecided).toEqual([]);
        // A refused write says why, and whether it was made.
        for (const { status, message } of refused) {
          expect(status).toBe(503);
          expect(message).toMatch(
            /^the blocklist store is unavailable: Redis primary "blocklist" \(Sentinels .+\)(: | is not connected).*(nothing was changed|may or may not have been made|a failover now would lose it); retry/,
          );
        }
      } finally {
        await Promise.all(clients.map((client) => client.close()));
      }
      // Quiet: one warning when the primary went away and one line when the agent was on the new one.
      for (const [i, agent] of agents.entries()) {
        const lines = agent.lines.slice(logged[i]).filter((line) => /\[RedisBlocklistStore\]/.test(line));
        expect(lines.filter((line) => / unavailable \(/.test(line))).toHaveLength(1);
        expect(lines.filter((line) => /reconnected to Redis primary "blocklist"/.test(line))).toHaveLength(1);
      }
    } finally {
      await writer.stop();
      await load.stop();
    }
  }

  // The primary alive, demoted by the Sentinels: its clients are disconnected (CLIENT KILL) and find the new primary.
  it('follows a primary demoted while alive (SENTINEL FAILOVER): every request decided, no acknowledged write lost', () =>
    failoverUnderLoad('SENTINEL FAILOVER', 18, async () => {
      await redisCommand(topology.sentinels[0].port, 'SENTINEL', 'FAILOVER', SentinelTopology.MASTER_NAME);
    }));

  it('follows a replica promoted when the primary is killed: every request decided, no acknowledged write lost', () =>
    failoverUnderLoad('primary killed', 19, (primary) => topology.server(primary).kill()));
});
