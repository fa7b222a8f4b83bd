// Fault 2 of "Running in production": a graceful rollout — SIGTERM to one of two example agents under load. Readiness
// turns 503 and the agent answers HAProxy's health checks with AGENT-DISCONNECT, so HAProxy marks it down within the
// grace period and sends new work to the other; what it still receives is answered; at the end of the grace period it
// disconnects at a lull and exits 0. No request fails; on 3.1+ none even loses its decision.
import { cleanupAll } from '../support/cleanup';
import { describeEachHaproxy, HaproxyBinary, isSpopMux } from '../support/haproxy-binaries';
import { api } from './support/example';
import { Fleet, LOAD_CLIENTS, outcomes, serverName, useFleet } from './support/fleet';

jest.setTimeout(120_000);
afterAll(() => cleanupAll());

/** The agents' grace period: far longer than HAProxy needs to mark one down (`fall` 3 × `inter` 200ms). */
const GRACE_MS = 5000;

describeEachHaproxy(
  'fault: graceful rollout',
  (binary: HaproxyBinary) => {
    let fleet: Fleet;
    useFleet({ binary, env: { SHUTDOWN_GRACE_MS: String(GRACE_MS) } }, (started) => (fleet = started));

    it('SIGTERM under load: marked down during the grace period, drained, exit 0, no request failed', async () => {
      const stop = new AbortController();
      const running = fleet.load(stop.signal);
      let from: number;
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let stoppedAgent: number;
      try {
        stoppedAgent = await fleet.busiestAgent(300);
        const agent = fleet.agents[stoppedAgent];
        from = fleet.haproxy.lines.length;
        agent.child.kill('SIGTERM');
        await fleet.waitForServer(serverName(stoppedAgent), 'DOWN');
        // Marked down by its failed health checks while it still serves: readiness says why.
        expect(agent.child.exitCode).toBeNull();
        const ready = await api<{ error: Record<string, { state?: string }> }>(agent.httpUrl, 'GET', '/health/ready');
        expect({ status: ready.status, lifecycle: ready.body.error.lifecycle?.state }).toEqual({
          status: 503,
          lifecycle: 'shutting-down',
        });
        exit = await agent.exited;
        await fleet.answers(1 - stoppedAgent, 500);
      } finally {
        stop.abort();
      }
      const outcome = outcomes(await running);
      const spoe = fleet.spoeFailures(from);
      console.log(
        `HAProxy ${binary.fullVersion}, an agent SIGTERMed under load: ${JSON.stringify({ ...outcome, spoe })}`,
      );
      expect(exit).toEqual({ code: 0, signal: null });
      expect(fleet.agents[stoppedAgent].output()).toMatch(
        /health checks are refused[\s\S]*grace period over: draining[\s\S]*SPOE agent closed/,
      );
      expect(outcome.failures).toEqual([]);
      if (isSpopMux(binary.version)) {
        // HAProxy sends nothing more to an agent marked down: nothing is in flight when it disconnects.
        expect(outcome.setOnError).toBe(0);
      } else {
        // HAProxy 2.x keeps its SPOE connections to an agent marked down in use, and fails every NOTIFY it sent on one
        // once the agent's AGENT-DISCONNECT (status 0) arrives — SPOE status 256 — even those it sent after the ACKs
        // that made the lull. At most the NOTIFY in flight then: one per HTTP client.
        expect(outcome.setOnError).toBeLessThanOrEqual(LOAD_CLIENTS);
        expect(Object.keys(spoe.statuses).filter((st) => st !== '256')).toEqual([]);
      }
    });
  },
  ['2.6', '3.4'],
);
