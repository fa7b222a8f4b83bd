// SPOE_WORKERS=2: the built agent (`node dist/main.js`) as a supervisor of two workers sharing the SPOE and HTTP ports.
// Connections spread over both workers; a blocklist write returns once every worker sees it (in memory through the
// supervisor, or through Redis); readiness covers every worker; a crashed worker is replaced; SIGTERM drains them all.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeAgentDisconnectedError, SpoeClient } from 'nestjs-spoe/testing';
import { AddressInfo, createServer } from 'node:net';
import { cleanupAll } from '../support/cleanup';
import { httpRequest } from '../support/http';
import { describeIf } from '../support/prerequisites';
import { waitFor } from '../support/wait';
import {
  AgentProcess,
  api,
  bearer,
  connectionsServedBy,
  ensureBuilt,
  processExists,
  RedisServer,
  redisServer,
} from './support/example';

jest.setTimeout(120_000);

interface WorkersIndicator {
  status: 'up' | 'down';
  expected: number;
  ready: number;
  processes: Array<{ pid: number | null; state: string; replacing?: { pid: number; exit: string } }>;
  message?: string;
}
interface Readiness {
  status: 'ok' | 'error';
  details: { lifecycle: { status: string }; workers: WorkersIndicator };
}

const score = async (client: SpoeClient, ip: string): Promise<unknown> =>
  (await client.notify('check-client-ip', { ip: SpoeIp.parse(ip) }))[0]?.value;

/**
 * An admin call on a new HTTP connection: round-robin hands each to the next worker. `headers` go with it (an
 * `authorization`).
 */
async function admin(
  agent: AgentProcess,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<number> {
  const { hostname, port } = new URL(agent.httpUrl);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return (
    await httpRequest({
      host: hostname,
      port: Number(port),
      method,
      path,
      headers: { ...(payload !== undefined && { 'content-type': 'application/json' }), ...headers },
      ...(payload !== undefined && { body: payload }),
    })
  ).status;
}

/** The supervisor's warning at startup when ADMIN_TOKEN is not set. */
const OPEN_ADMIN_WARNING = '[Supervisor] ADMIN_TOKEN is not set: the admin API answers only on loopback';

/**
 * Opens `count` SPOP connections, one after the other, and waits until the workers hold exactly those: how many each
 * worker serves, by pid.
 */
async function connect(
  agent: AgentProcess,
  count: number,
): Promise<{ clients: SpoeClient[]; served: Map<number, number> }> {
  const clients: SpoeClient[] = [];
  for (let i = 0; i < count; i++) clients.push(await SpoeClient.connect({ port: agent.spoePort }));
  const served = await waitFor(`the workers to hold the ${count} connections`, () => {
    const byPid = new Map(agent.workerPids().map((pid) => [pid, connectionsServedBy(pid, agent.spoePort)]));
    return [...byPid.values()].reduce((a, b) => a + b, 0) === count && byPid;
  });
  return { clients, served };
}

const byNumber = (a: number, b: number): number => a - b;

const readiness = (agent: AgentProcess): Promise<{ status: number; body: Readiness }> =>
  api<Readiness>(agent.httpUrl, 'GET', '/health/ready');

/**
 * A supervisor of two workers (in-memory blocklist, `env` besides) for the tests of one describe, and the connections
 * they open.
 */
function twoWorkers(env: Record<string, string> = {}): {
  agent: () => AgentProcess;
  workers: () => number[];
  open: SpoeClient[];
} {
  let agent: AgentProcess;
  let workers: number[];
  const open: SpoeClient[] = [];
  beforeAll(async () => {
    agent = await AgentProcess.start({ SPOE_WORKERS: '2', SHUTDOWN_GRACE_MS: '60000', LOG_LEVEL: 'log', ...env });
    workers = agent.workerPids();
  });
  // A test's connections end with it: the next one counts only its own.
  afterEach(async () => {
    for (const client of open.splice(0)) client.destroy();
    await waitFor('the workers to hold no connection', () =>
      agent.workerPids().every((pid) => connectionsServedBy(pid, agent.spoePort) === 0),
    );
  });
  afterAll(async () => {
    await agent?.stop();
    await cleanupAll();
  });
  return { agent: () => agent, workers: () => workers, open };
}

/** Opens 4 SPOP connections that the describe closes at its end. */
async function fourClients(agent: AgentProcess, open: SpoeClient[]): Promise<SpoeClient[]> {
  const { clients } = await connect(agent, 4);
  open.push(...clients);
  return clients;
}

// Each test stands alone: the ones that end a worker or the supervisor have a supervisor of their own.
describe('SPOE_WORKERS=2, in-memory blocklist', () => {
  const { agent, workers, open } = twoWorkers();

  it('runs two workers, named by the supervisor once they are ready', () => {
    expect(workers()).toHaveLength(2);
    const line = agent().lines.find((l) => l.includes('[Supervisor] 2 workers ready: pids '));
    expect(
      line
        ?.replace(/.*pids /, '')
        .split(', ')
        .map(Number)
        .sort(byNumber),
    ).toEqual([...workers()].sort(byNumber));
  });

  it('says once, as the supervisor, that without ADMIN_TOKEN the admin API answers only on loopback', () => {
    expect(agent().lines.filter((line) => line.includes(OPEN_ADMIN_WARNING))).toHaveLength(1);
    expect(agent().output()).not.toMatch(/\[Agent\] ADMIN_TOKEN/);
  });

  it('spreads SPOP connections over both workers', async () => {
    const { clients, served } = await connect(agent(), 4);
    open.push(...clients);
    expect([...served.keys()].sort(byNumber)).toEqual([...workers()].sort(byNumber));
    for (const pid of workers()) expect(served.get(pid)).toBeGreaterThanOrEqual(1);
  });

  it('is ready with a workers indicator: both workers ready', async () => {
    const { status, body } = await readiness(agent());
    expect(status).toBe(200);
    expect(body.details.workers).toEqual({
      status: 'up',
      expected: 2,
      ready: 2,
      processes: expect.arrayContaining(workers().map((pid) => ({ pid, state: 'ready' }))),
    });
  });

  it('has every worker score an address 100 as soon as the POST returns, and 0 as soon as the DELETE returns', async () => {
    const clients = await fourClients(agent(), open);
    for (const [i, cidr] of ['203.0.113.0/24', '198.51.100.0/24'].entries()) {
      const ip = cidr.replace('0/24', '7');
      expect(await admin(agent(), 'POST', '/blocklist', { cidr, reason: `write ${i}` })).toBe(201);
      expect(await Promise.all(clients.map((c) => score(c, ip)))).toEqual([100, 100, 100, 100]);
      expect(await admin(agent(), 'DELETE', `/blocklist?cidr=${cidr}`)).toBe(204);
      expect(await Promise.all(clients.map((c) => score(c, ip)))).toEqual([0, 0, 0, 0]);
    }
  });
});

describe('SPOE_WORKERS=2 with ADMIN_TOKEN', () => {
  const token = 'd29ya2Vycy1hZG1pbi10b2tlbi0wMTIzNDU2Nzg5';
  const { agent } = twoWorkers({ ADMIN_TOKEN: token });

  it('has every worker require the token: 401 without it, on each new connection', async () => {
    for (const method of ['GET', 'POST', 'DELETE', 'GET'] as const)
      expect([method, await admin(agent(), method, '/blocklist?cidr=192.0.2.0/24')]).toEqual([method, 401]);
  });

  it('has every worker answer the calls that have it', async () => {
    for (const cidr of ['192.0.2.0/28', '192.0.2.16/28']) {
      expect(await admin(agent(), 'POST', '/blocklist', { cidr }, bearer(token))).toBe(201);
      expect(await admin(agent(), 'DELETE', `/blocklist?cidr=${cidr}`, undefined, bearer(token))).toBe(204);
    }
  });

  it('does not warn about loopback', () => {
    expect(agent().output()).not.toContain('ADMIN_TOKEN is not set');
  });
});

describe('SPOE_WORKERS=2: a worker that dies', () => {
  const { agent: current, workers, open } = twoWorkers();

  it('is replaced, saying why; readiness is 503 naming it until the replacement is ready, which has the current blocklist', async () => {
    const agent = current();
    await fourClients(agent, open);
    expect(await admin(agent, 'POST', '/blocklist', { cidr: '192.0.2.0/24', reason: 'before the crash' })).toBe(201);
    const [victim, survivor] = workers();
    process.kill(victim, 'SIGKILL');

    const down = await waitFor(
      'readiness to name the killed worker',
      async () => {
        const response = await readiness(agent);
        return (
          response.status === 503 &&
          response.body.details.workers.processes.some((p) => p.replacing?.pid === victim) &&
          response
        );
      },
      30_000,
      20,
    );
    expect(down.body.details.workers).toMatchObject({
      status: 'down',
      expected: 2,
      ready: 1,
      message: '1 of 2 workers ready',
    });
    expect(down.body.details.workers.processes).toContainEqual({ pid: survivor, state: 'ready' });
    expect(down.body.details.workers.processes).toContainEqual(
      expect.objectContaining({ replacing: { pid: victim, exit: 'signal SIGKILL' } }),
    );
    expect(agent.output()).toMatch(
      new RegExp(`\\[Supervisor\\] worker ${victim} died \\(signal SIGKILL\\); starting a replacement`),
    );

    const up = await waitFor(
      'readiness to be 200 again',
      async () => {
        const response = await readiness(agent);
        return response.status === 200 && response;
      },
      30_000,
    );
    const replacement = up.body.details.workers.processes.map((p) => p.pid!).find((pid) => pid !== survivor)!;
    expect(up.body.details.workers).toEqual({
      status: 'up',
      expected: 2,
      ready: 2,
      processes: expect.arrayContaining([{ pid: replacement, state: 'ready' }]),
    });
    expect(agent.workerPids().sort(byNumber)).toEqual([survivor, replacement].sort(byNumber));

    // The connections of the killed worker are gone; new ones spread over the survivor and the replacement.
    for (const client of open.splice(0)) client.destroy();
    const { clients, served } = await connect(agent, 4);
    open.push(...clients);
    for (const pid of [survivor, replacement]) expect(served.get(pid)).toBeGreaterThanOrEqual(1);
    expect(await Promise.all(clients.map((c) => score(c, '192.0.2.1')))).toEqual([100, 100, 100, 100]);
  });
});

describe('SPOE_WORKERS=2: SIGTERM', () => {
  const { agent: current, workers, open } = twoWorkers();

  it('drains every worker (a second signal skips the grace period): AGENT-DISCONNECT 0 everywhere, exit 0, no worker left', async () => {
    const agent = current();
    const clients = await fourClients(agent, open);
    expect(await admin(agent, 'POST', '/blocklist', { cidr: '192.0.2.0/24', reason: 'before SIGTERM' })).toBe(201);
    agent.child.kill('SIGTERM');
    const stopping = await waitFor('readiness to turn 503', async () => {
      const response = await readiness(agent);
      return response.status === 503 && response;
    });
    expect(stopping.body.details.workers).toMatchObject({ status: 'down', message: 'the supervisor is shutting down' });
    // The grace period: every worker still answers on its connections.
    expect(await Promise.all(clients.map((c) => score(c, '192.0.2.1')))).toEqual([100, 100, 100, 100]);

    const inFlight = clients.map((c) =>
      c.notify('check-client-ip', { ip: SpoeIp.parse('192.0.2.1') }).then(
        () => 'answered',
        (error: Error) =>
          error instanceof SpoeAgentDisconnectedError ? `AGENT-DISCONNECT ${error.disconnect?.status}` : error.message,
      ),
    );
    agent.child.kill('SIGINT');
    for (const outcome of await Promise.all(inFlight)) expect(['answered', 'AGENT-DISCONNECT 0']).toContain(outcome);
    expect(await Promise.all(clients.map((c) => c.whenClosed()))).toEqual(
      clients.map(() => ({ status: 0, message: expect.any(String) })),
    );
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    for (const pid of workers()) expect(processExists(pid)).toBe(false);
    expect(agent.output()).toMatch(
      /\[Supervisor\] SIGTERM: stopping 2 workers[\s\S]*\[Supervisor\] SIGINT again[\s\S]*\[Supervisor\] every worker has exited/,
    );
  });
});

const describeRedis = describeIf(redisServer());

describeRedis('SPOE_WORKERS=2, blocklist in Redis', () => {
  let redis: RedisServer;
  let agent: AgentProcess;
  let clients: SpoeClient[];

  beforeAll(async () => {
    redis = await RedisServer.start();
    agent = await AgentProcess.start({ SPOE_WORKERS: '2', REDIS_URL: redis.url });
    let served: Map<number, number>;
    ({ clients, served } = await connect(agent, 4));
    expect(served.size).toBe(2);
    for (const count of served.values()) expect(count).toBeGreaterThanOrEqual(1);
  });
  afterAll(async () => {
    for (const client of clients ?? []) client.destroy();
    await agent?.stop();
    await redis?.stop();
    await cleanupAll();
  });

  it('has every worker score an address 100 as soon as the POST returns, and 0 as soon as the DELETE returns', async () => {
    for (const cidr of ['203.0.113.0/24', '2001:db8::/32']) {
      const ip = cidr.endsWith('/24') ? '203.0.113.7' : '2001:db8::7';
      expect(await admin(agent, 'POST', '/blocklist', { cidr })).toBe(201);
      expect(await Promise.all(clients.map((c) => score(c, ip)))).toEqual([100, 100, 100, 100]);
      expect(await admin(agent, 'DELETE', `/blocklist?cidr=${cidr}`)).toBe(204);
      expect(await Promise.all(clients.map((c) => score(c, ip)))).toEqual([0, 0, 0, 0]);
    }
  });

  it('is ready with both the Redis and the workers indicators up', async () => {
    const { status, body } = await api<{ details: Record<string, { status: string }> }>(
      agent.httpUrl,
      'GET',
      '/health/ready',
    );
    expect(status).toBe(200);
    expect(body.details).toMatchObject({ redis: { status: 'up' }, workers: { status: 'up', ready: 2 } });
  });
});

describe('SPOE_WORKERS: startup', () => {
  beforeAll(() => ensureBuilt());

  it('rejects 0 and "many", listing them with the other problems', async () => {
    for (const value of ['0', 'many']) {
      const agent = await AgentProcess.start({ SPOE_WORKERS: value, LOG_LEVEL: 'loud' }, false);
      expect(await agent.exited).toEqual({ code: 1, signal: null });
      expect(agent.output()).toContain(`- SPOE_WORKERS must be "auto" or an integer in [1, 1024], got "${value}"`);
      expect(agent.output()).toContain('- LOG_LEVEL must be one of');
    }
  });

  it('accepts "auto" (one worker per CPU)', async () => {
    const agent = await AgentProcess.start({ SPOE_WORKERS: 'auto', LOG_LEVEL: 'loud' }, false);
    expect(await agent.exited).toEqual({ code: 1, signal: null });
    expect(agent.output()).toContain('- LOG_LEVEL must be one of');
    expect(agent.output()).not.toContain('SPOE_WORKERS');
  });

  it('exits 1 with the reason when no worker can start (the SPOE port is taken), instead of replacing workers forever', async () => {
    const taken = createServer();
    await new Promise<void>((done) => taken.listen(0, '127.0.0.1', () => done()));
    const { port } = taken.address() as AddressInfo;
    try {
      const agent = await AgentProcess.start({ SPOE_WORKERS: '2', SPOE_PORT: String(port), LOG_LEVEL: 'warn' }, false);
      expect(await agent.exited).toEqual({ code: 1, signal: null });
      expect(agent.output()).toMatch(
        new RegExp(`\\[Supervisor\\] no worker could start: .*EADDRINUSE.*127\\.0\\.0\\.1:${port}`),
      );
      expect(agent.output()).not.toContain('starting a replacement');
    } finally {
      taken.close();
    }
  });
});
