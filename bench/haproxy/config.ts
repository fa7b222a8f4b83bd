/**
 * haproxy.cfg and spoe.conf of `npm run bench:haproxy`: one HAProxy process, two frontends that answer HTTP themselves
 * (no backend server whose cost would blur the SPOE's), one with the SPOE filter and one without.
 *
 * What it knows of the versions (the same as test/haproxy/agent-app.ts and deploy/haproxy/):
 * - 3.1+ runs SPOP over the SPOP multiplexer: the agents backend is `mode spop`, and the spoe-agent section takes no
 *   `timeout hello`/`timeout idle`;
 * - 2.x (and 3.0) run it over applets on a `mode tcp` backend, and need `timeout hello` and `timeout idle`.
 *
 * And the haproxy.cfg of `npm run bench:frames`' proxied agents (bench/haproxy/tcp-proxy.ts): a `mode tcp` proxy
 * between the load generator and an agent, plain or originating TLS.
 */
import { join } from 'node:path';
import { isSpopMux } from '../../test/support/haproxy-binaries';

/** The agent's variables are `sess.<VAR_PREFIX>.*` (`option var-prefix`). */
export const VAR_PREFIX = 'bench';
/** Response header of the SPOE frontend carrying the score the agent set: proof that the agent answered. */
export const SCORE_HEADER = 'x-ip-score';
/** Status of the SPOE frontend when the score is missing (agent error, timeout): wrk counts it as a failed request. */
export const NO_SCORE_STATUS = 503;

export interface BenchHaproxyOptions {
  /** HAProxy major.minor. */
  readonly version: string;
  /** Directory the files are written to (spoe.conf is referenced by absolute path). */
  readonly dir: string;
  /** Port of the frontend with the SPOE filter, on 127.0.0.1. */
  readonly spoePort: number;
  /** Port of the frontend without it, on 127.0.0.1. */
  readonly plainPort: number;
  /** The agent's SPOP port on 127.0.0.1. */
  readonly agentPort: number;
}

export function renderHaproxyFiles(o: BenchHaproxyOptions): Record<'haproxy.cfg' | 'spoe.conf', string> {
  return { 'haproxy.cfg': renderHaproxyCfg(o), 'spoe.conf': renderSpoeConf(o.version) };
}

function renderHaproxyCfg(o: BenchHaproxyOptions): string {
  const score = `var(sess.${VAR_PREFIX}.ip_score)`;
  return [
    'global',
    // One thread: HAProxy uses at most one core, the same in every run and every version, and leaves the other core of
    // a 2-core machine to the agent and wrk instead of fighting them for it. Results compare, they do not max out.
    '    nbthread 1',
    // No `log`: a log line per request would add the same cost to both frontends and measure the log path instead.
    '',
    'defaults',
    '    mode http',
    '    timeout connect 2s',
    '    timeout client 30s',
    '    timeout server 30s',
    '',
    'frontend with_spoe',
    `    bind 127.0.0.1:${o.spoePort}`,
    `    filter spoe engine bench config ${join(o.dir, 'spoe.conf')}`,
    // The decision is used, as in production: a blocked client gets a 403 (and wrk counts it as a failed request).
    `    http-request deny deny_status 403 if { ${score} -m int ge 100 }`,
    // A request the agent did not score (SPOE error or timeout) must not pass as a fast success: it fails the run.
    `    http-request return status ${NO_SCORE_STATUS} content-type text/plain string "no score" unless { ${score} -m found }`,
    `    http-request return status 200 content-type text/plain string ok hdr ${SCORE_HEADER} %[${score}]`,
    '',
    'frontend without_spoe',
    `    bind 127.0.0.1:${o.plainPort}`,
    '    http-request return status 200 content-type text/plain string ok',
    '',
    'backend agents',
    `    mode ${isSpopMux(o.version) ? 'spop' : 'tcp'}`,
    '    timeout connect 2s',
    '    timeout server 1m',
    // No health check: readiness is proven by a scored request through the SPOE frontend before anything is measured.
    `    server agent1 127.0.0.1:${o.agentPort}`,
    '',
  ].join('\n');
}

function renderSpoeConf(version: string): string {
  return [
    '[bench]',
    'spoe-agent bench-agent',
    '    messages check-client-ip',
    `    option var-prefix ${VAR_PREFIX}`,
    '    option pipelining',
    // Generous: a slow answer shows in the latency figures, not as a missing score.
    '    timeout processing 500ms',
    ...(isSpopMux(version) ? [] : ['    timeout hello 2s', '    timeout idle 30s']),
    '    use-backend agents',
    '',
    'spoe-message check-client-ip',
    '    args ip=src',
    '    event on-frontend-http-request',
    '',
  ].join('\n');
}

export interface TcpProxyOptions {
  /** Where the proxy listens, on 127.0.0.1. */
  readonly port: number;
  /** The agent's SPOP port on 127.0.0.1. */
  readonly agentPort: number;
  /**
   * TLS to the agent: its certificate verified against `caFile`; with `clientPemFile` (certificate then key) HAProxy
   * presents a client certificate too (mutual TLS). Plain TCP without.
   */
  readonly tls?: { readonly caFile: string; readonly clientPemFile?: string };
}

/**
 * A `listen` section in `mode tcp` that forwards bytes as they come, one agent connection per client connection: the
 * SPOP frames stay the generator's, and what the agent sees differs from a direct connection only by the TLS.
 */
export function renderTcpProxyCfg(o: TcpProxyOptions): string {
  const tls = o.tls
    ? ` ssl verify required ca-file ${o.tls.caFile}${o.tls.clientPemFile ? ` crt ${o.tls.clientPemFile}` : ''}`
    : '';
  return [
    'global',
    // One thread, as in bench:haproxy: one core at most, the same in every run.
    '    nbthread 1',
    '',
    'defaults',
    '    mode tcp',
    '    timeout connect 2s',
    '    timeout client 30s',
    '    timeout server 30s',
    '',
    'listen spop',
    `    bind 127.0.0.1:${o.port}`,
    `    server agent1 127.0.0.1:${o.agentPort}${tls}`,
    '',
  ].join('\n');
}
