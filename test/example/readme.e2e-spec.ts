// The README's example-agent sections, run: every code block there is a file here (test/example/readme/*.ts,
// deploy/haproxy/*), marked in the README with `<!-- snippet: path -->`; this file runs those files and checks that the
// README still shows them verbatim. The configuration table is checked against AGENT_ENV. The `<!-- script -->` block
// (the TLS certificates) runs as a whole in a new directory, and what it makes serves the agent and HAProxy.
import { INestApplication, Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SpoeIp, SpoeServer } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { tryCommands } from '../../scripts/demo';
import { AGENT_ENV, loadAgentConfig } from '../../src/config/agent.config';
import { AppModule, bootstrap } from './readme/existing-app';
import { HealthModule } from './readme/health';
import { cleanupAll, makeTempDir } from '../support/cleanup';
import { OPENSSL } from '../support/certificates';
import { HaproxyBinary, haproxyVersion } from '../support/haproxy-binaries';
import { templatePlaceholders } from '../support/haproxy-config';
import { HaproxyProcess } from '../support/haproxy-process';
import { httpRequest } from '../support/http';
import { EchoedRequest, HttpBackend, startHttpBackend } from '../support/http-backend';
import { runLoad } from '../support/load';
import { freePort } from '../support/ports';
import { describeIf, itIf, Prerequisite } from '../support/prerequisites';
import { api, deployFile, ensureBuilt, ExampleAgent, REPO_ROOT, startExampleAgent } from './support/example';

jest.setTimeout(120_000);

/** README.md, or the file named by README_SNIPPETS (to check a draft before it is merged). */
const readmePath = process.env.README_SNIPPETS ?? join(REPO_ROOT, 'README.md');
const readme = existsSync(readmePath) ? readFileSync(readmePath, 'utf8') : '';
/** The README's `<!-- script -->` block: shell commands run one after the other in a new directory. */
const tlsScript = /<!-- script -->\s*```sh\n([\s\S]*?)```/.exec(readme)?.[1];
let tlsScriptDir: string | undefined;
/**
 * The directory where the README's certificate script ran (once per file): it makes `tls/` there, with the files that
 * the README's commands and HAProxy's `"${TLS_*}"` variables name.
 */
function readmeCertificates(): string {
  if (tlsScriptDir === undefined) {
    const dir = makeTempDir();
    execFileSync('sh', ['-e', '-c', tlsScript!], { cwd: dir, stdio: 'pipe', timeout: 60_000 });
    tlsScriptDir = dir;
  }
  return tlsScriptDir;
}

/** Marked blocks of the README, which the checks below need: a draft (README_SNIPPETS) may not have them yet. */
const readmeHas = (what: string, found: boolean): Prerequisite => ({
  name: `${what} in ${readmePath}`,
  missing: found ? undefined : 'there are none',
});

describe('README: adding SPOE to an existing Nest app (test/example/readme/existing-app.ts)', () => {
  let app: INestApplication;
  let spoePort: number;
  let httpPort: number;

  beforeAll(async () => {
    [spoePort, httpPort] = [await freePort(['127.0.0.1']), await freePort(['127.0.0.1'])];
    process.env.SPOE_PORT = String(spoePort);
    process.env.PORT = String(httpPort);
    Logger.overrideLogger(['error']);
    app = await bootstrap();
  });
  afterAll(async () => {
    await app?.close();
    delete process.env.SPOE_PORT;
    delete process.env.PORT;
  });

  it('answers check-client-ip over SPOP', async () => {
    const client = await SpoeClient.connect({ port: spoePort });
    expect((await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') }))[0]).toMatchObject({
      name: 'ip_score',
      value: 100,
    });
    expect((await client.notify('check-client-ip', { ip: SpoeIp.parse('::ffff:192.0.2.1') }))[0]).toMatchObject({
      name: 'ip_score',
      value: 0,
    });
    await client.close();
  });

  it('serves HTTP on the same app', async () => {
    expect((await httpRequest({ host: '127.0.0.1', port: httpPort, path: '/nothing-here' })).status).toBe(404);
  });
});

describe('README: health (test/example/readme/health.ts)', () => {
  /** The README's app (existing-app.ts) with HealthModule imported next to it, as the README says. */
  @Module({ imports: [AppModule, HealthModule] })
  class HealthAppModule {}

  /** That app, SPOE on a free port, HTTP on another; each test has its own. */
  async function startHealthApp(): Promise<{ app: INestApplication; url: string }> {
    process.env.SPOE_PORT = String(await freePort(['127.0.0.1']));
    try {
      const app = await NestFactory.create(HealthAppModule, { logger: ['error'] });
      app.connectMicroservice({ strategy: app.get(SpoeServer) }, { inheritAppConfig: true });
      await app.startAllMicroservices();
      await app.listen(0, '127.0.0.1');
      return { app, url: await app.getUrl() };
    } finally {
      delete process.env.SPOE_PORT;
    }
  }
  const apps: INestApplication[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });

  it('is live and ready, with the SPOE details and the probe', async () => {
    const { app, url } = await startHealthApp();
    apps.push(app);
    expect((await api(url, 'GET', '/health/live')).status).toBe(200);
    const { status, body } = await api<{ details: { spoe: Record<string, unknown> } }>(url, 'GET', '/health/ready');
    expect(status).toBe(200);
    expect(body.details.spoe).toMatchObject({
      status: 'up',
      listening: true,
      connections: 0,
      inFlight: 0,
      probe: { version: '2.0' },
    });
  });

  it('turns readiness 503 once the SPOE server is closed', async () => {
    const { app, url } = await startHealthApp();
    apps.push(app);
    await app.get(SpoeServer).close();
    const { status, body } = await api<{ error: { spoe: Record<string, unknown> } }>(url, 'GET', '/health/ready');
    expect(status).toBe(503);
    expect(body.error.spoe).toMatchObject({
      status: 'down',
      listening: false,
      message: 'the SPOE server is not listening',
    });
  });
});

let backend: HttpBackend | undefined;
afterAll(async () => {
  await backend?.close();
  await cleanupAll();
});
/** The address of an HTTP backend for HAProxy, started at the first call. */
async function backendAddr(): Promise<string> {
  backend ??= await startHttpBackend();
  return `127.0.0.1:${backend.port}`;
}

/**
 * Runs HAProxy `binary` with deploy/haproxy's `cfg` and `spoe` (AGENT_ADDR… in `vars`) in front of the agent: a clean
 * request is scored 0, one from 10.1.2.3 denied (403), and HAProxy reports no problem. The score is read where `cfg`
 * puts it: the response's X-IP-Score (the demo's configurations), or the request's, as the backend received it (the
 * standalone ones, which show clients nothing of the decision).
 */
async function expectScoresAndDenies(
  binary: HaproxyBinary,
  cfg: string,
  spoe: string,
  vars: Record<string, string>,
  scoreIn: 'response' | 'request' = 'response',
): Promise<void> {
  const port = await freePort(['127.0.0.1']);
  const template = deployFile(cfg);
  // The standalone configurations name their SPOE file as it is, beside them (`default-path config`).
  const spoeConf: Record<string, string> = templatePlaceholders(template).some((p) => p.name === 'SPOE_CONF')
    ? { SPOE_CONF: spoe }
    : {};
  const haproxy = await HaproxyProcess.start({
    binary,
    files: { 'haproxy.cfg': template, [spoe]: deployFile(spoe) },
    vars: { HAPROXY_BIND: `127.0.0.1:${port}`, BACKEND_ADDR: await backendAddr(), ...spoeConf, ...vars },
    waitForTcp: [{ host: '127.0.0.1', port }],
  });
  try {
    const clean = await httpRequest({ host: '127.0.0.1', port });
    const score =
      scoreIn === 'response'
        ? clean.headers['x-ip-score']
        : (JSON.parse(clean.body) as EchoedRequest).headers['x-ip-score'];
    expect([clean.status, score]).toEqual([200, '0']);
    expect((await httpRequest({ host: '127.0.0.1', port, headers: { 'x-forwarded-for': '10.1.2.3' } })).status).toBe(
      403,
    );
    expect(haproxy.unexpectedProblems()).toEqual([]);
  } finally {
    await haproxy.stop();
  }
}

/**
 * `haproxy -c` on deploy/haproxy's `cfg` copied as a user copies it: the file and `spoe` in a new directory, nothing
 * rendered, HAProxy started elsewhere and without any of the configuration's variables in its environment. Its exit
 * status, and the warnings and alerts it printed.
 */
function checkAsCopied(
  binary: HaproxyBinary,
  cfg: string,
  spoe: string,
): { status: number | null; problems: string[] } {
  const dir = makeTempDir();
  copyFileSync(join(REPO_ROOT, 'deploy', 'haproxy', cfg), join(dir, 'haproxy.cfg'));
  copyFileSync(join(REPO_ROOT, 'deploy', 'haproxy', spoe), join(dir, spoe));
  const env = { ...process.env };
  for (const { name } of templatePlaceholders(deployFile(cfg))) delete env[name];
  const result = spawnSync(binary.path, ['-c', '-f', join(dir, 'haproxy.cfg')], {
    cwd: makeTempDir(),
    env,
    encoding: 'utf8',
    timeout: 30_000,
  });
  const problems = `${result.stdout}${result.stderr}`.split('\n').filter((line) => /\[(ALERT|WARNING)\]/.test(line));
  return { status: result.status, problems };
}

/** deploy/haproxy's configuration for each HAProxy version: plain, and over mutual TLS (README: "TLS"). */
const haproxyCases = [
  // 2.x: SPOP over a `mode tcp` backend (still the way on 3.0).
  {
    versions: ['2.6', '3.0'],
    cfg: 'haproxy-2.x.cfg',
    tlsCfg: 'haproxy-2.x-tls.cfg',
    standaloneCfg: 'haproxy-2.x-standalone.cfg',
    spoe: 'spoe-2.x.conf',
  },
  // 3.1+: `mode spop` backend.
  {
    versions: ['3.2', '3.4'],
    cfg: 'haproxy.cfg',
    tlsCfg: 'haproxy-tls.cfg',
    standaloneCfg: 'haproxy-standalone.cfg',
    spoe: 'spoe.conf',
  },
].flatMap(({ versions, ...files }) =>
  versions.map((version) => ({ haproxy: haproxyVersion(version), version, ...files })),
);

describe('README: HAProxy configuration snippets (deploy/haproxy), with the example agent', () => {
  let agent: ExampleAgent;
  beforeAll(async () => {
    agent = await startExampleAgent();
  });
  afterAll(() => agent?.close());

  for (const {
    haproxy: { binary, prerequisite },
    version,
    cfg,
    spoe,
  } of haproxyCases) {
    itIf(prerequisite)(`${cfg} on HAProxy ${binary?.fullVersion ?? version}: scores and denies`, () =>
      expectScoresAndDenies(binary!, cfg, spoe, { AGENT_ADDR: `127.0.0.1:${agent.spoePort}` }),
    );
  }

  // The README's complete configurations, which users copy as they are.
  for (const {
    haproxy: { binary, prerequisite },
    version,
    standaloneCfg,
    spoe,
  } of haproxyCases) {
    itIf(prerequisite)(
      `${standaloneCfg} on HAProxy ${binary?.fullVersion ?? version}: passes haproxy -c as it is, scores and denies`,
      async () => {
        expect(checkAsCopied(binary!, standaloneCfg, spoe)).toEqual({ status: 0, problems: [] });
        await expectScoresAndDenies(
          binary!,
          standaloneCfg,
          spoe,
          { AGENT_ADDR: `127.0.0.1:${agent.spoePort}` },
          'request',
        );
      },
    );
  }

  // "Beyond one host": two agents stand for two hosts. Each has its own in-memory blocklist here, so which one answered
  // shows in the status: 198.51.100.7 is blocked on the second one only.
  const hosts32 = haproxyVersion('3.2');
  itIf(hosts32.prerequisite)(
    'haproxy-agent-hosts.cfg on HAProxy 3.2: NOTIFY balanced over both agent hosts',
    async () => {
      const second = await startExampleAgent();
      try {
        expect((await api(second.httpUrl, 'POST', '/blocklist', { cidr: '198.51.100.7' })).status).toBe(201);
        const port = await freePort(['127.0.0.1']);
        const vars = {
          HAPROXY_BIND: `127.0.0.1:${port}`,
          AGENT1_ADDR: `127.0.0.1:${agent.spoePort}`,
          AGENT2_ADDR: `127.0.0.1:${second.spoePort}`,
          BACKEND_ADDR: await backendAddr(),
          SPOE_CONF: 'spoe.conf',
        };
        const files = { 'haproxy.cfg': deployFile('haproxy-agent-hosts.cfg'), 'spoe.conf': deployFile('spoe.conf') };
        const haproxy = await HaproxyProcess.start({
          binary: hosts32.binary!,
          files,
          vars,
          waitForTcp: [{ host: '127.0.0.1', port }],
        });
        try {
          // Six requests, one after the other: HAProxy balances their SPOP streams over both agents.
          const load = await runLoad({
            total: 6,
            concurrency: 1,
            keepAlive: false,
            request: () => ({ host: '127.0.0.1', port, headers: { 'x-forwarded-for': '198.51.100.7' } }),
            check: () => undefined,
          });
          expect(load.failures).toEqual([]);
          expect(Object.keys(load.statuses).map(Number).sort()).toEqual([200, 403]);
          expect(
            (await httpRequest({ host: '127.0.0.1', port, headers: { 'x-forwarded-for': '10.1.2.3' } })).status,
          ).toBe(403);
          expect(haproxy.unexpectedProblems()).toEqual([]);
        } finally {
          await haproxy.stop();
        }
      } finally {
        await second.close();
      }
    },
  );
});

describeIf(OPENSSL)('README: TLS, with the certificates its script makes (<!-- script -->)', () => {
  let agent: ExampleAgent;
  let tls: string;
  beforeAll(async () => {
    tls = join(readmeCertificates(), 'tls');
    agent = await startExampleAgent({
      SPOE_TLS_CERT: join(tls, 'agent.pem'),
      SPOE_TLS_KEY: join(tls, 'agent.key'),
      SPOE_TLS_CA: join(tls, 'ca.pem'),
    });
  });
  afterAll(() => agent?.close());

  it("has the agent serve HAProxy's certificate (haproxy-client.pem) over mutual TLS for the name agent, and be ready", async () => {
    const haproxyPem = readFileSync(join(tls, 'haproxy-client.pem'));
    const client = await SpoeClient.connect({
      port: agent.spoePort,
      tls: { ca: readFileSync(join(tls, 'ca.pem')), cert: haproxyPem, key: haproxyPem, servername: 'agent' },
    });
    expect((await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') }))[0]).toMatchObject({
      name: 'ip_score',
      value: 100,
    });
    await client.close();
    // The readiness probe presents the agent's own certificate: clientAuth, signed by the CA.
    expect((await api(agent.httpUrl, 'GET', '/health/ready')).status).toBe(200);
  });

  for (const {
    haproxy: { binary, prerequisite },
    version,
    tlsCfg,
    spoe,
  } of haproxyCases) {
    itIf(prerequisite)(
      `${tlsCfg} on HAProxy ${binary?.fullVersion ?? version}: scores and denies over mutual TLS`,
      () =>
        expectScoresAndDenies(binary!, tlsCfg, spoe, {
          AGENT_ADDR: `127.0.0.1:${agent.spoePort}`,
          TLS_CA_FILE: join(tls, 'ca.pem'),
          TLS_CLIENT_CRT: join(tls, 'haproxy-client.pem'),
        }),
    );
  }
});

/** The `<!-- snippet: path -->` blocks of a README: the file they quote (from the repository root) and the block. */
function snippetBlocks(text: string): Array<{ path: string; block: string }> {
  return [...text.matchAll(/<!-- snippet: (\S+) -->\s*```\w*\n([\s\S]*?)```/g)].map((m) => ({
    path: m[1],
    block: m[2],
  }));
}

/** Whether the file at `path` shows `block` (trailing spaces and surrounding blank lines aside). */
function expectQuoted(path: string, block: string): void {
  const file = readFileSync(join(REPO_ROOT, path), 'utf8');
  const lines = (text: string): string =>
    text
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n')
      .trim();
  expect(lines(file)).toContain(lines(block));
}

/** The lines of a README's `<!-- install -->` block. */
const installLines = (text: string): string | undefined => /<!-- install -->\s*```sh\n([\s\S]*?)```/.exec(text)?.[1];

describe('README: the example sections show the tested files verbatim', () => {
  const marked = snippetBlocks(readme);
  itIf(readmeHas('<!-- snippet: path --> markers', marked.length > 0)).each(marked)('$path', ({ path, block }) =>
    expectQuoted(path, block),
  );

  // Shell blocks (`<!-- commands -->`): each line is one the tests run, or the script they run.
  const commands = [...readme.matchAll(/<!-- commands -->\s*```sh\n([\s\S]*?)```/g)]
    .flatMap((m) => m[1].split('\n'))
    .map((line) => line.replace(/\s{2,}#.*$/, '').trim())
    .filter((line) => line.length > 0);
  const scripts = (
    JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  ).scripts;
  const demoCommands = tryCommands('localhost:8080', 'localhost:3000').map(([command]) => command);
  itIf(readmeHas('<!-- commands --> blocks', commands.length > 0)).each(commands)('%s', (line) => {
    const env: Record<string, string> = {};
    let rest = line;
    for (let m = /^([A-Z_]+)=(\S*) /.exec(rest); m; m = /^([A-Z_]+)=(\S*) /.exec(rest)) {
      env[m[1]] = m[2];
      rest = rest.slice(m[0].length);
    }
    for (const name of Object.keys(env)) expect(Object.keys(AGENT_ENV)).toContain(name);
    // TLS files are where the README's certificate script makes them.
    for (const name of ['SPOE_TLS_CERT', 'SPOE_TLS_KEY', 'SPOE_TLS_CA'])
      if (env[name] !== undefined) env[name] = join(readmeCertificates(), env[name]);
    expect(() => loadAgentConfig(env)).not.toThrow();
    if (rest === 'npm install') return;
    if (rest === 'npm install && npm start') return expect(scripts.start).toContain('scripts/demo.ts'); // demo.e2e-spec
    if (rest === 'npm install && npm test')
      return expect(readFileSync(join(REPO_ROOT, '.ci/run'), 'utf8')).toContain('npm install && npm test'); // CI runs it
    if (rest === 'npm run bench') return expect(scripts.bench).toMatch(/bench/); // not a test: a measurement
    if (rest === 'npm start')
      return expect(scripts.start).toBe('npm run build && node -r @swc-node/register scripts/demo.ts'); // demo.e2e-spec
    if (rest === 'npm run start:agent')
      return expect(scripts['start:agent']).toBe('npm run build && node dist/main.js'); // agent-process.e2e-spec
    if (rest === 'docker compose up --build')
      return expect(existsSync(join(REPO_ROOT, 'docker-compose.yml'))).toBe(true); // deploy.e2e-spec
    if (rest.startsWith('curl ')) return expect(demoCommands).toContain(rest); // printed by the demo, run by demo.e2e-spec
    if (rest.startsWith('node libs/spoe/dist/cli/spoe-health.js ')) {
      ensureBuilt();
      // Healthy (0) or not (1) depending on what listens here; never a usage error (2).
      let code = 0;
      try {
        execFileSync('sh', ['-c', rest], { cwd: REPO_ROOT, stdio: 'ignore' });
      } catch (error) {
        code = (error as { status: number }).status;
      }
      return expect([0, 1]).toContain(code);
    }
    throw new Error(`no test covers the README command: ${line}`);
  });

  itIf(OPENSSL, readmeHas('the <!-- script --> block', tlsScript !== undefined))(
    'the <!-- script --> block makes the TLS files the README names',
    () => {
      const tls = join(readmeCertificates(), 'tls');
      for (const file of ['ca.pem', 'agent.pem', 'agent.key', 'haproxy.pem', 'haproxy.key', 'haproxy-client.pem'])
        expect(existsSync(join(tls, file))).toBe(true);
    },
  );

  itIf(readmeHas('the <!-- example:configuration --> table', readme.includes('<!-- example:configuration -->')))(
    'documents every variable of AGENT_ENV with its default',
    () => {
      for (const [name, spec] of Object.entries(AGENT_ENV)) {
        const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\` |`));
        expect(row).toBeDefined();
        expect(row).toContain(spec.default === undefined ? '| — |' : `| \`${spec.default}\` |`);
      }
    },
  );
});

// The package's README (what npm shows): its snippets are the same tested files, its install line is the repository
// README's (which test/consumer runs), and its links into the repository README land on sections that exist.
describe('the package README (libs/spoe/README.md)', () => {
  const packageReadme = readFileSync(join(REPO_ROOT, 'libs', 'spoe', 'README.md'), 'utf8');

  it.each(snippetBlocks(packageReadme))('shows $path verbatim', ({ path, block }) => expectQuoted(path, block));

  it("has the repository README's install line", () => {
    expect(installLines(packageReadme)).toBeDefined();
    expect(installLines(packageReadme)).toBe(installLines(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')));
  });

  it('links to sections of the repository README that exist', () => {
    const headings = new Set(
      [...readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').matchAll(/^#+ (.+)$/gm)].map((m) =>
        // GitHub's anchors: lower case, punctuation but hyphens and underscores dropped, spaces as hyphens.
        m[1]
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    const anchors = [...packageReadme.matchAll(/\]\(\.\.\/\.\.\/README\.md#([^)]+)\)/g)].map((m) => m[1]);
    expect(anchors.length).toBeGreaterThan(0);
    expect(anchors.filter((anchor) => !headings.has(anchor))).toEqual([]);
  });
});
