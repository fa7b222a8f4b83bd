/**
 * The agent under load behind real HAProxy, on every version: thousands of requests from 32 keep-alive clients, soft
 * reloads in the middle of the load (a new process with `-sf <old pid>`, and master-worker SIGUSR2), and every
 * pipelining / async combination the version supports. Every run must have zero failed requests, zero SPOE log lines
 * with a non-zero status, zero hits of HAProxy's set-on-error variable and zero agent error variables.
 */
import { cleanupAll } from '../support/cleanup';
import { describeEachHaproxy, HaproxyBinary, isSpopMux } from '../support/haproxy-binaries';
import { SpoeLogEvent } from '../support/haproxy-spoe-log';
import { HttpResponse } from '../support/http';
import { LoadResult, runLoad } from '../support/load';
import { waitFor } from '../support/wait';
import { newRid, Stack, StackOptions, startStack, streamsEnded } from './agent-app';

afterAll(() => cleanupAll());

/** Number of requests of the main load test, and the number of concurrent clients everywhere. */
const LOAD_REQUESTS = 3000;
const RELOAD_REQUESTS = 1500;
const VARIANT_REQUESTS = 400;
const CLIENTS = 32;

/** A good response: 200, scored by the agent, no SPOE error (set-on-error), no agent error variable. */
function scored(response: HttpResponse): string | undefined {
  if (response.status !== 200) return `status ${response.status}`;
  if (response.headers['x-spoe-error'] !== undefined)
    return `set-on-error: ${String(response.headers['x-spoe-error'])}`;
  if (response.headers['x-agent-error'] !== undefined)
    return `agent error ${String(response.headers['x-agent-error'])}`;
  if (response.headers['x-ip-score'] !== '5') return `x-ip-score ${String(response.headers['x-ip-score'])}`;
  return undefined;
}

/** Runs `total` scored requests from CLIENTS keep-alive clients against the stack's IPv4 frontend. */
function load(
  stack: Stack,
  total: number,
  onProgress?: (done: number) => void,
  before?: (i: number) => Promise<void> | undefined,
): Promise<LoadResult> {
  return runLoad({
    total,
    concurrency: CLIENTS,
    request: () => ({ host: '127.0.0.1', port: stack.port, path: '/', headers: { 'x-request-id': newRid('load') } }),
    check: scored,
    onProgress,
    before,
  });
}

/** Waits until HAProxy logged at least `count` SPOE lines, then returns them all. */
function spoeLines(stack: Stack, count: number): Promise<SpoeLogEvent[]> {
  return waitFor(
    `${count} SPOE log lines`,
    () => {
      const events = stack.haproxy.spoeEvents();
      return events.length >= count ? events : undefined;
    },
    10_000,
    50,
  );
}

/**
 * The common assertions after a load run: every request served and scored (no set-on-error, which HAProxy sets on
 * every SPOE error, so no request had a status ≠ 0), every SPOE log line with status 0, one line per request, every
 * NOTIFY answered, no abnormal DISCONNECT.
 *
 * HAProxy may drop log lines: with several threads, a thread that cannot get the log fd after a few hundred attempts
 * (another thread is writing, or was descheduled while writing — frequent on 2 busy cores) gives up and counts the
 * line in DroppedLogs. So the count is checked as lines + DroppedLogs = requests; runs with `nbthread 1` (reloads,
 * where old processes' counters are gone) drop none.
 */
async function expectCleanRun(stack: Stack, result: LoadResult, options: { exactLines?: boolean } = {}): Promise<void> {
  expect(result.failures.slice(0, 10)).toEqual([]);
  expect(result.ok).toBe(result.total);
  expect(stack.agent.recorder.byMessage('check-client-ip').length).toBe(result.total);
  expect(stack.agent.server.stats.inFlight).toBe(0);
  // The agent never sent nor received a DISCONNECT with an error status.
  expect(stack.agent.recorder.abnormalDisconnects()).toEqual([]);
  const dropped = options.exactLines ? 0 : Number((await stack.haproxy.info()).DroppedLogs);
  const events = await spoeLines(stack, result.total - dropped);
  expect(events.filter((e) => e.st !== 0).map((e) => e.raw)).toEqual([]);
  expect(events.length + dropped).toBe(result.total);
}

describeEachHaproxy('SPOE agent under load', (binary: HaproxyBinary) => {
  const spop = isSpopMux(binary.version);

  describe(`${LOAD_REQUESTS} requests from ${CLIENTS} clients`, () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await startStack(binary, { extraBinds: false });
    }, 30_000);
    afterAll(() => stack?.close());

    it('serves every request, scored, with no SPOE error', async () => {
      const result = await load(stack, LOAD_REQUESTS);
      await expectCleanRun(stack, result);
      expect(stack.haproxy.unexpectedProblems()).toEqual([]);
    }, 90_000);
  });

  describe('soft reload under load', () => {
    /**
     * The agent runs with the library's defaults, which do not announce async (HAProxy then pipelines on each
     * connection). Why async is off by default: with async negotiated, a soft-stopping 2.6 lets an idle SPOE applet
     * send
     * HAPROXY-DISCONNECT while NOTIFY frames it sent still wait for their ACK (async frames wait in a per-thread queue,
     * not in the applet's own one, which is all it checks), then ignores every frame but AGENT-DISCONNECT: those
     * requests end with status 256 (256 + "normal" disconnect) and set-on-error — measured: 17 to 32 of 1500 requests
     * per run with two reloads, 0 with async off. 3.0 does not lose any. Nothing the agent can do but not announce
     * async. `nbthread 1`: no dropped log lines (see expectCleanRun), so the line count is exact.
     */
    const reloadOptions: StackOptions = { nbthread: 1 };
    let stack: Stack | undefined;
    afterEach(async () => {
      await stack?.close();
      stack = undefined;
    });

    it('a new process started with -x <stats socket> -sf <old pid> takes over without a failed request', async () => {
      const s = (stack = await startStack(binary, { ...reloadOptions, extraBinds: false, exposeFd: true }));
      const firstPid = s.haproxy.pid;
      const reloads: Array<Promise<void>> = [];
      const reloadAt = new Set([Math.floor(RELOAD_REQUESTS / 3), Math.floor((2 * RELOAD_REQUESTS) / 3)]);
      // Requests past the middle of each third wait for that third's reload: however fast the agent, every process
      // serves some requests, and a reload never starts before the previous one is done.
      const waitsForReload = (i: number): number =>
        i >= Math.floor((5 * RELOAD_REQUESTS) / 6) ? 1 : i >= Math.floor(RELOAD_REQUESTS / 2) ? 0 : -1;
      const result = await load(
        s,
        RELOAD_REQUESTS,
        (done) => {
          if (reloadAt.has(done)) reloads.push(s.haproxy.reload({ seamless: true }));
        },
        async (i) => {
          const reload = waitsForReload(i);
          if (reload >= 0) await waitFor(`reload ${reload + 1}`, () => reloads[reload]?.then(() => true), 30_000, 10);
        },
      );
      await Promise.all(reloads);
      expect(reloads.length).toBe(2);
      await expectCleanRun(s, result, { exactLines: true });
      // Three processes served in turn (each logged SPOE lines); the replaced ones finished their work and exited.
      const pids = new Set(s.haproxy.spoeEvents().map((e) => e.pid));
      expect(pids.size).toBe(3);
      await s.haproxy.waitForExit(firstPid);
      for (const pid of s.haproxy.runningPids()) if (pid !== s.haproxy.pid) await s.haproxy.waitForExit(pid);
      expect(s.haproxy.runningPids()).toEqual([s.haproxy.pid]);
      // After the last reload, requests are still scored (by the newest process).
      const after = await s.request('/', newRid());
      expect(scored(after)).toBeUndefined();
    }, 90_000);

    it('the new process connects to the agent on its first request; the old one closes its connections cleanly', async () => {
      const s = (stack = await startStack(binary, { ...reloadOptions, extraBinds: false, exposeFd: true }));
      expect(scored(await s.request('/', newRid()))).toBeUndefined();
      const old = s.haproxy.pid;
      expect(s.agent.recorder.connections).toBe(1);
      await s.haproxy.reload({ seamless: true });
      await s.haproxy.waitForExit(old);
      // HAProxy opens agent connections on demand, not when it starts.
      expect(s.agent.recorder.connections).toBe(1);
      await waitFor('the old connection to close', () => s.agent.recorder.disconnects.length === 1, 5000);
      // 2.x: HAPROXY-DISCONNECT status 0, answered by an AGENT-DISCONNECT status 0; 3.1+: the socket is just closed.
      expect(s.agent.recorder.disconnects[0]).toMatchObject(
        spop
          ? { status: undefined, reason: 'closed by peer' }
          : { status: 0, reason: 'HAPROXY-DISCONNECT status 0 (normal)' },
      );
      expect(scored(await s.request('/', newRid()))).toBeUndefined();
      expect(s.agent.recorder.connections).toBe(2);
    }, 30_000);

    it('master-worker (-W): SIGUSR2 reloads without a failed request', async () => {
      const s = (stack = await startStack(binary, { ...reloadOptions, extraBinds: false, masterWorker: true }));
      const firstWorker = await s.haproxy.servingPid();
      let reload: Promise<void> | undefined;
      const result = await load(s, RELOAD_REQUESTS, (done) => {
        if (done === Math.floor(RELOAD_REQUESTS / 2)) reload = s.haproxy.reload();
      });
      await reload;
      await expectCleanRun(s, result, { exactLines: true });
      const newWorker = await s.haproxy.servingPid();
      expect(newWorker).not.toBe(firstWorker);
      await s.haproxy.waitForExit(firstWorker);
      expect(scored(await s.request('/', newRid()))).toBeUndefined();
    }, 90_000);
  });

  describe('pipelining and async configurations', () => {
    type Variant = { readonly name: string; readonly options: StackOptions; readonly capabilities: readonly string[] };
    const variants: Variant[] = spop
      ? [
          { name: 'option pipelining', options: { pipelining: true }, capabilities: ['pipelining'] },
          { name: 'no option pipelining', options: { pipelining: false }, capabilities: [] },
        ]
      : [
          {
            name: 'option pipelining + option async',
            options: { pipelining: true, async: true, agentAsync: true },
            capabilities: ['pipelining', 'async'],
          },
          {
            name: 'option pipelining + no option async',
            options: { pipelining: true, async: false, agentAsync: true },
            capabilities: ['pipelining'],
          },
          {
            name: 'no option pipelining + option async',
            options: { pipelining: false, async: true, agentAsync: true },
            capabilities: ['async'],
          },
          {
            name: 'no option pipelining + no option async',
            options: { pipelining: false, async: false, agentAsync: true },
            capabilities: [],
          },
          {
            name: 'option async, agent defaults (async not announced)',
            options: { pipelining: true, async: true },
            capabilities: ['pipelining'],
          },
        ];

    let stack: Stack | undefined;
    afterEach(async () => {
      await stack?.close();
      stack = undefined;
    });

    it.each(variants.map((v) => [v.name, v] as const))(
      '%s: negotiated as expected, no failure under load',
      async (_name, variant) => {
        const s = (stack = await startStack(binary, { extraBinds: false, ...variant.options }));
        const result = await load(s, VARIANT_REQUESTS);
        await expectCleanRun(s, result);
        const negotiated = new Set(s.agent.recorder.records.map((r) => [...r.capabilities].sort().join(',')));
        expect([...negotiated]).toEqual([[...variant.capabilities].sort().join(',')]);
        // HAProxy's <nb_errors> counter (see spoe.e2e-spec.ts): on 3.1+ one per ended stream whatever the exchange,
        // pipelined or not; 0 on 2.x. Every load request ended before this one.
        await streamsEnded(s);
        const from = s.haproxy.lines.length;
        expect(scored(await s.request('/', newRid()))).toBeUndefined();
        const last = await waitFor('the last SPOE log line', () => s.haproxy.spoeEvents(from)[0], 5000, 10);
        expect(last.st).toBe(0);
        expect(last.errors).toBe(spop ? VARIANT_REQUESTS : 0);
      },
      60_000,
    );
  });
});
