/**
 * SPOP over TLS and mutual TLS (SpoeServer's `tls` option), with certificates made by openssl: NOTIFY and ACK through
 * TLS, the verified client certificate in the handler's context, the refusals (no certificate, another CA's, plain
 * SPOP, a silent peer) without harm to live connections, the health indicator, and certificates reloaded live.
 * HAProxy 2.6 to 3.4 over TLS: test/haproxy/tls.e2e-spec.ts.
 */
import { Controller, Module, Provider, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { TerminusModule } from '@nestjs/terminus';
import { SetVar, SpoeContext, SpoeOptionsError, SpoeServer, SpoeTlsFailure } from 'nestjs-spoe';
import { SpoeHealthIndicator } from 'nestjs-spoe/health';
import { SpoeClient, SpoeClientOptions } from 'nestjs-spoe/testing';
import { connect as connectTcp, Server as NetServer } from 'node:net';
import { connect as connectTls, PeerCertificate } from 'node:tls';
import { cleanupAll, makeTempDir } from '../support/cleanup';
import { makeTestPki, OPENSSL, TestPki } from '../support/certificates';
import { describeIf } from '../support/prerequisites';
import { startAgent, TestAgent } from '../support/agent';
import { waitFor } from '../support/wait';

afterAll(() => cleanupAll());

@Controller()
class PeerController {
  @MessagePattern('who')
  who(@Payload('n') n: number, @Ctx() context: SpoeContext) {
    return [SetVar.txn('n', n), SetVar.txn('peer', String(context.getPeerCertificate()?.subject.CN ?? 'none'))];
  }
}

describeIf(OPENSSL)('SPOP over TLS', () => {
  let pki: TestPki;
  /** A second CA's agent certificate: what a reload switches to. */
  let renewed: TestPki;
  const agents: TestAgent[] = [];
  const clients: SpoeClient[] = [];

  beforeAll(() => {
    pki = makeTestPki(makeTempDir());
    renewed = makeTestPki(makeTempDir());
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await Promise.all(agents.splice(0).map((a) => a.close()));
  });

  /** An agent serving PeerController over TLS (mutual when `mutual`), its handshake failures recorded. */
  async function tlsAgent(mutual: boolean, helloTimeoutMs?: number) {
    const refused: SpoeTlsFailure[] = [];
    const agent = await startAgent(
      { controllers: [PeerController] },
      {
        tls: { cert: pki.server.cert, key: pki.server.key, ...(mutual && { ca: pki.ca, requestCert: true }) },
        ...(helloTimeoutMs !== undefined && { helloTimeoutMs }),
      },
      { configure: (_app, server) => server.observe({ tlsRefused: (reason) => refused.push(reason) }) },
    );
    agents.push(agent);
    return { agent, refused };
  }

  async function client(options: SpoeClientOptions): Promise<SpoeClient> {
    const c = await SpoeClient.connect({ timeoutMs: 5000, ...options });
    clients.push(c);
    return c;
  }

  /** The certificate an agent serves to a new connection. */
  function servedCertificate(port: number, ca: Buffer[]): Promise<PeerCertificate> {
    return new Promise((resolve, reject) => {
      const socket = connectTls({ host: '127.0.0.1', port, ca }, () => {
        resolve(socket.getPeerCertificate());
        socket.destroy();
      });
      socket.once('error', reject);
    });
  }

  it('answers NOTIFY over TLS, the agent verified by its CA (IP SAN 127.0.0.1)', async () => {
    const { agent } = await tlsAgent(false);
    const c = await client({ port: agent.port, tls: { ca: pki.ca } });
    expect(await c.notify('who', { n: 1 })).toEqual([
      expect.objectContaining({ name: 'n', value: 1 }),
      expect.objectContaining({ name: 'peer', value: 'none' }),
    ]);
    expect(await SpoeClient.healthCheck({ port: agent.port, tls: { ca: pki.ca, servername: 'localhost' } })).toEqual(
      expect.objectContaining({ version: '2.0' }),
    );
  });

  it('destroy() closes a TLS client at once', async () => {
    const { agent } = await tlsAgent(false);
    const c = await SpoeClient.connect({ port: agent.port, tls: { ca: pki.ca }, timeoutMs: 5000 });
    c.destroy();
    await c.whenClosed();
    await waitFor('the agent to see it closed', () => agent.server.stats.connections === 0, 5000);
  });

  it("mutual TLS: the handler's context has the verified client certificate", async () => {
    const { agent } = await tlsAgent(true);
    const c = await client({ port: agent.port, tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key } });
    const actions = await c.notify('who', { n: 2 });
    expect(actions).toContainEqual(expect.objectContaining({ name: 'peer', value: 'haproxy-test' }));
  });

  it('mutual TLS: refuses a client without a certificate, one from another CA and plain SPOP, and serves on', async () => {
    const { agent, refused } = await tlsAgent(true);
    const live = await client({ port: agent.port, tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key } });
    const attempts: Array<[string, SpoeClientOptions]> = [
      ['no certificate', { tls: { ca: pki.ca } }],
      ['another CA', { tls: { ca: pki.ca, cert: pki.otherClient.cert, key: pki.otherClient.key } }],
      ['plain SPOP', {}],
    ];
    for (const [what, options] of attempts) {
      const outcome = await SpoeClient.connect({ port: agent.port, timeoutMs: 5000, ...options }).then(
        async (c) => `${what}: connected (${String(await c.close())})`,
        () => `${what}: refused`,
      );
      expect(outcome).toBe(`${what}: refused`);
      // The live connection is untouched, between and after the refusals.
      expect(await live.notify('who', { n: 3 })).toContainEqual(expect.objectContaining({ name: 'peer' }));
    }
    await waitFor('three refusals', () => refused.length === 3, 5000);
    expect(refused.slice(0, 2)).toEqual(['certificate', 'certificate']);
    expect(refused[2]).toBe('protocol');
    expect(agent.server.stats.connections).toBe(1);
  });

  it('closes a peer that does not finish the TLS handshake within helloTimeoutMs', async () => {
    const { agent, refused } = await tlsAgent(false, 300);
    const socket = connectTcp(agent.port, '127.0.0.1');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    await closed;
    await waitFor('the timeout counted', () => refused.length === 1, 5000);
    expect(refused).toEqual(['timeout']);
  });

  it('closes sockets beyond twice maxConnections before their TLS handshake, then serves again', async () => {
    const refusedPeers: string[] = [];
    const agent = await startAgent(
      { controllers: [PeerController] },
      { tls: { cert: pki.server.cert, key: pki.server.key }, maxConnections: 1, helloTimeoutMs: 60_000 },
      { configure: (_app, server) => server.observe({ connectionRefused: (peer) => refusedPeers.push(peer) }) },
    );
    agents.push(agent);
    const silent = [0, 1].map(() => connectTcp(agent.port, '127.0.0.1').on('error', () => undefined));
    await Promise.all(silent.map((s) => new Promise((resolve) => s.once('connect', resolve))));
    await waitFor('both handshakes pending', () => agent.server.unwrap<NetServer>().listening, 5000);
    const extra = connectTcp(agent.port, '127.0.0.1').on('error', () => undefined);
    // Closed long before the 60 s handshake timeout: by count.
    await new Promise<void>((resolve) => extra.once('close', () => resolve()));
    await waitFor('the drop counted', () => refusedPeers.length === 1, 5000);
    silent.forEach((s) => s.destroy());
    await waitFor('the silent sockets gone', async () => {
      const count = await new Promise<number>((resolve) =>
        agent.server.unwrap<NetServer>().getConnections((_e, n) => resolve(n)),
      );
      return count === 0;
    });
    const c = await client({ port: agent.port, tls: { ca: pki.ca } });
    expect(await c.notify('who', { n: 7 })).toContainEqual(expect.objectContaining({ name: 'n', value: 7 }));
  });

  it('reloadTls: new connections get the new certificate, live ones keep theirs and keep working', async () => {
    const { agent } = await tlsAgent(false);
    const trust = [pki.ca, renewed.ca];
    const before = await client({ port: agent.port, tls: { ca: trust } });
    const first = await servedCertificate(agent.port, trust);
    agent.server.reloadTls({ cert: renewed.server.cert, key: renewed.server.key });
    const second = await servedCertificate(agent.port, trust);
    expect(first.issuer.CN).toBe('ca');
    expect(second.fingerprint256).not.toBe(first.fingerprint256);
    expect(second.fingerprint256).toBe(
      (await servedCertificate(agent.port, [renewed.ca])).fingerprint256, // verifies against the new CA alone
    );
    expect(await before.notify('who', { n: 4 })).toContainEqual(expect.objectContaining({ name: 'n', value: 4 }));
    const after = await client({ port: agent.port, tls: { ca: renewed.ca } });
    expect(await after.notify('who', { n: 5 })).toContainEqual(expect.objectContaining({ name: 'n', value: 5 }));
    expect(agent.server.tls?.cert).toBe(renewed.server.cert);
  });

  it('reloadTls refuses a key that does not match its certificate, and the previous ones stay', async () => {
    const { agent } = await tlsAgent(false);
    expect(() => agent.server.reloadTls({ cert: pki.server.cert, key: pki.client.key })).toThrow(SpoeOptionsError);
    expect(() => agent.server.reloadTls({ cert: Buffer.from('not a PEM'), key: pki.server.key })).toThrow(/reloadTls/);
    const c = await client({ port: agent.port, tls: { ca: pki.ca } });
    expect(await c.notify('who', { n: 6 })).toContainEqual(expect.objectContaining({ name: 'n', value: 6 }));
  });

  it('refuses TLS options that cannot work, naming the problem', () => {
    expect(() => new SpoeServer({ tls: { cert: pki.server.cert } })).toThrow(/tls needs cert and key/);
    expect(() => new SpoeServer({ tls: { cert: pki.server.cert, key: pki.server.key, requestCert: true } })).toThrow(
      /requestCert needs ca/,
    );
    expect(() => new SpoeServer({ tls: { cert: pki.server.cert, key: pki.client.key } })).toThrow(SpoeOptionsError);
    expect(
      () => new SpoeServer({ tls: { cert: pki.server.cert, key: pki.server.key, ca: Buffer.from('no certificate') } }),
    ).toThrow(/tls.ca holds no certificate/);
    expect(() => new SpoeServer().reloadTls({ cert: pki.server.cert, key: pki.server.key })).toThrow(/plain TCP/);
  });

  describe('health indicator', () => {
    it('probes a TLS and a mutual-TLS server over TLS (mTLS: the agent certificate as the client one)', async () => {
      for (const mutual of [false, true]) {
        const server = new SpoeServer({
          host: '127.0.0.1',
          port: 0,
          tls: { cert: pki.server.cert, key: pki.server.key, ...(mutual && { ca: pki.ca, requestCert: true }) },
        });
        const app = await NestFactory.createMicroservice(
          moduleWith([TerminusModule], [{ provide: SpoeServer, useValue: server }, SpoeHealthIndicator]),
          { strategy: server, logger: false },
        );
        await app.listen();
        try {
          const result = await app.get(SpoeHealthIndicator).isHealthy('spoe', { timeoutMs: 5000 });
          expect(result.spoe.status).toBe('up');
          // With a client certificate of another CA, the mutual-TLS probe is refused: down, saying why.
          const refusedProbe = await app
            .get(SpoeHealthIndicator)
            .isHealthy('spoe', { timeoutMs: 5000, tls: { cert: pki.otherClient.cert, key: pki.otherClient.key } });
          expect(refusedProbe.spoe.status).toBe(mutual ? 'down' : 'up');
        } finally {
          await app.close();
        }
      }
    });
  });
});

function moduleWith(imports: Array<Type<unknown>>, providers: Provider[]): Type<unknown> {
  @Module({ imports, providers })
  class TestModule {}
  return TestModule;
}
