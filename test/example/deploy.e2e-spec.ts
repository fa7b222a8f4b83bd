// docker-compose.yml, the Dockerfile and deploy/haproxy kept consistent without Docker: the compose file parses and
// wires the services as documented, the HAProxy configuration it mounts passes `haproxy -c` with the real 3.2 binary,
// and its defaults point at the compose services; the Dockerfile's HEALTHCHECK, which compose repeats, runs healthy
// against the agent in plain TCP, TLS and mutual TLS. `docker compose config` runs too when the CLI has compose. The
// Prometheus and Grafana beside them: the scrape reaches the agent's /metrics, Grafana's provisioning loads the
// dashboard with the datasource its panels name, and every series the dashboard queries is one the example agent
// really exposes after SPOP traffic.
import { Logger } from '@nestjs/common';
import { SpoeIp } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { AGENT_ENV, loadAgentConfig } from '../../src/config/agent.config';
import { makeTestPki, OPENSSL } from '../support/certificates';
import { makeTempDir } from '../support/cleanup';
import { haproxyVersion } from '../support/haproxy-binaries';
import { templatePlaceholders } from '../support/haproxy-config';
import { describeIf, itIf, Prerequisite } from '../support/prerequisites';
import { sample, scrape } from '../support/prometheus';
import { RawPeer } from '../support/raw-peer';
import { ensureBuilt, ExampleAgent, REPO_ROOT, startExampleAgent } from './support/example';

jest.setTimeout(120_000);

interface ComposeService {
  image?: string;
  build?: string;
  ports?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[]; interval: string; timeout: string; retries: number; start_period?: string };
  stop_grace_period?: string;
  command?: string[];
}

const compose = parse(readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, ComposeService>;
};
const { haproxy, agent, redis, backend, prometheus, grafana } = compose.services;
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
/** The command of the Dockerfile's HEALTHCHECK (shell form), its continued lines joined. */
const healthcheckCommand = /^HEALTHCHECK [^\n]*\\\n\s+CMD ((?:[^\n]*\\\n)*[^\n]*)$/m
  .exec(dockerfile)![1]
  .replace(/\s*\\\n\s*/g, ' ');
const haproxyCfg = readFileSync(join(REPO_ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), 'utf8');
/** The defaults of the `"${NAME-default}"` references of haproxy.cfg, by name. */
const cfgDefaults = Object.fromEntries(templatePlaceholders(haproxyCfg).map((p) => [p.name, p.fallback]));

/**
 * The agent's environment as compose hands it to the container, given the shell's `shell`: its `${NAME:-default}`
 * references resolved.
 */
function agentEnvironment(shell: Record<string, string> = {}): Record<string, string> {
  return Object.fromEntries(
    Object.entries(agent.environment!).map(([name, value]) => [
      name,
      value.replace(
        /\$\{(\w+):-([^}]*)\}/g,
        (_reference, variable: string, fallback: string) => shell[variable] || fallback,
      ),
    ]),
  );
}

describe('docker-compose.yml', () => {
  it('has the six services: haproxy, agent, redis, backend, prometheus, grafana', () => {
    expect(Object.keys(compose.services).sort()).toEqual([
      'agent',
      'backend',
      'grafana',
      'haproxy',
      'prometheus',
      'redis',
    ]);
    expect(haproxy.image).toBe('haproxy:3.2');
    expect(agent.build).toBe('.');
    expect(redis.image).toMatch(/^redis:/);
    expect(backend.image).toBe('traefik/whoami');
    expect(prometheus.image).toMatch(/^prom\/prometheus(:|$)/);
    expect(grafana.image).toMatch(/^grafana\/grafana(:|$)/);
  });

  it('mounts deploy/haproxy where the official image reads its configuration, and publishes 8080', () => {
    expect(haproxy.volumes).toEqual(['./deploy/haproxy:/usr/local/etc/haproxy:ro']);
    expect(haproxy.ports).toEqual(['8080:8080']);
    expect(cfgDefaults.HAPROXY_BIND).toBe(':8080');
    expect(cfgDefaults.SPOE_CONF).toBe('/usr/local/etc/haproxy/spoe.conf');
    expect(existsSync(join(REPO_ROOT, 'deploy', 'haproxy', 'spoe.conf'))).toBe(true);
  });

  it("points HAProxy's default addresses at the agent's SPOE port and the backend's port", () => {
    expect(cfgDefaults.AGENT_ADDR).toBe(`agent:${agent.environment!.SPOE_PORT}`);
    expect(cfgDefaults.BACKEND_ADDR).toBe('backend:80');
  });

  it('starts HAProxy once the agent is healthy, and the agent once Redis is', () => {
    expect(haproxy.depends_on).toMatchObject({
      agent: { condition: 'service_healthy' },
      backend: { condition: 'service_started' },
    });
    expect(agent.depends_on).toEqual({ redis: { condition: 'service_healthy' } });
  });

  it("checks the agent with the Dockerfile's spoe-health command (its own SPOE port), and Redis with redis-cli ping", () => {
    const [form, command] = agent.healthcheck!.test;
    expect(form).toBe('CMD-SHELL');
    // `$$` is compose's escape of a `$` meant for the container's shell.
    expect(command.replaceAll('$$', '$')).toBe(healthcheckCommand);
    expect(healthcheckCommand).toContain('--port "${SPOE_PORT}"');
    expect(agent.environment!.SPOE_PORT).toBe('12345');
    expect(redis.healthcheck!.test).toEqual(['CMD', 'redis-cli', 'ping']);
  });

  it('configures the agent only with variables it knows, valid ones, sharing the blocklist through the redis service', () => {
    for (const name of Object.keys(agent.environment!)) expect(Object.keys(AGENT_ENV)).toContain(name);
    expect(loadAgentConfig(agentEnvironment()).redis).toEqual({ url: 'redis://redis:6379', minReplicas: 0 });
    expect(agent.environment!.REDIS_URL).toBe('redis://redis:6379');
    expect(agent.ports).toEqual([`127.0.0.1:${agent.environment!.HTTP_PORT}:${agent.environment!.HTTP_PORT}`]);
  });

  it("passes ADMIN_TOKEN on from the shell: unset there, the agent's admin API answers only its own loopback", () => {
    expect(agent.environment!.ADMIN_TOKEN).toBe('${ADMIN_TOKEN:-}');
    expect(loadAgentConfig(agentEnvironment()).adminToken).toBeUndefined();
    const token = '0123456789abcdef0123456789abcdef';
    expect(loadAgentConfig(agentEnvironment({ ADMIN_TOKEN: token })).adminToken).toBe(token);
  });

  it('leaves the agent time to finish its grace period and drain before SIGKILL', () => {
    const seconds = Number(/^(\d+)s$/.exec(agent.stop_grace_period!)![1]);
    const graceMs = Number(agent.environment!.SHUTDOWN_GRACE_MS);
    expect(seconds * 1000).toBeGreaterThan(graceMs + Number(AGENT_ENV.SPOE_DRAIN_TIMEOUT_MS.default));
  });

  // Compose validates without a Docker engine: the `docker compose` plugin, or the standalone docker-compose (which
  // scripts/test.sh installs when neither is there).
  const composeCli = [['docker', 'compose'], ['docker-compose']].find(
    ([command, ...args]) => spawnSync(command, [...args, 'version'], { stdio: 'ignore' }).status === 0,
  );
  const composeCliPrerequisite: Prerequisite = {
    name: 'the docker compose CLI',
    missing: composeCli
      ? undefined
      : 'neither `docker compose version` nor `docker-compose version` runs here (apt-get install docker-compose)',
  };
  itIf(composeCliPrerequisite)('is accepted by `docker compose config`', () => {
    const [command, ...args] = composeCli!;
    execFileSync(command, [...args, '-f', join(REPO_ROOT, 'docker-compose.yml'), 'config', '--quiet'], {
      cwd: REPO_ROOT,
      stdio: 'pipe',
    });
  });
});

interface PrometheusConfig {
  global?: { scrape_interval?: string };
  scrape_configs: Array<{
    job_name: string;
    metrics_path?: string;
    scrape_interval?: string;
    static_configs: Array<{ targets: string[] }>;
  }>;
}
interface GrafanaDatasources {
  datasources: Array<{ name: string; type: string; uid: string; url: string }>;
}
interface GrafanaDashboardProviders {
  providers: Array<{ name: string; type: string; options: { path: string } }>;
}
interface DashboardDatasource {
  type?: string;
  uid?: string;
}
interface DashboardPanel {
  id: number;
  type: string;
  title?: string;
  datasource?: DashboardDatasource;
  targets?: Array<{ refId: string; expr?: string; datasource?: DashboardDatasource }>;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: DashboardPanel[];
}

const readDeployYaml = <T>(...path: string[]): T =>
  parse(readFileSync(join(REPO_ROOT, 'deploy', ...path), 'utf8')) as T;
const DASHBOARD_FILE = join(REPO_ROOT, 'deploy', 'grafana', 'dashboards', 'nestjs-spoe.json');

/** Where a service mounts a folder of the repository (`./folder:/in/the/container[:ro]`), if it does. */
function mountOf(service: ComposeService, folder: string): string | undefined {
  for (const volume of service.volumes ?? []) {
    const [source, target] = volume.split(':');
    if (source === `./${folder}`) return target;
  }
  return undefined;
}

describe('deploy/prometheus and deploy/grafana, as docker-compose.yml runs them', () => {
  it("mounts deploy/prometheus where the image reads prometheus.yml, which scrapes the agent's HTTP port at /metrics", () => {
    expect(prometheus.volumes).toEqual(['./deploy/prometheus:/etc/prometheus:ro']);
    expect(prometheus.ports).toEqual(['127.0.0.1:9090:9090']);
    expect(Object.keys(prometheus.depends_on!)).toEqual(['agent']);
    const config = readDeployYaml<PrometheusConfig>('prometheus', 'prometheus.yml');
    const target = `agent:${agent.environment!.HTTP_PORT}`;
    const jobs = config.scrape_configs.filter((job) => job.static_configs.some((c) => c.targets.includes(target)));
    expect(jobs).toHaveLength(1);
    expect(jobs[0].metrics_path).toBe('/metrics');
    expect(jobs[0].scrape_interval ?? config.global?.scrape_interval).toBe('5s');
  });

  it('provisions Grafana with the prometheus service as the datasource every panel names, and the dashboards mounted', () => {
    expect(grafana.ports).toEqual(['127.0.0.1:3001:3000']);
    expect(grafana.environment).toMatchObject({
      GF_AUTH_ANONYMOUS_ENABLED: 'true',
      GF_AUTH_ANONYMOUS_ORG_ROLE: 'Viewer',
    });
    expect(Object.keys(grafana.depends_on!)).toEqual(['prometheus']);
    expect(mountOf(grafana, 'deploy/grafana/provisioning')).toBe('/etc/grafana/provisioning');
    const dashboardsMount = mountOf(grafana, 'deploy/grafana/dashboards');
    expect(dashboardsMount).toBe('/var/lib/grafana/dashboards');
    const home = grafana.environment!.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    if (home !== undefined) expect(home).toBe(`${dashboardsMount}/nestjs-spoe.json`);

    // The datasource is the prometheus service, at the port its container listens on.
    const { datasources } = readDeployYaml<GrafanaDatasources>(
      'grafana',
      'provisioning',
      'datasources',
      'prometheus.yml',
    );
    const prometheusPort = prometheus.ports![0].split(':').pop();
    expect(datasources).toEqual([
      expect.objectContaining({ type: 'prometheus', uid: 'prometheus', url: `http://prometheus:${prometheusPort}` }),
    ]);
    const { providers } = readDeployYaml<GrafanaDashboardProviders>(
      'grafana',
      'provisioning',
      'dashboards',
      'dashboards.yml',
    );
    expect(providers).toEqual([expect.objectContaining({ type: 'file', options: { path: dashboardsMount } })]);

    // Every panel and every query names that datasource (a query without one uses its panel's).
    const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
    const used = dashboard.panels.flatMap((panel) => [
      panel.datasource,
      ...(panel.targets ?? []).map((target) => target.datasource ?? panel.datasource),
    ]);
    expect(new Set(used.map((ds) => `${ds?.type}/${ds?.uid}`))).toEqual(new Set([`prometheus/${datasources[0].uid}`]));
  });
});

describe("deploy/grafana/dashboards/nestjs-spoe.json against the example agent's real /metrics", () => {
  let example: ExampleAgent | undefined;
  let exposition: string;
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
  const exprs = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr ?? ''));

  // The example agent in process after SPOP traffic: a decision, an unknown message, a health check, a protocol error.
  beforeAll(async () => {
    example = await startExampleAgent();
    const port = example.spoePort;
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    try {
      const client = await SpoeClient.connect({ port });
      await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') });
      await client.notify('no-such-message');
      await client.close();
      await SpoeClient.healthCheck({ port });
      const peer = await RawPeer.connect({ port });
      peer.send(Buffer.from([0, 0, 0, 1, 0xff])); // a frame of an unknown type where the HELLO must come
      await peer.expectDisconnect();
      peer.destroy();
    } finally {
      warn.mockRestore();
      error.mockRestore();
    }
    exposition = await scrape(example.httpUrl);
  });
  afterAll(() => example?.close());

  it('parses as a Grafana 11 dashboard whose panels all have a title and at least one query', () => {
    expect(dashboard).toMatchObject({ uid: 'nestjs-spoe', title: 'nestjs-spoe' });
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.panels.length).toBeGreaterThan(0);
    for (const panel of dashboard.panels) {
      expect({ id: panel.id, title: panel.title }).toEqual({ id: panel.id, title: expect.stringMatching(/\S/) });
      expect(panel.targets?.length ?? 0).toBeGreaterThanOrEqual(1);
      for (const target of panel.targets!) expect(target.expr).toMatch(/\S/);
    }
    expect(new Set(dashboard.panels.map((panel) => panel.id)).size).toBe(dashboard.panels.length);
  });

  it('shows decisions/s and the latency quantiles by message', () => {
    expect(exprs).toContain('sum by (message) (rate(spoe_messages_total[1m]))');
    for (const q of ['0.5', '0.99'])
      expect(exprs).toContain(
        `histogram_quantile(${q}, sum by (le, message) (rate(spoe_handler_duration_seconds_bucket[1m])))`,
      );
  });

  it('queries only series that a scrape of the example agent has', () => {
    // The traffic above went through the agent's metrics.
    expect(sample(exposition, 'spoe_messages_total', { message: 'check-client-ip', outcome: 'ok' })).toBe(1);
    expect(sample(exposition, 'spoe_hellos_total', { outcome: 'healthcheck' })).toBe(1);

    const names = [...new Set(exprs.flatMap((expr) => expr.match(/\b(?:spoe|process|nodejs)_[a-z0-9_]+\b/g) ?? []))];
    expect(names).toEqual(
      expect.arrayContaining([
        'spoe_handler_duration_seconds_bucket',
        'process_cpu_seconds_total',
        'nodejs_eventloop_lag_seconds',
      ]),
    );
    const lines = exposition.split('\n');
    const sampled = (name: string): boolean => lines.some((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
    // A labeled counter has series only once counted: back-pressure pauses need a peer sending faster than the agent
    // answers, which this traffic is not. The family is declared all the same.
    expect(names.filter((name) => !sampled(name))).toEqual(['spoe_backpressure_pauses_total']);
    expect(lines).toContain('# TYPE spoe_backpressure_pauses_total counter');
  });
});

describe('Dockerfile', () => {
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const runtime = stages[stages.length - 1];

  it('is multi-stage: a build stage, then a runtime stage with compiled code only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0]).toMatch(/RUN npm ci/);
    expect(stages[0]).toMatch(/RUN npm run build/);
    expect(runtime).not.toMatch(/^COPY (src|libs\/spoe\/src)/m);
  });

  it('runs as a non-root user', () => {
    expect(runtime).toMatch(/^USER node$/m);
  });

  /**
   * What the container's shell (dash, in the Debian image) runs, with the image's working directory and `env`: its exit
   * code. Asynchronous: the agent it checks runs in this process.
   */
  const runHealthcheck = (env: Record<string, string>): Promise<number> =>
    new Promise((done) => {
      const options = { cwd: REPO_ROOT, env: { PATH: process.env.PATH, ...env }, timeout: 20_000 };
      execFile('sh', ['-c', healthcheckCommand], options, (error) =>
        done(error ? (typeof error.code === 'number' ? error.code : -1) : 0),
      );
    });

  itIf(OPENSSL)(
    'has a HEALTHCHECK healthy against the agent in plain TCP, TLS (its CA in NODE_EXTRA_CA_CERTS) and mutual TLS',
    async () => {
      ensureBuilt();
      const pki = makeTestPki(makeTempDir());
      const files = { SPOE_TLS_CERT: pki.server.certFile, SPOE_TLS_KEY: pki.server.keyFile };
      const cases: Array<[string, Record<string, string>, Record<string, string>]> = [
        ['plain TCP', {}, {}],
        ['TLS', files, { NODE_EXTRA_CA_CERTS: pki.caFile }],
        ['mutual TLS', { ...files, SPOE_TLS_CA: pki.caFile }, {}],
      ];
      for (const [mode, env, extra] of cases) {
        const example = await startExampleAgent(env);
        try {
          const healthcheck = { ...env, ...extra, SPOE_PORT: String(example.spoePort) };
          expect({ mode, exit: await runHealthcheck(healthcheck) }).toEqual({ mode, exit: 0 });
          // Plain SPOP against TLS, TLS against plain SPOP: unhealthy.
          const other = mode === 'plain TCP' ? { ...files, NODE_EXTRA_CA_CERTS: pki.caFile } : {};
          expect({ mode, exit: await runHealthcheck({ ...other, SPOE_PORT: String(example.spoePort) }) }).toEqual({
            mode,
            exit: 1,
          });
        } finally {
          await example.close();
        }
      }
    },
  );

  it('has a HEALTHCHECK running spoe-health, and starts dist/main.js', () => {
    expect(runtime).toMatch(
      /^HEALTHCHECK .*\\\n\s+CMD node libs\/spoe\/dist\/cli\/spoe-health\.js --port "\$\{SPOE_PORT\}"/m,
    );
    expect(runtime).toMatch(/^CMD \["node", "dist\/main\.js"\]$/m);
    expect(runtime).toMatch(/^EXPOSE 12345 3000$/m);
  });

  it('copies what the build produces: the paths it names exist after `npm run build`', () => {
    ensureBuilt();
    for (const path of [
      'libs/spoe/dist/cli/spoe-health.js',
      'libs/spoe/dist/index.js',
      'libs/spoe/dist/health/index.js',
      'dist/main.js',
    ]) {
      expect(existsSync(join(REPO_ROOT, path))).toBe(true);
    }
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const source of m[1].split(' ')) expect(existsSync(join(REPO_ROOT, source))).toBe(true);
    }
  });

  it('keeps the sources in the build context (.dockerignore)', () => {
    const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const needed of ['src', 'libs', 'package.json', 'package-lock.json', 'tsconfig.app.json'])
      expect(ignored).not.toContain(needed);
    expect(ignored).toContain('node_modules');
  });
});

const haproxy32 = haproxyVersion('3.2');

describeIf(haproxy32.prerequisite)('deploy/haproxy with the real HAProxy 3.2', () => {
  const check = (env: Record<string, string>, file = 'haproxy.cfg'): { status: number | null; output: string } => {
    const result = spawnSync(haproxy32.binary!.path, ['-c', '-f', file], {
      cwd: join(REPO_ROOT, 'deploy', 'haproxy'),
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  };

  it('passes `haproxy -c` as docker-compose runs it (service names, unresolvable here, are allowed to resolve later)', () => {
    // Only the mount point differs from the container: /usr/local/etc/haproxy is deploy/haproxy here.
    const { status, output } = check({ SPOE_CONF: 'spoe.conf' });
    expect({ status, output }).toEqual({ status: 0, output: expect.not.stringMatching(/\[(ALERT|WARNING)\]/) });
  });

  it('passes `haproxy -c` with haproxy-agent-hosts.cfg (README: "Beyond one host")', () => {
    const { status, output } = check({ SPOE_CONF: 'spoe.conf' }, 'haproxy-agent-hosts.cfg');
    expect({ status, output }).toEqual({ status: 0, output: expect.not.stringMatching(/\[(ALERT|WARNING)\]/) });
  });

  itIf(OPENSSL)('passes `haproxy -c` with haproxy-tls.cfg and the certificates it names (README: "TLS")', () => {
    const pki = makeTestPki(makeTempDir());
    const files = { TLS_CA_FILE: pki.caFile, TLS_CLIENT_CRT: pki.client.pemFile };
    const { status, output } = check({ SPOE_CONF: 'spoe.conf', ...files }, 'haproxy-tls.cfg');
    expect({ status, output }).toEqual({ status: 0, output: expect.not.stringMatching(/\[(ALERT|WARNING)\]/) });
    // A file it names that is not there fails the check: the certificates are read at startup.
    expect(
      check({ SPOE_CONF: 'spoe.conf', ...files, TLS_CA_FILE: join(makeTempDir(), 'ca.pem') }, 'haproxy-tls.cfg'),
    ).toEqual({
      status: 1,
      output: expect.stringMatching(/ca-file/),
    });
  });

  it('passes `haproxy -c` as the demo runs it (loopback addresses)', () => {
    const { status, output } = check({
      HAPROXY_BIND: '127.0.0.1:18080',
      AGENT_ADDR: '127.0.0.1:12345',
      BACKEND_ADDR: '127.0.0.1:18081',
      SPOE_CONF: 'spoe.conf',
    });
    expect({ status, output }).toEqual({ status: 0, output: expect.not.stringMatching(/\[(ALERT|WARNING)\]/) });
  });
});
