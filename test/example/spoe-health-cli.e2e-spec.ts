// The spoe-health CLI (libs/spoe/dist/cli/spoe-health.js, the package's `bin`), run as Docker would run it.
import { execFile } from 'node:child_process';
import { createServer, Server } from 'node:net';
import { join } from 'node:path';
import { makeTempDir } from '../support/cleanup';
import { freePort } from '../support/ports';
import { ensureBuilt, ExampleAgent, REPO_ROOT, startExampleAgent } from './support/example';

jest.setTimeout(120_000);

const CLI = join(REPO_ROOT, 'libs', 'spoe', 'dist', 'cli', 'spoe-health.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; a CLI still running after 20 s is killed (its code is then -1). */
function run(...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

describe('spoe-health CLI', () => {
  let agent: ExampleAgent;
  let socketAgent: ExampleAgent;
  let socketPath: string;

  beforeAll(async () => {
    ensureBuilt();
    agent = await startExampleAgent();
    socketPath = join(makeTempDir(), 'agent.sock');
    socketAgent = await startExampleAgent({ SPOE_SOCKET: socketPath });
  });
  afterAll(async () => {
    await agent?.close();
    await socketAgent?.close();
  });

  it('exits 0 and says so when the agent answers the health-check HELLO', async () => {
    const result = await run('--host', '127.0.0.1', '--port', String(agent.spoePort));
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(
      new RegExp(
        `^healthy: 127\\.0\\.0\\.1:${agent.spoePort} answered AGENT-HELLO in \\d+ ms \\(SPOP 2\\.0, max-frame-size 16380\\)\\n$`,
      ),
    );
  });

  it('reaches an agent on a Unix socket', async () => {
    const result = await run('--socket', socketPath);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`healthy: unix:${socketPath}`);
  });

  it('prints nothing with --quiet', async () => {
    expect(await run('--port', String(agent.spoePort), '--quiet')).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(await run('--port', String(await freePort(['127.0.0.1'])), '-q')).toMatchObject({
      code: 1,
      stdout: '',
      stderr: '',
    });
  });

  it('exits 1 when nothing listens', async () => {
    const port = await freePort(['127.0.0.1']);
    const result = await run('--port', String(port));
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`unhealthy: 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
  });

  describe('against a peer that is not a working agent', () => {
    let server: Server;
    let port: number;
    const sockets = new Set<import('node:net').Socket>();
    afterEach(
      () =>
        new Promise<void>((done) => {
          for (const s of sockets) s.destroy();
          server.close(() => done());
        }),
    );
    const listen = async (onConnection: (socket: import('node:net').Socket) => void): Promise<void> => {
      server = createServer((socket) => {
        sockets.add(socket);
        onConnection(socket);
      });
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
      port = (server.address() as import('node:net').AddressInfo).port;
    };

    it('exits 1 after --timeout when the peer never answers', async () => {
      await listen(() => undefined);
      const result = await run('--port', String(port), '--timeout', '300');
      expect(result.code).toBe(1);
      // Its own timeout ended it (the message says so), not the 20 s kill.
      expect(result.stderr).toContain('no AGENT-HELLO within 300 ms');
    });

    it('exits 1 when the peer closes without an AGENT-HELLO', async () => {
      await listen((socket) => socket.end());
      const result = await run('--port', String(port));
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^unhealthy: /);
    });
  });

  it.each([
    [['--port', 'http'], '--port must be an integer in [1, 65535], got "http"'],
    [['--port', '0'], '--port must be an integer in [1, 65535]'],
    [['--timeout=-5'], '--timeout must be a positive integer (ms), got "-5"'],
    [['--timeout', 'soon'], '--timeout must be a positive integer (ms), got "soon"'],
    [['--bogus'], /Unknown option '--bogus'/],
    [['localhost'], /Unexpected argument 'localhost'/],
    [['--socket', '/tmp/a.sock', '--port', '1'], '--socket cannot be combined with --host or --port'],
    [['--port'], /Option '--port[^']*' argument missing/],
  ])('exits 2 on bad usage %j, with the problem and the usage on stderr', async (args, problem) => {
    const result = await run(...args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    if (typeof problem === 'string') expect(result.stderr).toContain(problem);
    else expect(result.stderr).toMatch(problem);
    expect(result.stderr).toContain('Usage: spoe-health');
  });

  it('prints its usage with --help and exits 0', async () => {
    const result = await run('--help');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Exit status: 0 healthy, 1 unhealthy, 2 bad usage.');
  });

  it('loads no Nest package (a plain Node health probe)', async () => {
    const script = `require(${JSON.stringify(CLI)}); console.log(JSON.stringify(Object.keys(require.cache).filter((p) => p.includes('node_modules'))))`;
    const loaded = await new Promise<string[]>((done, fail) =>
      execFile(process.execPath, ['-e', script], (error, stdout) =>
        error ? fail(error) : done(JSON.parse(stdout) as string[]),
      ),
    );
    expect(loaded).toEqual([]);
  });

  it('is the package bin, compiled with its shebang', async () => {
    const pkg = (await import(join(REPO_ROOT, 'libs', 'spoe', 'package.json'))) as { bin: Record<string, string> };
    expect(pkg.bin).toEqual({ 'spoe-health': 'dist/cli/spoe-health.js' });
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });
});
