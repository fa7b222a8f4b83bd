// Fault 5 of "Running in production": HAProxy reload storms — 10 seamless reloads (a new process with
// `-x <stats socket> -sf <old pid>`) one after the other under load, with two example agents in one backend, on 2.6
// and 3.4. After each reload a burst of requests on new connections is decided; nothing fails (the deployed
// `option idle-close-on-response` keeps the old processes from closing keep-alive connections under their clients);
// once the storm is over the old processes exit and their SPOE connections are closed, and the agents hold no more
// descriptors or memory than before, within the bounds below.
import { readdirSync } from 'node:fs';
import { cleanupAll } from '../support/cleanup';
import { describeEachHaproxy, HaproxyBinary } from '../support/haproxy-binaries';
import { runLoad } from '../support/load';
import { sample, scrape } from '../support/prometheus';
import { waitFor } from '../support/wait';
import { Fleet, LOAD_CLIENTS, outcomes, useFleet } from './support/fleet';

jest.setTimeout(120_000);
afterAll(() => cleanupAll());

const RELOADS = 10;
/** Growth allowed after the storm: a few descriptors (Node's own come and go), and memory the GC has not reclaimed. */
const FD_SLACK = 10;
const RSS_SLACK_BYTES = 64 * 1024 * 1024;

/** What an agent process holds: descriptors (/proc), resident memory and its SPOE connections (its /metrics). */
async function footprint(fleet: Fleet, i: number): Promise<{ fds: number; rss: number; connections: number }> {
  const text = await scrape(fleet.agents[i].httpUrl);
  return {
    fds: readdirSync(`/proc/${fleet.agents[i].child.pid}/fd`).length,
    rss: sample(text, 'process_resident_memory_bytes'),
    connections: sample(text, 'spoe_connections_open'),
  };
}

describeEachHaproxy(
  'fault: HAProxy reload storm',
  (binary: HaproxyBinary) => {
    let fleet: Fleet;
    useFleet({ binary }, (started) => (fleet = started));

    /** Requests on new connections, each of which must be decided by an agent. */
    const burst = () =>
      runLoad({
        total: 2 * LOAD_CLIENTS,
        concurrency: LOAD_CLIENTS,
        keepAlive: false,
        request: () => ({ host: '127.0.0.1', port: fleet.port, path: '/' }),
        check: () => undefined,
      });

    it(`${RELOADS} reloads under load: every burst decided, old processes gone, no descriptor or memory growth`, async () => {
      // The steady state: both agents warmed up by a load, then idle.
      expect(outcomes(await burst())).toMatchObject({ failed: 0, setOnError: 0 });
      const before = await Promise.all([0, 1].map((i) => footprint(fleet, i)));
      const processes = [await fleet.haproxy.servingPid()];

      const stop = new AbortController();
      const running = fleet.load(stop.signal);
      const bursts = [];
      try {
        for (let r = 0; r < RELOADS; r++) {
          await fleet.haproxy.reload({ seamless: true });
          processes.push(await fleet.haproxy.servingPid());
          bursts.push(outcomes(await burst()));
        }
      } finally {
        stop.abort();
      }
      const outcome = outcomes(await running);
      for (const pid of processes.slice(0, -1)) await fleet.haproxy.waitForExit(pid);
      // The old processes' SPOE connections are closed: what remains is the last process's, at most one per NOTIFY in
      // flight, which the load bounds (HAProxy opens a connection when those it has are busy).
      const after = await waitFor("the agents to hold only the last process's connections", async () => {
        const now = await Promise.all([0, 1].map((i) => footprint(fleet, i)));
        return now[0].connections + now[1].connections <= LOAD_CLIENTS && now;
      });
      console.log(
        `HAProxy ${binary.fullVersion}, ${RELOADS} reloads under load: ${JSON.stringify({ ...outcome, bursts: bursts.map((b) => b.decided), before, after })}`,
      );
      expect(new Set(processes).size).toBe(RELOADS + 1);
      expect(bursts.map((b) => ({ failures: b.failures, setOnError: b.setOnError }))).toEqual(
        bursts.map(() => ({ failures: [], setOnError: 0 })),
      );
      expect({ failures: outcome.failures, setOnError: outcome.setOnError }).toEqual({ failures: [], setOnError: 0 });
      for (const i of [0, 1]) {
        expect(after[i].fds).toBeLessThanOrEqual(before[i].fds + FD_SLACK);
        expect(after[i].rss).toBeLessThanOrEqual(before[i].rss + RSS_SLACK_BYTES);
      }
    });
  },
  ['2.6', '3.4'],
);
