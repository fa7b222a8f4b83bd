/**
 * `option spop-check` against the agent, on every HAProxy version: the check sends a HAPROXY-HELLO with
 * healthcheck=true; the agent answers AGENT-HELLO and closes (no AGENT-DISCONNECT, which 3.2+ would count as a failed
 * check). The server must be UP while the agent runs, DOWN once it is closed, and UP again — with requests scored
 * again — when a new agent listens on the same port.
 */
import { cleanupAll } from '../support/cleanup';
import { serverStatus, showServersState, waitForServerStatus } from '../support/haproxy-admin';
import { describeEachHaproxy, HaproxyBinary, isSpopMux } from '../support/haproxy-binaries';
import { waitFor } from '../support/wait';
import { newRid, Stack, startStack, waitForL7Ok } from './agent-app';

afterAll(() => cleanupAll());

describeEachHaproxy('spop-check health checks', (binary: HaproxyBinary) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(binary, { healthCheck: true, extraBinds: false });
  }, 30_000);
  afterAll(() => stack?.close());

  it('is UP, DOWN when the agent stops, UP again when it restarts on the same port', async () => {
    // UP (check inter 200ms, rise 1 fall 1)
    await waitForL7Ok(stack);
    const [state] = await showServersState(stack.statsSocket, 'agents');
    expect(state).toMatchObject({ backend: 'agents', server: 'a1', opState: 2 });
    const before = await stack.request('/', newRid());
    expect(before.headers['x-ip-score']).toBe('5');
    expect(before.headers['x-spoe-error']).toBeUndefined();

    // DOWN
    await stack.stopAgent();
    await waitForServerStatus(stack.statsSocket, 'agents', 'a1', 'DOWN', 5000);
    expect((await showServersState(stack.statsSocket, 'agents'))[0].opState).toBe(0);
    const from = stack.haproxy.lines.length;
    const during = await stack.request('/', newRid());
    // SPOE errors do not block the request: it is served, unscored, with HAProxy's set-on-error variable.
    expect(during.status).toBe(200);
    expect(during.headers['x-ip-score']).toBeUndefined();
    expect(during.headers['x-spoe-error']).toBeDefined();
    // No server to connect to: 2.x logs status 2 (resource allocation), 3.1+ 257 (256 + SPOP I/O error 1).
    const failed = await waitFor(
      'the SPOE log line of the unscored request',
      () => stack.haproxy.spoeEvents(from)[0],
      5000,
      10,
    );
    expect(failed.st).toBe(isSpopMux(binary.version) ? 257 : 2);

    // UP again, and scored again
    const connectionsBefore = stack.agent.recorder.connections;
    await stack.startAgent();
    await waitForServerStatus(stack.statsSocket, 'agents', 'a1', 'UP', 5000);
    await waitForL7Ok(stack);
    const after = await waitFor(
      'a scored request after the restart',
      async () => {
        const res = await stack.request('/', newRid());
        return res.headers['x-ip-score'] === '5' ? res : undefined;
      },
      5000,
      100,
    );
    expect(after.status).toBe(200);
    expect(after.headers['x-spoe-error']).toBeUndefined();
    expect(stack.agent.recorder.connections).toBeGreaterThan(connectionsBefore);
    expect(await serverStatus(stack.statsSocket, 'agents', 'a1')).toBe('UP');
  }, 30_000);
});
