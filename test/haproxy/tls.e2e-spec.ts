/**
 * Real HAProxy 2.6, 3.0, 3.2 and 3.4 reaching the agent over TLS (`server a1 … ssl verify required ca-file ca.pem`)
 * and mutual TLS (`… crt haproxy-client.pem`, the agent requiring a certificate of its CA): scoring and denying, every
 * data type through HAProxy and back, `option spop-check` health checks over TLS, certificates reloaded while HAProxy
 * keeps its connections, and the agent's handlers seeing HAProxy's verified certificate.
 */
import { SpoeClient } from 'nestjs-spoe/testing';
import { connect as connectTls } from 'node:tls';
import { cleanupAll, makeTempDir } from '../support/cleanup';
import { makeTestPki, OPENSSL, renewServerCertificate, TestIdentity, TestPki } from '../support/certificates';
import { describeEachHaproxy, HaproxyBinary } from '../support/haproxy-binaries';
import { describeIf } from '../support/prerequisites';
import { expectEchoed, newRid, Stack, startStack, waitForL7Ok } from './agent-app';

afterAll(() => cleanupAll());

/** The fingerprint of the certificate the agent serves a new connection. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

for (const mode of ['tls', 'mtls'] as const) {
  describeIf(OPENSSL)(mode === 'tls' ? 'over TLS' : 'over mutual TLS', () => {
    describeEachHaproxy(`SPOE agent ${mode === 'tls' ? 'over TLS' : 'over mutual TLS'}`, (binary: HaproxyBinary) => {
      let stack: Stack;
      // Certificates are made by openssl synchronously, in this process, which is the agent's too: all of them before
      // the tests, since an event loop blocked for 200 ms fails HAProxy's health check (check inter 200ms, fall 1).
      let other: TestPki;
      let renewed: TestIdentity;
      beforeAll(async () => {
        other = makeTestPki(makeTempDir());
        stack = await startStack(binary, { tls: mode, healthCheck: true, extraBinds: false });
        renewed = renewServerCertificate(stack.pki!, 'server-renewed');
      }, 30_000);
      afterAll(() => stack?.close());

      it('passes spop-check health checks over TLS', async () => {
        await waitForL7Ok(stack, 10_000);
      });

      it('scores and denies by source address', async () => {
        const rid = newRid();
        const res = await stack.request('/', rid);
        expect(res.status).toBe(200);
        expect(res.headers['x-ip-score']).toBe('5');
        const blocked = await stack.request('/', newRid(), { headers: { 'x-forwarded-for': '10.0.0.1' } });
        expect(blocked.status).toBe(403);
        const [check] = stack.agent.recorder.byRid(rid).filter((r) => r.message === 'check-client-ip');
        // Mutual TLS: the handler sees HAProxy's verified client certificate.
        expect(check.peer).toBe(mode === 'mtls' ? 'haproxy-test' : undefined);
      });

      it('returns every data type through HAProxy and back', async () => {
        const rid = newRid();
        const res = await stack.request('/echo', rid, { body: 'tls-body' });
        expect(res.status).toBe(200);
        expectEchoed(res, 'tls-body');
      });

      it('reloads its certificates while HAProxy keeps scoring, health checks included', async () => {
        const port = 'port' in stack.agent.endpoint ? stack.agent.endpoint.port : 0;
        const before = await servedFingerprint(port);
        // A new certificate for the agent from the same CA (HAProxy verifies it against ca-file).
        const pki = stack.pki!;
        stack.agent.server.reloadTls({ cert: renewed.cert, key: renewed.key, ...(mode === 'mtls' && { ca: pki.ca }) });
        expect(await servedFingerprint(port)).not.toBe(before);
        for (let i = 0; i < 5; i++) {
          const res = await stack.request('/', newRid());
          expect(res.headers['x-ip-score']).toBe('5');
        }
        await waitForL7Ok(stack, 10_000);
        expect(stack.agent.recorder.abnormalDisconnects()).toEqual([]);
      });

      if (mode === 'mtls') {
        it('refuses a client without a certificate, or with one of another CA, and HAProxy is unaffected', async () => {
          const port = 'port' in stack.agent.endpoint ? stack.agent.endpoint.port : 0;
          const pki = stack.pki!;
          for (const tls of [{ ca: pki.ca }, { ca: pki.ca, cert: other.client.cert, key: other.client.key }]) {
            await expect(SpoeClient.connect({ port, tls, timeoutMs: 5000 })).rejects.toThrow();
          }
          const res = await stack.request('/', newRid());
          if (res.headers['x-ip-score'] !== '5') {
            console.log(
              JSON.stringify(res.headers),
              stack.haproxy
                .spoeEvents()
                .slice(-5)
                .map((e) => e.raw),
              JSON.stringify(stack.agent.recorder.disconnects.slice(-5)),
            );
          }
          expect(res.headers['x-ip-score']).toBe('5');
        });
      }
    });
  });
}
