/**
 * The proxied agents of `npm run bench:frames`: the `server` agent behind HAProxy 3.4 in `mode tcp`, which forwards the
 * load generator's SPOP bytes as they are, to the agent in plain TCP or over TLS that HAProxy originates. The C
 * generator speaks plain TCP only, and a Node TLS client in its place would be the bottleneck it measures; HAProxy
 * does the client side of TLS in C, as in production.
 *
 *   server-proxied  generator → HAProxy → `server`, plain TCP: the baseline of the comparison
 *   server-tls      generator → HAProxy (`ssl verify required ca-file`) → `server` with `tls` (certificate, key)
 *   server-mtls     `server-tls` plus HAProxy's client certificate (`crt`), which the agent requires (`ca`, `requestCert`)
 *
 * The agent's CPU (its process tree) is what shows TLS's cost; HAProxy's lands in the report's "other cores".
 */
import { makeTempDir, removeTempDir } from '../../test/support/cleanup';
import { makeTestPki, TestPki } from '../../test/support/certificates';
import { HaproxyProcess } from '../../test/support/haproxy-process';
import { waitFor } from '../../test/support/wait';
import { SpoeClient } from '../../libs/spoe/src/testing';
import { RunningAgent, startNestAgent } from '../support/agents';
import { pinRunning } from '../support/cpus';
import { freePort } from '../support/ports';
import { stopProcessTree } from '../support/processes';
import { renderTcpProxyCfg } from './config';
import { Haproxy, provisionHaproxy } from './provision';

export const PROXIED_AGENTS = ['server-proxied', 'server-tls', 'server-mtls'] as const;
export type ProxiedKind = (typeof PROXIED_AGENTS)[number];

/** The HAProxy version in front of the agents: the newest the tests run. */
const VERSION = '3.4';
const READY_TIMEOUT_MS = 10_000;

/** What every proxied agent shares: the binary, and the certificates (test/support/certificates.ts). */
export interface ProxySetup {
  readonly binary: Haproxy;
  readonly pki: TestPki;
}

/** Provisions HAProxy 3.4 and makes the certificates, once per run; the directory goes at exit (cleanup.ts). */
export function prepareProxies(): ProxySetup {
  return { binary: provisionHaproxy(VERSION), pki: makeTestPki(makeTempDir('nestjs-spoe-bench-pki-')) };
}

/** What the generator drives: HAProxy's port; `pid` is the agent's, whose CPU is measured. */
export interface ProxiedAgent {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * The `server` agent (on `cpus.agent`) and its HAProxy (on `cpus.proxy`), resolved once a health-check HELLO went
 * through both: nothing is measured before the path, TLS included, is proven to work.
 */
export async function startProxied(
  kind: ProxiedKind,
  setup: ProxySetup,
  cpus: { readonly agent: number; readonly proxy: number },
): Promise<ProxiedAgent> {
  const { pki } = setup;
  const tls = kind === 'server-proxied' ? undefined : kind;
  const agent = await startNestAgent('server', {
    name: kind,
    cpu: cpus.agent,
    ...(tls && {
      tls: {
        certFile: pki.server.certFile,
        keyFile: pki.server.keyFile,
        ...(tls === 'server-mtls' && { caFile: pki.caFile }),
      },
    }),
  });
  const dir = makeTempDir('nestjs-spoe-bench-');
  let haproxy: HaproxyProcess | undefined;
  const stop = async (): Promise<void> => {
    await haproxy?.stop();
    removeTempDir(dir);
    await stopProcessTree(agent.child);
  };
  try {
    const port = await freePort();
    const cfg = renderTcpProxyCfg({
      port,
      agentPort: agent.port,
      ...(tls && {
        tls: { caFile: pki.caFile, ...(tls === 'server-mtls' && { clientPemFile: pki.client.pemFile }) },
      }),
    });
    haproxy = await HaproxyProcess.start({
      binary: setup.binary,
      dir,
      files: { 'haproxy.cfg': cfg },
      waitForTcp: [{ host: '127.0.0.1', port }],
    });
    pinRunning(haproxy.pid, cpus.proxy);
    await helloThrough(kind, agent, haproxy, port);
    return { pid: agent.pid, port, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function helloThrough(kind: ProxiedKind, agent: RunningAgent, haproxy: HaproxyProcess, port: number) {
  try {
    await waitFor(
      `a health-check HELLO through HAProxy to the ${kind} agent (port ${agent.port})`,
      () => SpoeClient.healthCheck({ host: '127.0.0.1', port, timeoutMs: 1000 }).then(() => true),
      READY_TIMEOUT_MS,
      100,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}\n--- HAProxy output ---\n${haproxy.output()}`, { cause: error });
  }
  const problems = haproxy.unexpectedProblems();
  if (problems.length > 0) console.error(`HAProxy in front of ${kind}:\n  ${problems.join('\n  ')}`);
}
