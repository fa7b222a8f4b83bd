// The whole path with real processes: HAProxy 3.2 configured with deploy/haproxy (the SPOE filter), two agent
// instances behind it sharing a real redis-server, and an HTTP backend. Changes made through the admin API decide the
// very next request, whichever agent HAProxy asks.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { cleanupAll } from '../support/cleanup';
import { showStat } from '../support/haproxy-admin';
import { haproxyVersion } from '../support/haproxy-binaries';
import { httpRequest, HttpResponse } from '../support/http';
import { HttpBackend, startHttpBackend } from '../support/http-backend';
import { runLoad } from '../support/load';
import { describeIf } from '../support/prerequisites';
import { sample, scrape } from '../support/prometheus';
import { waitFor } from '../support/wait';
import { api, ExampleAgent, RedisServer, redisServer, startExampleAgent, startHaproxyInFront } from './support/example';

jest.setTimeout(90_000);

const haproxy32 = haproxyVersion('3.2');

describeIf(redisServer(), haproxy32.prerequisite)(
  'example agent behind HAProxy (deploy/haproxy), two instances sharing Redis',
  () => {
    let redis: RedisServer;
    const agents: ExampleAgent[] = [];
    let backend: HttpBackend;
    let port: number;
    let statsSocket: string;

    beforeAll(async () => {
      redis = await RedisServer.start();
      for (let i = 0; i < 2; i++) agents.push(await startExampleAgent({ REDIS_URL: redis.url }));
      backend = await startHttpBackend();
      ({ port, statsSocket } = await startHaproxyInFront(
        haproxy32.binary!,
        agents.map((agent) => agent.spoePort),
        backend.port,
      ));
    });
    afterAll(async () => {
      for (const agent of agents) await agent.close();
      await backend?.close();
      await redis?.stop();
      await cleanupAll();
    });

    const get = (headers: Record<string, string> = {}): Promise<HttpResponse> =>
      httpRequest({ host: '127.0.0.1', port, path: '/', headers });
    /**
     * Several requests, one after the other, so that both agents answer some (HAProxy balances the SPOP streams over
     * both servers).
     */
    const statuses = async (headers: Record<string, string> = {}, n = 6): Promise<number[]> => {
      const load = await runLoad({
        total: n,
        concurrency: 1,
        keepAlive: false,
        request: () => ({ host: '127.0.0.1', port, path: '/', headers }),
        check: () => undefined,
      });
      expect(load.failures).toEqual([]);
      return load.responses.map((r) => r.status);
    };

    it('serves a clean client with the score header (X-IP-Score: 0), to the client and to the backend', async () => {
      const response = await get();
      expect(response.status).toBe(200);
      expect(response.headers['x-ip-score']).toBe('0');
      expect(JSON.parse(response.body).headers['x-ip-score']).toBe('0');
    });

    it('denies a source in the default blocklist (10.0.0.0/8, set with X-Forwarded-For) with 403', async () => {
      expect(await statuses({ 'x-forwarded-for': '10.1.2.3' })).toEqual(Array(6).fill(403));
    });

    it('denies the next request once the client address is added through the admin API, and serves it once removed', async () => {
      expect(
        (await api(agents[0].httpUrl, 'POST', '/blocklist', { cidr: '127.0.0.1/32', reason: 'test' })).status,
      ).toBe(201);
      expect(await statuses()).toEqual(Array(6).fill(403));
      expect((await api(agents[1].httpUrl, 'DELETE', '/blocklist?cidr=127.0.0.1/32')).status).toBe(204);
      expect(await statuses()).toEqual(Array(6).fill(200));
    });

    it('denies IPv6 sources in an IPv6 network added through the admin API', async () => {
      expect(await statuses({ 'x-forwarded-for': '2001:db8::7' }, 2)).toEqual([200, 200]);
      expect((await api(agents[1].httpUrl, 'POST', '/blocklist', { cidr: '2001:db8::/32' })).status).toBe(201);
      try {
        expect(await statuses({ 'x-forwarded-for': '2001:db8::7' })).toEqual(Array(6).fill(403));
      } finally {
        expect((await api(agents[0].httpUrl, 'DELETE', '/blocklist?cidr=2001:db8::/32')).status).toBe(204);
      }
    });

    it('has both agents answer (the decisions do not all come from one instance)', async () => {
      expect(await statuses()).toEqual(Array(6).fill(200));
      const rows = (await showStat(statsSocket)).filter(
        (row) => row.pxname === 'spoe-agents' && row.svname.startsWith('agent'),
      );
      expect(rows.map((row) => row.svname).sort()).toEqual(['agent1', 'agent2']);
      for (const row of rows) expect(Number(row.stot)).toBeGreaterThan(0);
    });

    it('counts in GET /metrics of its agents exactly the check-client-ip messages HAProxy sent, and its health checks', async () => {
      const answered = async (): Promise<number> => {
        let total = 0;
        for (const agent of agents) {
          total += sample(await scrape(agent.httpUrl), 'spoe_messages_total', {
            message: 'check-client-ip',
            outcome: 'ok',
          });
        }
        return total;
      };
      const before = await answered();
      expect(await statuses({}, 10)).toEqual(Array(10).fill(200));
      expect((await answered()) - before).toBe(10);
      for (const agent of agents) {
        // HAProxy checks each agent with option spop-check: a HELLO with healthcheck=true, counted apart.
        await waitFor(
          'a health check',
          async () => sample(await scrape(agent.httpUrl), 'spoe_hellos_total', { outcome: 'healthcheck' }) > 0,
        );
        const text = await scrape(agent.httpUrl);
        expect(sample(text, 'spoe_hellos_total', { outcome: 'accepted' })).toBeGreaterThan(0);
        expect(sample(text, 'spoe_protocol_errors_total')).toBe(0);
        expect(sample(text, 'process_cpu_seconds_total')).toBeGreaterThan(0); // Node's own metrics beside SPOE's
      }
    });

    it('shows the same decision when asked directly over SPOP, on either instance', async () => {
      expect((await api(agents[0].httpUrl, 'POST', '/blocklist', { cidr: '2001:db8:5::/48' })).status).toBe(201);
      try {
        for (const agent of agents) {
          const client = await SpoeClient.connect({ port: agent.spoePort });
          expect((await client.notify('check-client-ip', { ip: SpoeIp.parse('2001:db8:5::7') }))[0].value).toBe(100);
          await client.close();
        }
      } finally {
        expect((await api(agents[1].httpUrl, 'DELETE', '/blocklist?cidr=2001:db8:5::/48')).status).toBe(204);
      }
    });
  },
);
