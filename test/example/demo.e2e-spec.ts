// `npm start`, run for real: it builds, then scripts/demo.ts starts HAProxy 3.2, the agent and a backend on free ports;
// the commands it prints work; Ctrl-C (SIGINT to its process group, as a terminal sends it) stops everything.
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { haproxyVersion } from '../support/haproxy-binaries';
import { httpRequest } from '../support/http';
import { commandPrerequisite, describeIf, itIf } from '../support/prerequisites';
import { waitFor } from '../support/wait';
import { ensureBuilt, REPO_ROOT } from './support/example';

jest.setTimeout(180_000);

// The demo runs HAProxy 3.2 (provisioned, or HAPROXY_BIN when it is 3.2) and prints curl commands to try.
const haproxy32 = haproxyVersion('3.2').prerequisite;
const curl = commandPrerequisite('curl', ['curl', '--version'], 'apt-get install curl');

const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const accepts = (port: number): Promise<boolean> =>
  new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
const sh = (command: string): Promise<string> =>
  new Promise((done, fail) =>
    execFile('sh', ['-c', command], { timeout: 10_000 }, (error, stdout) => (error ? fail(error) : done(stdout))),
  );

/** A running `npm start`: its output, the ports and pids it printed, and the curl commands it suggests. */
interface Demo {
  readonly process: ChildProcess;
  readonly output: () => string;
  /** Resolves when every process of the demo closed its output: npm, the launcher and what it started. */
  readonly finished: Promise<void>;
  readonly ports: { haproxy: number; spoe: number; http: number; backend: number };
  readonly pids: { haproxy: number; agent: number };
  readonly tries: string[];
}

async function startDemo(): Promise<Demo> {
  // Build first under the shared lock (other test files may be building); `npm start` then finds it up to date.
  ensureBuilt();
  // In its own process group, as a terminal runs a command, so that Ctrl-C can go to the whole group.
  const demo = spawn('npm', ['start'], { cwd: REPO_ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  demo.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  demo.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const finished = Promise.all([
    new Promise((done) => demo.stdout!.once('close', done)),
    new Promise((done) => demo.stderr!.once('close', done)),
  ]).then(() => undefined);
  let gone = false;
  void finished.then(() => (gone = true));
  await waitFor(
    'the demo to print what to try',
    () => {
      if (gone) throw new Error(`the demo exited:\n${output}`);
      return output.includes('Ctrl-C stops everything.');
    },
    120_000,
    100,
  );
  const match = (pattern: RegExp): RegExpExecArray => {
    const m = pattern.exec(output);
    if (!m) throw new Error(`no ${pattern} in the demo output:\n${output}`);
    return m;
  };
  const [, haproxy, haproxyPid] = match(/^ {2}HAProxy 3\.2 +http:\/\/localhost:(\d+) +pid (\d+)/m).map(Number);
  const [, spoe, agentPid] = match(/^ {2}agent SPOE +127\.0\.0\.1:(\d+) +pid (\d+)/m).map(Number);
  return {
    process: demo,
    output: () => output,
    finished,
    ports: {
      haproxy,
      spoe,
      http: Number(match(/^ {2}agent HTTP +http:\/\/localhost:(\d+)/m)[1]),
      backend: Number(match(/^ {2}backend +http:\/\/127\.0\.0\.1:(\d+)/m)[1]),
    },
    pids: { haproxy: haproxyPid, agent: agentPid },
    tries: output
      .slice(output.indexOf('Try:\n'))
      .split('\n')
      .filter((line) => line.startsWith('  curl '))
      .map((line) => line.trim()),
  };
}

/** Kills what is left of a demo (after a test that failed before Ctrl-C ended it). */
async function killDemo(demo: Demo | undefined): Promise<void> {
  if (!demo) return;
  try {
    process.kill(-demo.process.pid!, 'SIGKILL');
  } catch {
    // The whole process group has exited already.
  }
  await demo.finished;
  for (const pid of Object.values(demo.pids)) if (pid && isRunning(pid)) process.kill(pid, 'SIGKILL');
}

// Each test stands alone: those that change the blocklist undo it, and Ctrl-C has a demo of its own.
describeIf(haproxy32)('npm start (scripts/demo.ts)', () => {
  let demo: Demo;
  let wasFree8080 = false;

  beforeAll(async () => {
    wasFree8080 = !(await accepts(8080));
    demo = await startDemo();
  });
  afterAll(() => killDemo(demo));

  it('starts HAProxy 3.2, the agent and a backend on local ports (HAProxy on 8080 when it is free)', async () => {
    const { ports, pids } = demo;
    if (wasFree8080) expect(ports.haproxy).toBe(8080);
    expect(Object.values(ports).every((p) => p > 0)).toBe(true);
    expect(new Set(Object.values(ports)).size).toBe(4);
    for (const port of Object.values(ports)) expect(await accepts(port)).toBe(true);
    expect(isRunning(pids.haproxy) && isRunning(pids.agent)).toBe(true);
  });

  it('scores a request through HAProxy: 200 with X-IP-Score: 0, the backend answering', async () => {
    const response = await httpRequest({ host: '127.0.0.1', port: demo.ports.haproxy, path: '/' });
    expect(response.status).toBe(200);
    expect(response.headers['x-ip-score']).toBe('0');
    expect(response.body).toBe('Hello from the demo backend. X-IP-Score seen here: 0\n');
  });

  it('denies X-Forwarded-For: 10.1.2.3 with 403', async () => {
    expect(
      (
        await httpRequest({
          host: '127.0.0.1',
          port: demo.ports.haproxy,
          path: '/',
          headers: { 'x-forwarded-for': '10.1.2.3' },
        })
      ).status,
    ).toBe(403);
  });

  itIf(curl)('prints curl commands that do what their comments say', async () => {
    expect(demo.tries).toHaveLength(7);
    const [clean, forwarded, list, block, blocked, unblock, ready] = demo.tries;
    expect(await sh(clean)).toMatch(/^HTTP\/1\.1 200 [\s\S]*x-ip-score: 0\r\n/im);
    expect(await sh(forwarded)).toMatch(/^HTTP\/1\.1 403 /);
    expect(JSON.parse(await sh(list))).toEqual([expect.objectContaining({ cidr: '10.0.0.0/8' })]);
    expect(JSON.parse(await sh(block))).toMatchObject({ cidr: '127.0.0.1/32', expiresAt: expect.any(String) });
    expect(await sh(blocked)).toMatch(/^HTTP\/1\.1 403 /);
    expect(await sh(unblock)).toMatch(/^HTTP\/1\.1 204 /);
    expect(await sh(clean)).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(await sh(ready))).toMatchObject({
      status: 'ok',
      details: { spoe: { status: 'up', listening: true } },
    });
  });

  it('denies the next request once 127.0.0.1/32 is added through the admin API', async () => {
    const admin = { host: '127.0.0.1', port: demo.ports.http };
    const post = await httpRequest({
      ...admin,
      path: '/blocklist',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cidr: '127.0.0.1/32' }),
    });
    expect(post.status).toBe(201);
    try {
      expect((await httpRequest({ host: '127.0.0.1', port: demo.ports.haproxy, path: '/' })).status).toBe(403);
    } finally {
      await httpRequest({ ...admin, path: '/blocklist?cidr=127.0.0.1/32', method: 'DELETE' });
    }
  });
});

describeIf(haproxy32)('npm start, then Ctrl-C', () => {
  let demo: Demo | undefined;
  afterAll(() => killDemo(demo));

  it('stops everything it started (SIGINT to the process group)', async () => {
    demo = await startDemo();
    process.kill(-demo.process.pid!, 'SIGINT');
    await demo.finished;
    expect(demo.output()).toContain('stopping…\n');
    expect(demo.output()).toContain('stopped: HAProxy, agent and backend\n');
    expect(demo.output()).not.toMatch(/exited unexpectedly|demo failed/);
    expect([isRunning(demo.pids.haproxy), isRunning(demo.pids.agent)]).toEqual([false, false]);
    for (const port of Object.values(demo.ports)) expect(await accepts(port)).toBe(false);
  });
});
