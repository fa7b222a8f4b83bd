// LOG_FORMAT=json: the example agent logs through nestjs-pino, one JSON object a line; a line about an SPOE message
// carries it (spoeMessage, streamId, frameId, peer, engineId), and normal traffic writes nothing at the default level.
// nestjs-pino keeps one root logger per process, set by the first app: one agent in this process, the others built.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import type { DestinationStream } from 'pino';
import { Lifecycle } from '../../src/health/lifecycle';
import { httpRequest } from '../support/http';
import { waitFor } from '../support/wait';
import { AgentProcess, api, bearer, ensureBuilt, ExampleAgent, startExampleAgent } from './support/example';

jest.setTimeout(120_000);

type LogLine = Record<string, unknown>;

/** What pino writes, line by line: the agent's logDestination. */
class CapturedLines implements DestinationStream {
  readonly lines: string[] = [];

  write(chunk: string): void {
    this.lines.push(...chunk.split('\n').filter((line) => line.length > 0));
  }

  parsed(): LogLine[] {
    return this.lines.map((line) => JSON.parse(line) as LogLine);
  }
}

/** Each line parsed; a line that is not one JSON object fails the test, naming it. */
function jsonLines(lines: readonly string[]): LogLine[] {
  return lines.map((line) => {
    const parsed: unknown = JSON.parse(line);
    expect({ line, isObject: typeof parsed === 'object' && parsed !== null }).toEqual({ line, isObject: true });
    return parsed as LogLine;
  });
}

/** pino's numeric levels, for the levels asserted here. */
const PINO = { debug: 20, info: 30, error: 50 } as const;

describe('LOG_FORMAT=json, the agent in process at the default level (LOG_LEVEL=log)', () => {
  const output = new CapturedLines();
  let agent: ExampleAgent;

  beforeAll(async () => {
    agent = await startExampleAgent(
      { LOG_FORMAT: 'json', LOG_LEVEL: 'log', SPOE_HANDLER_DEADLINE_MS: '60000' },
      { logDestination: output },
    );
  });
  afterAll(() => agent?.close());

  it("writes one JSON object a line, at pino's level for Nest's, with Nest's context", () => {
    const lines = jsonLines(output.lines);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: PINO.info, context: 'Agent', msg: expect.stringMatching(/^ready: SPOE on /) }),
    );
    // Startup is about no SPOE message.
    expect(lines.filter((line) => 'spoeMessage' in line)).toEqual([]);
  });

  it('says which SPOE message a line is about: spoeMessage, streamId, frameId, peer and engineId', async () => {
    const client = await SpoeClient.connect({ port: agent.spoePort, engineId: 'engine-7' });
    try {
      // Not an address: ParseSpoeIpPipe fails the handler, and the transport logs it.
      await client.notifyMessages([{ name: 'check-client-ip', args: { ip: 'not an address' } }], {
        streamId: 3,
        frameId: 4,
      });
    } finally {
      await client.close();
    }
    expect(output.parsed()).toContainEqual({
      level: PINO.error,
      time: expect.any(Number),
      pid: process.pid,
      hostname: expect.any(String),
      spoeMessage: 'check-client-ip',
      streamId: 3,
      frameId: 4,
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      engineId: 'engine-7',
      context: 'SpoeDispatcher',
      msg: expect.stringMatching(/^handler failed for message "check-client-ip" \(stream-id 3, frame-id 4, /),
    });
  });

  it('writes nothing for normal traffic: HELLO, health checks, handled NOTIFY, probes, scrapes, admin reads', async () => {
    await waitFor('the earlier connections closed', () => agent.spoe.stats.connections === 0);
    output.lines.length = 0;

    await SpoeClient.healthCheck({ port: agent.spoePort });
    const client = await SpoeClient.connect({ port: agent.spoePort });
    for (const ip of ['10.1.2.3', '192.0.2.1', '2001:db8::1'])
      await client.notify('check-client-ip', { ip: SpoeIp.parse(ip) });
    await client.notify('echo', { a: 'b' });
    await client.close();
    const { hostname, port } = new URL(agent.httpUrl);
    for (const path of ['/health/live', '/health/ready', '/metrics', '/blocklist'])
      expect((await httpRequest({ host: hostname, port: Number(port), path })).status).toBe(200);
    await waitFor('every SPOE connection closed', () => agent.spoe.stats.connections === 0);

    expect(output.lines).toEqual([]);
  });

  // Last: readiness stays down once the shutdown began.
  it("logs a failed health check's details as JSON, not as a terminal's coloured box", async () => {
    await agent.app.get(Lifecycle).beginShutdown('SIGTERM');
    const { hostname, port } = new URL(agent.httpUrl);
    expect((await httpRequest({ host: hostname, port: Number(port), path: '/health/ready' })).status).toBe(503);
    const failed = output.parsed().find((line) => String(line.msg).startsWith('Health Check has failed!'));
    expect(failed).toMatchObject({ level: PINO.error });
    const details: unknown = JSON.parse(String(failed!.msg).replace('Health Check has failed! ', ''));
    expect(details).toMatchObject({ lifecycle: { status: 'down', state: 'shutting-down' } });
  });
});

describe('LOG_FORMAT=json, the built agent (dist/main.js)', () => {
  beforeAll(() => ensureBuilt());

  it('writes a debug line per HTTP request (LOG_LEVEL=debug), none for the probes and scrapes', async () => {
    const agent = await AgentProcess.start({ LOG_FORMAT: 'json', LOG_LEVEL: 'debug' });
    try {
      const { hostname, port } = new URL(agent.httpUrl);
      for (const path of ['/health/live', '/health/ready', '/metrics'])
        expect((await httpRequest({ host: hostname, port: Number(port), path })).status).toBe(200);
      expect((await api(agent.httpUrl, 'POST', '/blocklist', { cidr: '198.51.100.0/24' })).status).toBe(201);

      // One process, one stdout: the probes' lines, had there been any, came before the admin request's.
      const requestLines = (): LogLine[] => jsonLines(agent.lines).filter((line) => line.msg === 'request completed');
      await waitFor('the line of the admin request', () => requestLines().length > 0);
      expect(requestLines()).toEqual([
        expect.objectContaining({
          level: PINO.debug,
          req: expect.objectContaining({ method: 'POST', url: '/blocklist' }),
          res: expect.objectContaining({ statusCode: 201 }),
        }),
      ]);
    } finally {
      await agent.stop();
    }
  });

  it("never writes the admin API's bearer token: the request line hides the Authorization header", async () => {
    const token = 'bG9nZ2VkLW5ldmVyLTAxMjM0NTY3ODk';
    const agent = await AgentProcess.start({ LOG_FORMAT: 'json', LOG_LEVEL: 'debug', ADMIN_TOKEN: token });
    try {
      for (const header of [bearer(token), bearer(`${token}-wrong`)])
        await api(agent.httpUrl, 'POST', '/blocklist', { cidr: '198.51.100.0/24' }, header);
      const requestLines = (): LogLine[] => jsonLines(agent.lines).filter((line) => line.msg === 'request completed');
      await waitFor('the lines of both admin requests', () => requestLines().length === 2);
      expect(requestLines().map((line) => line.req)).toEqual([
        expect.objectContaining({ headers: expect.objectContaining({ authorization: '[Redacted]' }) }),
        expect.objectContaining({ headers: expect.objectContaining({ authorization: '[Redacted]' }) }),
      ]);
      expect(requestLines().map((line) => (line.res as { statusCode: number }).statusCode)).toEqual([201, 401]);
      expect(agent.output()).not.toContain(token);
    } finally {
      await agent.stop();
    }
  });

  it('SPOE_WORKERS=2: the supervisor writes JSON lines too, beside its workers, through shutdown', async () => {
    const agent = await AgentProcess.start({ LOG_FORMAT: 'json', SPOE_WORKERS: '2', SHUTDOWN_GRACE_MS: '0' });
    const supervisorPid = agent.child.pid;
    try {
      agent.child.kill('SIGTERM');
      expect(await agent.exited).toEqual({ code: 0, signal: null });
    } finally {
      await agent.stop();
    }
    const lines = jsonLines(agent.lines);
    const supervisor = (msg: RegExp) =>
      expect.objectContaining({
        level: PINO.info,
        pid: supervisorPid,
        context: 'Supervisor',
        msg: expect.stringMatching(msg),
      });
    expect(lines).toEqual(
      expect.arrayContaining([supervisor(/^2 workers ready: pids /), supervisor(/^every worker has exited$/)]),
    );
    const workers = new Set(
      lines
        .filter((line) => line.context === 'Agent' && String(line.msg).startsWith('ready: '))
        .map((line) => line.pid),
    );
    expect(workers.size).toBe(2);
    expect(workers).not.toContain(supervisorPid);
  });
});
