/**
 * The production topology with real processes, for the fault tests (README: "Running in production"): two built
 * example agents (`node dist/main.js`) as two `server` lines of one SPOE backend, HAProxy configured by
 * deploy/haproxy's agent-hosts files, an HTTP backend, and an HTTP load through HAProxy whose every response is
 * classified by what the SPOE did for it.
 */
import { join } from 'node:path';
import { makeTempDir } from '../../support/cleanup';
import { showStat } from '../../support/haproxy-admin';
import { HaproxyBinary, isSpopMux } from '../../support/haproxy-binaries';
import { HaproxyProcess } from '../../support/haproxy-process';
import { HttpBackend, startHttpBackend } from '../../support/http-backend';
import { LoadResult, runLoad } from '../../support/load';
import { freePort } from '../../support/ports';
import { sample, scrape } from '../../support/prometheus';
import { waitFor } from '../../support/wait';
import { AgentProcess, deployFile, ensureBuilt } from './example';

/** The deploy/haproxy files of the topology, by HAProxy generation: `mode spop` on 3.1+, `mode tcp` before. */
export function fleetFiles(version: string): { readonly cfg: string; readonly spoe: string } {
  return isSpopMux(version)
    ? { cfg: 'haproxy-agent-hosts.cfg', spoe: 'spoe.conf' }
    : { cfg: 'haproxy-2.x-agent-hosts.cfg', spoe: 'spoe-2.x.conf' };
}

/** What the SPOE did for one HTTP request. */
export type Outcome =
  /** Served with the agent's decision (X-IP-Score set). */
  | 'decided'
  /** Served without a decision: the SPOE failed and HAProxy set the `set-on-error` variable. */
  | 'set-on-error'
  /** Not served: a status other than 200, a transport error, or no answer within the client's deadline. */
  | 'failed';

/** A {@link LoadResult} counted by {@link Outcome}, with a few failures described. */
export interface LoadOutcome {
  readonly sent: number;
  readonly decided: number;
  readonly setOnError: number;
  readonly failed: number;
  /** The first failures, for assertion messages. */
  readonly failures: readonly string[];
  /** The set-on-error values seen (SPOE status codes, HAProxy's `txn.rep.error`), with their counts. */
  readonly errors: Readonly<Record<string, number>>;
}

/** Options of {@link Fleet.start}. */
export interface FleetOptions {
  readonly binary: HaproxyBinary;
  /** Environment of every agent, over quiet defaults. */
  readonly env?: Record<string, string>;
  /** `inter` of the health checks (production: 2s; tests check more often to take less time). Default 200ms. */
  readonly checkInter?: string;
}

/**
 * A Fleet for the tests of the enclosing describe block: started before them (the agents built first), handed to
 * `started`, and closed after them.
 */
export function useFleet(options: FleetOptions, started: (fleet: Fleet) => void): void {
  let fleet: Fleet | undefined;
  beforeAll(async () => {
    ensureBuilt();
    started((fleet = await Fleet.start(options)));
  });
  afterAll(() => fleet?.close());
}

/** HAProxy's name of agent `i` (its `server` line). */
export const serverName = (i: number): string => `agent${i + 1}`;

/** HTTP clients of the load: enough for requests in flight on both agents at any time, few for a 2-core machine. */
export const LOAD_CLIENTS = 16;

/**
 * Two agents behind one HAProxy. Agents keep their SPOE port across {@link restartAgent}, as a restarted container
 * keeps its address.
 */
export class Fleet {
  private constructor(
    readonly binary: HaproxyBinary,
    readonly agents: AgentProcess[],
    readonly spoePorts: readonly number[],
    private readonly env: Record<string, string>,
    readonly haproxy: HaproxyProcess,
    readonly backend: HttpBackend,
    readonly statsSocket: string,
    /** HAProxy's HTTP port on 127.0.0.1. */
    readonly port: number,
  ) {}

  static async start(options: FleetOptions): Promise<Fleet> {
    const env = { BLOCKLIST: '', ...options.env };
    const agents: AgentProcess[] = [];
    let backend: HttpBackend | undefined;
    try {
      for (let i = 0; i < 2; i++) agents.push(await AgentProcess.start(env));
      backend = await startHttpBackend();
      const port = await freePort(['127.0.0.1']);
      const dir = makeTempDir();
      const statsSocket = join(dir, 'stats.sock');
      const files = fleetFiles(options.binary.version);
      const inter = options.checkInter ?? '200ms';
      // The deployed configuration, plus what a test reads: a stats socket (which hands the listeners over at a seamless
      // reload), the set-on-error variable as a header.
      const cfg = deployFile(files.cfg)
        .replace(/^global\n/m, 'global\n    stats socket ${STATS_SOCKET} level admin expose-fd listeners\n')
        .replace(
          /^(\s*)default_backend app$/m,
          '$1http-after-response set-header X-SPOE-Error %[var(txn.rep.error)] if { var(txn.rep.error) -m found }\n$&',
        )
        .replaceAll(/ check inter \S+/g, ` check inter ${inter}`);
      if (!cfg.includes('X-SPOE-Error') || !cfg.includes(` check inter ${inter}`))
        throw new Error(`${files.cfg} no longer has the lines the fault tests adapt`);
      // 2.x: SPOE connections idle for `timeout idle` close (production: 2m). 1s here, so that the connections a load
      // no longer needs close within a test, and HAProxy opens new ones as it needs them, over every UP agent.
      const spoe = deployFile(files.spoe).replace(/^(\s*timeout idle) \S+$/m, '$1 1s');
      const haproxy = await HaproxyProcess.start({
        binary: options.binary,
        dir,
        files: { 'haproxy.cfg': cfg, [files.spoe]: spoe },
        vars: {
          HAPROXY_BIND: `127.0.0.1:${port}`,
          AGENT1_ADDR: `127.0.0.1:${agents[0].spoePort}`,
          AGENT2_ADDR: `127.0.0.1:${agents[1].spoePort}`,
          BACKEND_ADDR: `127.0.0.1:${backend.port}`,
          SPOE_CONF: files.spoe,
          STATS_SOCKET: statsSocket,
        },
        statsSocket,
      });
      const fleet = new Fleet(
        options.binary,
        agents,
        agents.map((a) => a.spoePort),
        env,
        haproxy,
        backend,
        statsSocket,
        port,
      );
      for (const i of [0, 1]) await fleet.waitForServer(serverName(i), 'UP');
      return fleet;
    } catch (error) {
      for (const agent of agents) await agent.stop();
      await backend?.close();
      throw error;
    }
  }

  /** Starts agent `i` again, on its SPOE port. */
  async restartAgent(i: number): Promise<AgentProcess> {
    await this.agents[i].stop();
    this.agents[i] = await AgentProcess.start({ ...this.env, SPOE_PORT: String(this.spoePorts[i]) });
    return this.agents[i];
  }

  /**
   * Waits until HAProxy's server `agent1`/`agent2` is UP or DOWN after a completed check (L7OK, or a failed one), not
   * merely in its initial state.
   */
  async waitForServer(server: string, status: 'UP' | 'DOWN', timeoutMs = 20_000): Promise<void> {
    let last = '';
    await waitFor(
      `HAProxy's ${server} to be ${status}`,
      async () => {
        const row = (await showStat(this.statsSocket)).find((r) => r.pxname === 'spoe-agents' && r.svname === server);
        last = `${row?.status} ${row?.check_status}`;
        return row?.status === status && (status === 'DOWN' || row.check_status === 'L7OK');
      },
      timeoutMs,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last: ${last}`, { cause: error });
    });
  }

  /**
   * A load through HAProxy from {@link LOAD_CLIENTS} keep-alive clients that runs until `signal` is aborted (or
   * `limit` requests were sent), every response kept for {@link outcomes}.
   */
  load(signal: AbortSignal, limit = 100_000): Promise<LoadResult> {
    return runLoad({
      total: limit,
      concurrency: LOAD_CLIENTS,
      signal,
      request: () => ({ host: '127.0.0.1', port: this.port, path: '/' }),
      check: () => undefined,
    });
  }

  /** NOTIFY answered so far by agent `i` (its check-client-ip messages, from its /metrics). */
  async answered(i: number): Promise<number> {
    return sample(await scrape(this.agents[i].httpUrl), 'spoe_messages_total', {
      message: 'check-client-ip',
      outcome: 'ok',
    });
  }

  /** Waits (at most `timeoutMs`) until agent `i` answered `count` more NOTIFY from now on: it takes part in the load. */
  async answers(i: number, count: number, timeoutMs = 30_000): Promise<void> {
    const from = await this.answered(i);
    await waitFor(
      `agent ${i + 1} to answer ${count} NOTIFY`,
      async () => (await this.answered(i)) >= from + count,
      timeoutMs,
    );
  }

  /**
   * Waits until the load reached the agents (`count` NOTIFY answered), and returns the index of the agent that answered
   * most of them: the one a fault hurts. HAProxy 2.x spreads its SPOE connections, not each NOTIFY, over the agents,
   * and a light load may need no connection to one of them.
   */
  async busiestAgent(count: number): Promise<number> {
    const before = await Promise.all(this.agents.map((_, i) => this.answered(i)));
    const deltas = await waitFor(`the load to reach the agents (${count} NOTIFY answered)`, async () => {
      const now = await Promise.all(this.agents.map((_, i) => this.answered(i)));
      const d = now.map((n, i) => n - before[i]);
      return d[0] + d[1] >= count && d;
    });
    return deltas[0] >= deltas[1] ? 0 : 1;
  }

  /**
   * Waits until agent `i` holds no HAProxy connection (its `spoe_connections_open`): on 2.x, the idle ones closed
   * after `timeout idle`, so that the next load makes HAProxy open connections again, over every agent that is UP.
   */
  async connectionsClosed(i: number): Promise<void> {
    await waitFor(
      `agent ${i + 1}'s SPOE connections to close`,
      async () => sample(await scrape(this.agents[i].httpUrl), 'spoe_connections_open') === 0,
      30_000,
    );
  }

  /** `timeout processing` of the deployed SPOE configuration, in ms. */
  get timeoutProcessingMs(): number {
    const spoe = deployFile(fleetFiles(this.binary.version).spoe);
    const [, value, unit] = /^\s*timeout processing (\d+)(ms|s)$/m.exec(spoe) ?? [];
    if (!value) throw new Error('no timeout processing in the deployed SPOE configuration');
    return Number(value) * (unit === 's' ? 1000 : 1);
  }

  /**
   * HAProxy's own account of the SPOE failures since output line `from`: the status of each failed NOTIFY exchange,
   * and the longest processing time among them (HAProxy's measure, not the test's).
   */
  spoeFailures(from: number): { readonly statuses: Readonly<Record<number, number>>; readonly longestMs: number } {
    const statuses: Record<number, number> = {};
    let longestMs = 0;
    for (const event of this.haproxy.spoeEvents(from)) {
      if (event.st === 0) continue;
      statuses[event.st] = (statuses[event.st] ?? 0) + 1;
      longestMs = Math.max(longestMs, event.pT);
    }
    return { statuses, longestMs };
  }

  async close(): Promise<void> {
    await this.haproxy.stop();
    for (const agent of this.agents) await agent.stop();
    await this.backend.close();
  }
}

/** Counts a load's responses by {@link Outcome}. */
export function outcomes(result: LoadResult): LoadOutcome {
  const failures = result.failures.map((f) => `#${f.i}: ${f.reason}`);
  const errors: Record<string, number> = {};
  let decided = 0;
  let setOnError = 0;
  for (const response of result.responses) {
    const error = response.headers['x-spoe-error'];
    if (response.status !== 200) failures.push(`#${response.i}: status ${response.status}`);
    else if (error !== undefined) {
      setOnError++;
      errors[String(error)] = (errors[String(error)] ?? 0) + 1;
    } else if (response.headers['x-ip-score']) decided++;
    else failures.push(`#${response.i}: 200 with neither a decision nor set-on-error`);
  }
  return {
    sent: result.total,
    decided,
    setOnError,
    failed: failures.length,
    failures: failures.slice(0, 10),
    errors,
  };
}
