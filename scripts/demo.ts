// `npm start`: the one-command demo. Starts, on free local ports, the example agent (dist/main.js, built by
// `npm start`), a tiny HTTP backend (in this process) and a real HAProxy 3.2 (scripts/provision-haproxy.sh) configured
// with deploy/haproxy/haproxy.cfg + spoe.conf; prints what to try; Ctrl-C stops everything it started.
// No Docker, no Redis (REDIS_URL is passed on when set). HAPROXY_BIN overrides the HAProxy binary.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer as createHttpServer, get, Server } from 'node:http';
import { AddressInfo, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = resolve(__dirname, '..');
const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
}

const children: Child[] = [];
let backend: Server | undefined;
let stopping: Promise<void> | undefined;

async function main(): Promise<void> {
  const agentEntry = join(ROOT, 'dist', 'main.js');
  if (!existsSync(agentEntry))
    throw new Error('dist/main.js is missing: run `npm start` (it builds first) or `npm run build`');
  const haproxyBin = process.env.HAPROXY_BIN || provisionHaproxy('3.2');

  const ports = {
    haproxy: await pickPort(8080),
    http: await pickPort(3000),
    spoe: await pickPort(12345),
  };
  backend = await startBackend();
  const backendPort = (backend.address() as AddressInfo).port;

  const agent = start('agent', process.execPath, [agentEntry], {
    SPOE_HOST: HOST,
    SPOE_PORT: String(ports.spoe),
    HTTP_HOST: HOST,
    HTTP_PORT: String(ports.http),
    SHUTDOWN_GRACE_MS: '0',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'log',
    // Its HTTP side is on loopback, where the admin API needs no token: the curl commands below send none, whatever
    // ADMIN_TOKEN the shell has (e.g. exported for docker compose).
    ADMIN_TOKEN: '',
  });
  await waitUntil('the agent to be ready', async () => (await httpGet(ports.http, '/health/ready')).status === 200);

  const haproxy = start('haproxy', haproxyBin, ['-db', '-f', join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg')], {
    HAPROXY_BIND: `${HOST}:${ports.haproxy}`,
    AGENT_ADDR: `${HOST}:${ports.spoe}`,
    BACKEND_ADDR: `${HOST}:${backendPort}`,
    SPOE_CONF: join(ROOT, 'deploy', 'haproxy', 'spoe.conf'),
  });
  await waitUntil(
    'HAProxy to score requests',
    async () => (await httpGet(ports.haproxy, '/')).headers['x-ip-score'] === '0',
  );

  const admin = `localhost:${ports.http}`;
  const web = `localhost:${ports.haproxy}`;
  print(`
nestjs-spoe demo is running:
  HAProxy 3.2   http://${web}   pid ${haproxy.process.pid}   (SPOE filter -> agent, then the backend)
  agent SPOE    ${HOST}:${ports.spoe}   pid ${agent.process.pid}
  agent HTTP    http://${admin}   (health, blocklist admin API)
  backend       http://${HOST}:${backendPort}   (in this process)

Try:
${tryCommands(web, admin)
  .map(([command, comment]) => `  ${comment ? `${command.padEnd(54)}  # ${comment}` : command}`)
  .join('\n')}

Ctrl-C stops everything.
`);
}

/** What the demo suggests trying (command, comment), for HAProxy at `web` and the agent's HTTP side at `admin`. */
export function tryCommands(web: string, admin: string): Array<[command: string, comment?: string]> {
  return [
    [`curl -i ${web}/`, '200, X-IP-Score: 0'],
    [`curl -i -H 'X-Forwarded-For: 10.1.2.3' ${web}/`, '403: 10.0.0.0/8 is on the blocklist'],
    [`curl -s ${admin}/blocklist`, 'the blocklist'],
    [
      `curl -s -X POST ${admin}/blocklist -H 'content-type: application/json' -d '{"cidr":"127.0.0.1/32","ttlSeconds":300}'`,
    ],
    [`curl -i ${web}/`, '403 now: 127.0.0.1 is blocked (for 5 minutes)'],
    [`curl -i -X DELETE '${admin}/blocklist?cidr=127.0.0.1/32'`, '204: unblocked'],
    [`curl -s ${admin}/health/ready`, 'readiness, with the SPOE health-check HELLO'],
  ];
}

function provisionHaproxy(version: string): string {
  print(`provisioning HAProxy ${version} (cached after the first run)…`);
  return execFileSync('bash', [join(ROOT, 'scripts', 'provision-haproxy.sh'), '--print-path', version], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

/** `preferred` when it is free on 127.0.0.1, else a free port the system picks. */
async function pickPort(preferred: number): Promise<number> {
  const tryListen = (port: number): Promise<number | undefined> =>
    new Promise((done) => {
      const server = createServer();
      server.once('error', () => done(undefined));
      server.listen({ host: HOST, port, exclusive: true }, () => {
        const bound = (server.address() as AddressInfo).port;
        server.close(() => done(bound));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0))!;
}

/** The demo backend: says hello and shows the score HAProxy forwarded. */
async function startBackend(): Promise<Server> {
  const server = createHttpServer((req, res) => {
    const body = `Hello from the demo backend. X-IP-Score seen here: ${req.headers['x-ip-score'] ?? '(none)'}\n`;
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(0, HOST, () => done());
  });
  return server;
}

function start(name: string, command: string, args: string[], env: Record<string, string>): Child {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = `[${name}] `;
  for (const stream of [child.stdout, child.stderr])
    createInterface({ input: stream! }).on('line', (line) => print(prefix + line));
  const exited = new Promise<number | null>((done) => {
    child.once('error', (error) => {
      print(`${prefix}could not start: ${error.message}`);
      done(null);
    });
    child.once('exit', (code, signal) => {
      // SIGINT is Ctrl-C reaching the whole process group: the demo stops too, normally.
      if (!stopping && signal !== 'SIGINT') {
        print(`${prefix}exited unexpectedly (${signal ?? `code ${code}`}): stopping the demo`);
        void stop(1);
      }
      done(code);
    });
  });
  const entry = { name, process: child, exited };
  children.push(entry);
  return entry;
}

function stop(exitCode: number): Promise<void> {
  return (stopping ??= (async () => {
    print('stopping…');
    await Promise.all(
      children.map(async (child) => {
        if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGTERM');
        const timer = setTimeout(() => child.process.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await child.exited;
        clearTimeout(timer);
      }),
    );
    await new Promise<void>((done) => (backend ? backend.close(() => done()) : done()));
    backend?.closeAllConnections();
    print('stopped: HAProxy, agent and backend');
    process.exit(exitCode);
  })());
}

function httpGet(
  port: number,
  path: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((done, fail) => {
    const req = get({ host: HOST, port, path, agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
  });
}

async function waitUntil(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (stopping) throw new Error(`stopped while waiting for ${what}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

if (require.main === module) {
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  // Last resort when the demo itself dies: leave nothing running.
  process.on('exit', () => {
    for (const child of children)
      if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
  });
  main().catch((error: Error) => {
    print(`demo failed: ${error.message}`);
    void stop(1);
  });
}
