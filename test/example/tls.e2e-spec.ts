// The example agent over TLS and mutual TLS (SPOE_TLS_CERT, SPOE_TLS_KEY, SPOE_TLS_CA), with certificates made by
// openssl (test/support/certificates.ts): HAProxy's side served and strangers refused, readiness and spoe-health over
// TLS, TLS files that cannot work refused at startup, and SIGHUP reloading the files — in one process and in every
// worker of SPOE_WORKERS — while live connections keep theirs.
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient, SpoeClientTlsOptions } from 'nestjs-spoe/testing';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect as connectTls } from 'node:tls';
import { makeTestPki, OPENSSL, TestIdentity, TestPki } from '../support/certificates';
import { cleanupAll, makeTempDir } from '../support/cleanup';
import { describeIf } from '../support/prerequisites';
import { waitFor } from '../support/wait';
import {
  AgentProcess,
  api,
  connectionsServedBy,
  ensureBuilt,
  ExampleAgent,
  REPO_ROOT,
  startExampleAgent,
} from './support/example';

jest.setTimeout(120_000);
afterAll(() => cleanupAll());

const CLI = join(REPO_ROOT, 'libs', 'spoe', 'dist', 'cli', 'spoe-health.js');

/** Runs spoe-health; its exit code and output. */
function spoeHealth(...args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, output: `${stdout}${stderr}` });
    });
  });
}

/** The SHA-256 fingerprint of a PEM certificate, as node:tls shows a peer's. */
const fingerprintOf = (pem: Buffer): string => new X509Certificate(pem).fingerprint256;

/** The fingerprint of the certificate the agent serves a new connection, verified against `ca`. */
function servedFingerprint(port: number, ca: Buffer[], identity?: TestIdentity): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connectTls(
      { host: '127.0.0.1', port, ca, ...(identity && { cert: identity.cert, key: identity.key }) },
      () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.destroy();
      },
    );
    socket.once('error', reject);
  });
}

/** Whether a SPOP client with `tls` gets through the handshake and the HELLO. */
async function connects(port: number, tls: SpoeClientTlsOptions): Promise<boolean> {
  try {
    const client = await SpoeClient.connect({ port, tls, timeoutMs: 5000 });
    await client.close();
    return true;
  } catch {
    return false;
  }
}

/** HAProxy's side of the mutual TLS of `pki`: its CA, and its client certificate. */
const haproxyOf = (pki: TestPki): SpoeClientTlsOptions => ({ ca: pki.ca, cert: pki.client.cert, key: pki.client.key });

/** The score of 10.1.2.3 (blocked by default): the handler answers. */
async function score(client: SpoeClient): Promise<unknown> {
  return (await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') }))[0]?.value;
}

/** Puts `pki`'s agent files where the agent reads them: agent.pem, agent.key and ca.pem in `dir`. */
function installFiles(dir: string, pki: TestPki): void {
  copyFileSync(pki.server.certFile, join(dir, 'agent.pem'));
  copyFileSync(pki.server.keyFile, join(dir, 'agent.key'));
  copyFileSync(pki.caFile, join(dir, 'ca.pem'));
}

const tlsEnv = (dir: string, mutual: boolean): Record<string, string> => ({
  SPOE_TLS_CERT: join(dir, 'agent.pem'),
  SPOE_TLS_KEY: join(dir, 'agent.key'),
  ...(mutual && { SPOE_TLS_CA: join(dir, 'ca.pem') }),
});

/** Lines of the agent's output that contain `text`. */
const linesWith = (agent: AgentProcess, text: string): string[] => agent.lines.filter((l) => l.includes(text));

describeIf(OPENSSL)('example agent: SPOE over TLS', () => {
  let pki: TestPki;
  /** Another CA and its certificates: what the files are replaced with before a SIGHUP. */
  let renewed: TestPki;
  beforeAll(() => {
    pki = makeTestPki(makeTempDir());
    renewed = makeTestPki(makeTempDir());
  });

  describe('in process', () => {
    let agent: ExampleAgent | undefined;
    afterEach(async () => {
      await agent?.close();
      agent = undefined;
    });

    /** /health/ready answers 200, the SPOE probe up: it went over TLS (and presented a certificate under mTLS). */
    async function expectReady(running: ExampleAgent): Promise<void> {
      const { status, body } = await api<{ details: { spoe: Record<string, unknown> } }>(
        running.httpUrl,
        'GET',
        '/health/ready',
      );
      expect(status).toBe(200);
      expect(body.details.spoe).toMatchObject({ status: 'up', probe: { version: '2.0' } });
    }

    it('SPOE_TLS_CERT and SPOE_TLS_KEY: serves SPOP over TLS, refuses plain SPOP, and is ready (probe over TLS)', async () => {
      agent = await startExampleAgent({ SPOE_TLS_CERT: pki.server.certFile, SPOE_TLS_KEY: pki.server.keyFile });
      const client = await SpoeClient.connect({ port: agent.spoePort, tls: { ca: pki.ca }, timeoutMs: 5000 });
      expect(await score(client)).toBe(100);
      await client.close();
      await expect(SpoeClient.connect({ port: agent.spoePort, timeoutMs: 5000 })).rejects.toThrow();
      await expectReady(agent);
    });

    it("SPOE_TLS_CA: mutual TLS — serves HAProxy's certificate, refuses none or another CA's; ready, and healthy to spoe-health", async () => {
      agent = await startExampleAgent({
        SPOE_TLS_CERT: pki.server.certFile,
        SPOE_TLS_KEY: pki.server.keyFile,
        SPOE_TLS_CA: pki.caFile,
      });
      const port = agent.spoePort;
      const client = await SpoeClient.connect({ port, tls: haproxyOf(pki), timeoutMs: 5000 });
      expect(await score(client)).toBe(100);
      expect(await connects(port, { ca: pki.ca })).toBe(false);
      expect(await connects(port, { ...haproxyOf(renewed), ca: pki.ca })).toBe(false);
      expect(await score(client)).toBe(100); // the refusals cost the live connection nothing
      await client.close();

      // The readiness probe presents the agent's own certificate, which SPOE_TLS_CA signed (with clientAuth).
      await expectReady(agent);

      ensureBuilt();
      const target = ['--host', '127.0.0.1', '--port', String(port), '--timeout', '5000'];
      const identity = ['--cert', pki.client.certFile, '--key', pki.client.keyFile];
      const healthy = await spoeHealth(...target, '--tls', '--ca', pki.caFile, ...identity);
      expect(healthy).toEqual({ code: 0, output: expect.stringMatching(/^healthy: .* answered AGENT-HELLO over TLS/) });
      expect((await spoeHealth(...target, '--tls', '--ca', pki.caFile)).code).toBe(1);
    });
  });

  describe('as a process (dist/main.js)', () => {
    beforeAll(() => ensureBuilt());

    it('refuses to start on TLS files that cannot work: every problem listed, exit code 1', async () => {
      const missing = join(makeTempDir(), 'agent.pem');
      const unreadable = await AgentProcess.start(
        { SPOE_TLS_CERT: missing, SPOE_TLS_KEY: pki.server.keyFile, SPOE_TLS_CA: pki.server.keyFile, LOG_LEVEL: 'x' },
        false,
      );
      expect(await unreadable.exited).toEqual({ code: 1, signal: null });
      expect(unreadable.output()).toContain('nestjs-spoe agent: invalid configuration:');
      expect(unreadable.output()).toContain(
        `- SPOE_TLS_CERT: cannot read "${missing}": ENOENT: no such file or directory`,
      );
      expect(unreadable.output()).toContain(`- SPOE_TLS_CA: "${pki.server.keyFile}" holds no PEM certificate`);
      expect(unreadable.output()).toContain('- LOG_LEVEL must be one of');

      const mismatched = await AgentProcess.start(
        { SPOE_TLS_CERT: pki.server.certFile, SPOE_TLS_KEY: pki.client.keyFile },
        false,
      );
      expect(await mismatched.exited).toEqual({ code: 1, signal: null });
      expect(mismatched.output()).toContain(
        `- SPOE_TLS_CERT "${pki.server.certFile}" and SPOE_TLS_KEY "${pki.client.keyFile}" do not work together:`,
      );
      expect(mismatched.output()).toMatch(/key values mismatch/);
    });

    // One agent for the describe: each test takes it from where the previous one left it.
    describe('SIGHUP, under mutual TLS', () => {
      let dir: string;
      let agent: AgentProcess;
      let before: SpoeClient;
      beforeAll(async () => {
        dir = makeTempDir();
        installFiles(dir, pki);
        agent = await AgentProcess.start({ ...tlsEnv(dir, true), LOG_LEVEL: 'log' });
        before = await SpoeClient.connect({ port: agent.spoePort, tls: haproxyOf(pki), timeoutMs: 5000 });
      });
      afterAll(async () => {
        await agent?.stop();
        await before?.close().catch(() => undefined);
      });

      it('says it serves mutual TLS', () => {
        expect(agent.output()).toMatch(/ready: SPOE on .*, SPOE over mutual TLS$/m);
      });

      it('with new files: new connections get the new certificate and CA, one opened before keeps working', async () => {
        const trust = [pki.ca, renewed.ca];
        expect(await servedFingerprint(agent.spoePort, trust, pki.client)).toBe(fingerprintOf(pki.server.cert));
        installFiles(dir, renewed);
        agent.child.kill('SIGHUP');
        await waitFor('the reload', () => linesWith(agent, 'TLS certificates reloaded').length === 1);

        expect(await servedFingerprint(agent.spoePort, trust, renewed.client)).toBe(fingerprintOf(renewed.server.cert));
        expect(await score(before)).toBe(100);
        expect(await connects(agent.spoePort, haproxyOf(renewed))).toBe(true);
        // The CA was reloaded too: HAProxy's certificate of the previous CA no longer gets in.
        expect(await connects(agent.spoePort, { ...haproxyOf(pki), ca: renewed.ca })).toBe(false);
      });

      it('with files that do not work: an error line, the previous certificates still served, the agent alive', async () => {
        const notReloaded =
          'ERROR [TlsReloader] SIGHUP: TLS certificates not reloaded, the previous ones stay in use: ';
        rmSync(join(dir, 'ca.pem'));
        agent.child.kill('SIGHUP');
        const [missing] = await waitFor('the first error line', () => {
          const lines = linesWith(agent, notReloaded);
          return lines.length === 1 && lines;
        });
        expect(missing).toContain(`SPOE_TLS_CA: cannot read "${join(dir, 'ca.pem')}": ENOENT`);

        copyFileSync(renewed.caFile, join(dir, 'ca.pem'));
        copyFileSync(pki.server.keyFile, join(dir, 'agent.key')); // not the key of renewed's certificate
        agent.child.kill('SIGHUP');
        const [, mismatch] = await waitFor('the second error line', () => {
          const lines = linesWith(agent, notReloaded);
          return lines.length === 2 && lines;
        });
        expect(mismatch).toContain(
          `SPOE_TLS_CERT "${join(dir, 'agent.pem')}" and SPOE_TLS_KEY "${join(dir, 'agent.key')}" (SPOE_TLS_CA "${join(dir, 'ca.pem')}") do not work together: nestjs-spoe: reloadTls: `,
        );
        expect(mismatch).toMatch(/key values mismatch/);

        expect(agent.child.exitCode).toBeNull();
        expect(linesWith(agent, 'TLS certificates reloaded')).toHaveLength(1);
        expect(await servedFingerprint(agent.spoePort, [renewed.ca], renewed.client)).toBe(
          fingerprintOf(renewed.server.cert),
        );
        expect(await connects(agent.spoePort, haproxyOf(renewed))).toBe(true);
        expect(await score(before)).toBe(100);
      });

      it('stays ready: the readiness probe presents the reloaded certificate', async () => {
        const { status, body } = await api<{ details: { spoe: Record<string, unknown> } }>(
          agent.httpUrl,
          'GET',
          '/health/ready',
        );
        expect(status).toBe(200);
        expect(body.details.spoe).toMatchObject({ status: 'up', connections: 1 });
      });
    });

    it('without TLS: SIGHUP says there is nothing to reload, and the agent serves on', async () => {
      const agent = await AgentProcess.start({ LOG_LEVEL: 'log' });
      try {
        agent.child.kill('SIGHUP');
        await waitFor('the line', () => linesWith(agent, 'SIGHUP: no TLS certificates to reload').length === 1);
        const client = await SpoeClient.connect({ port: agent.spoePort, timeoutMs: 5000 });
        expect(await score(client)).toBe(100);
        await client.close();
        expect(agent.child.exitCode).toBeNull();
      } finally {
        await agent.stop();
      }
    });

    it('SPOE_WORKERS=2: every worker serves TLS, and a SIGHUP to the supervisor reloads each of them', async () => {
      const dir = makeTempDir();
      installFiles(dir, pki);
      const agent = await AgentProcess.start({ ...tlsEnv(dir, false), SPOE_WORKERS: '2', LOG_LEVEL: 'log' });
      const clients: SpoeClient[] = [];
      try {
        const port = agent.spoePort;
        /** Opens 4 more connections verifying the agent against `ca`; how many each worker then serves. */
        const open = async (ca: Buffer): Promise<number[]> => {
          for (let i = 0; i < 4; i++) clients.push(await SpoeClient.connect({ port, tls: { ca }, timeoutMs: 5000 }));
          return waitFor(`the workers to hold the ${clients.length} connections`, () => {
            const served = agent.workerPids().map((pid) => connectionsServedBy(pid, port));
            return served.reduce((a, b) => a + b, 0) === clients.length && served;
          });
        };
        // Connections are handed out in turn: both workers serve some, verified against the first CA.
        const first = await open(pki.ca);
        expect(first).toHaveLength(2);
        for (const served of first) expect(served).toBeGreaterThanOrEqual(1);

        installFiles(dir, renewed);
        agent.child.kill('SIGHUP');
        await waitFor('both workers to reload', () => linesWith(agent, 'TLS certificates reloaded').length === 2);
        expect(linesWith(agent, '[Supervisor] SIGHUP: the 2 workers reload their TLS certificates')).toHaveLength(1);

        // Four more, which only the new CA verifies: each worker serves the new certificate.
        const second = await open(renewed.ca);
        second.forEach((served, worker) => expect(served).toBeGreaterThan(first[worker]));
        for (const client of clients) expect(await score(client)).toBe(100);
        expect(agent.child.exitCode).toBeNull();
      } finally {
        await agent.stop();
        await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
      }
    });
  });
});
