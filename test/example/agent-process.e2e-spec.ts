// The built agent (`node dist/main.js`, what `npm run start:agent` runs) as a child process: configuration errors,
// and the SIGTERM sequence — readiness 503 and HAProxy's health checks failed at once, SPOE serving through the grace
// period, then drain and exit 0.
import { SpoeIp, TypedData } from 'nestjs-spoe';
import { AddressInfo, createServer } from 'node:net';
import { SpoeClient } from 'nestjs-spoe/testing';
import { freePort } from '../support/ports';
import { waitFor } from '../support/wait';
import { AgentProcess, api, ensureBuilt } from './support/example';

jest.setTimeout(120_000);

describe('example agent process (dist/main.js)', () => {
  beforeAll(() => ensureBuilt());

  it('refuses to start on an invalid environment: every problem listed, exit code 1', async () => {
    const agent = await AgentProcess.start({ SPOE_PORT: 'twelve', LOG_LEVEL: 'loud', BLOCKLIST: '10.0.0.1/8' }, false);
    expect(await agent.exited).toEqual({ code: 1, signal: null });
    expect(agent.output()).toContain('nestjs-spoe agent: invalid configuration:');
    expect(agent.output()).toContain('- SPOE_PORT must be an integer in [0, 65535], got "twelve"');
    expect(agent.output()).toContain('- LOG_LEVEL must be one of fatal, error, warn, log, debug, verbose, got "loud"');
    expect(agent.output()).toContain('- BLOCKLIST: 10.0.0.1/8 has host bits set: did you mean 10.0.0.0/8?');
  });

  it('refuses to start when REDIS_URL cannot be reached, naming it (without its password)', async () => {
    const port = await freePort(['127.0.0.1']);
    const agent = await AgentProcess.start({ REDIS_URL: `redis://:hunter2@127.0.0.1:${port}` }, false);
    expect(await agent.exited).toEqual({ code: 1, signal: null });
    expect(agent.output()).toContain(`startup failed: cannot use Redis at redis://:***@127.0.0.1:${port}`);
    expect(agent.output()).not.toContain('hunter2');
  });

  it('refuses to start when the SPOE port is taken, naming the address', async () => {
    const taken = createServer();
    await new Promise<void>((done) => taken.listen(0, '127.0.0.1', () => done()));
    const { port } = taken.address() as AddressInfo;
    try {
      const agent = await AgentProcess.start({ SPOE_PORT: String(port) }, false);
      expect(await agent.exited).toEqual({ code: 1, signal: null });
      expect(agent.output()).toContain(`startup failed: listen EADDRINUSE: address already in use 127.0.0.1:${port}`);
    } finally {
      taken.close();
    }
  });

  it("runs its SPOE handlers through nestjs-spoe's own pipeline: no global pipe, filter, guard or interceptor", async () => {
    // A global enhancer in a hybrid app makes nestjs-spoe keep Nest's generic (slower) pipeline, and say so at debug.
    const agent = await AgentProcess.start({ LOG_LEVEL: 'debug' });
    try {
      // Debug lines do show: echo says which arguments it skips.
      const client = await SpoeClient.connect({ port: agent.spoePort });
      await client.notify('echo', [['bad-name', TypedData.int32(1)]]);
      await client.close();
      await waitFor('the debug line of echo', () => agent.output().includes('echo: skipping argument "bad-name"'));
      expect(agent.output()).not.toContain("keeps Nest's RPC pipeline");
    } finally {
      await agent.stop();
    }
  });

  // No stopwatch: the grace period is a minute, far longer than these tests take, so what they see happens within it.
  describe('on SIGTERM (grace period: a minute)', () => {
    let agent: AgentProcess;
    let client: SpoeClient;

    beforeAll(async () => {
      agent = await AgentProcess.start({ SHUTDOWN_GRACE_MS: '60000', LOG_LEVEL: 'log' });
      client = await SpoeClient.connect({ port: agent.spoePort });
      expect((await api(agent.httpUrl, 'GET', '/health/ready')).status).toBe(200);
      agent.child.kill('SIGTERM');
    });
    afterAll(() => agent?.stop());

    it('turns readiness 503 at once, naming the shutdown', async () => {
      const { status, body } = await waitFor('readiness to turn 503', async () => {
        const response = await api<{ error: Record<string, unknown> }>(agent.httpUrl, 'GET', '/health/ready');
        return response.status === 503 && response;
      });
      expect(status).toBe(503);
      expect(body.error.lifecycle).toMatchObject({ status: 'down', state: 'shutting-down' });
    });

    it('stays live', async () => {
      expect((await api(agent.httpUrl, 'GET', '/health/live')).status).toBe(200);
    });

    it('keeps answering NOTIFY on open connections during the grace period', async () => {
      expect((await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') }))[0].value).toBe(100);
    });

    it("fails HAProxy's health checks (AGENT-DISCONNECT status 0 to a health-check HELLO), so it is marked down", async () => {
      await expect(SpoeClient.healthCheck({ port: agent.spoePort, timeoutMs: 1000 })).rejects.toMatchObject({
        disconnect: { status: 0, message: 'agent is draining: send it no new work' },
      });
    });

    it('keeps accepting new SPOE connections during the grace period', async () => {
      const late = await SpoeClient.connect({ port: agent.spoePort });
      expect((await late.notify('check-client-ip', { ip: SpoeIp.parse('192.0.2.1') }))[0].value).toBe(0);
      await late.close();
    });
  });

  it('ends the grace period at a second signal: AGENT-DISCONNECT (status 0), exit 0, ports closed', async () => {
    const agent = await AgentProcess.start({ SHUTDOWN_GRACE_MS: '60000', LOG_LEVEL: 'log' });
    try {
      const client = await SpoeClient.connect({ port: agent.spoePort });
      agent.child.kill('SIGTERM');
      await waitFor(
        'readiness to turn 503',
        async () => (await api(agent.httpUrl, 'GET', '/health/ready')).status === 503,
      );
      expect(agent.output()).not.toContain('grace period over');
      agent.child.kill('SIGINT');
      expect(await client.whenClosed()).toEqual({ status: 0, message: expect.any(String) });
      expect(await agent.exited).toEqual({ code: 0, signal: null });
      expect(agent.output()).toMatch(
        /SIGTERM: readiness is now down[\s\S]*SIGINT again: skipping the rest of the grace period[\s\S]*SPOE agent closed/,
      );
      await expect(SpoeClient.healthCheck({ port: agent.spoePort, timeoutMs: 1000 })).rejects.toThrow(/ECONNREFUSED/);
      await expect(fetch(`${agent.httpUrl}/health/live`)).rejects.toThrow();
    } finally {
      await agent.stop();
    }
  });

  it('drains by itself at the end of the grace period and exits 0', async () => {
    const agent = await AgentProcess.start({ SHUTDOWN_GRACE_MS: '300', LOG_LEVEL: 'log' });
    try {
      const client = await SpoeClient.connect({ port: agent.spoePort });
      agent.child.kill('SIGTERM');
      expect(await client.whenClosed()).toEqual({ status: 0, message: expect.any(String) });
      expect(await agent.exited).toEqual({ code: 0, signal: null });
      expect(agent.output()).toMatch(/SIGTERM: readiness is now down[\s\S]*grace period over[\s\S]*SPOE agent closed/);
      expect(agent.output()).not.toContain('SIGINT again');
    } finally {
      await agent.stop();
    }
  });
});
