// docker-compose.yml, the Dockerfile and deploy/haproxy kept consistent without Docker: the compose file parses and
// wires the services as documented, the HAProxy configuration it mounts passes `haproxy -c` with the real 3.2 binary,
// and its defaults point at the compose services. `docker compose config` runs too when the CLI has compose.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { AGENT_ENV, loadAgentConfig } from '../../src/config/agent.config';
import { haproxyVersion } from '../support/haproxy-binaries';
import { templatePlaceholders } from '../support/haproxy-config';
import { describeIf, itIf, Prerequisite } from '../support/prerequisites';
import { ensureBuilt, REPO_ROOT } from './support/example';

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
const { haproxy, agent, redis, backend } = compose.services;
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const haproxyCfg = readFileSync(join(REPO_ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), 'utf8');
/** The defaults of the `"${NAME-default}"` references of haproxy.cfg, by name. */
const cfgDefaults = Object.fromEntries(templatePlaceholders(haproxyCfg).map((p) => [p.name, p.fallback]));

describe('docker-compose.yml', () => {
  it('has the four services: haproxy, agent, redis, backend', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['agent', 'backend', 'haproxy', 'redis']);
    expect(haproxy.image).toBe('haproxy:3.2');
    expect(agent.build).toBe('.');
    expect(redis.image).toMatch(/^redis:/);
    expect(backend.image).toBe('traefik/whoami');
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

  it('checks the agent with spoe-health against its own SPOE port, and Redis with redis-cli ping', () => {
    const test = agent.healthcheck!.test;
    expect(test.slice(0, 3)).toEqual(['CMD', 'node', 'libs/spoe/dist/cli/spoe-health.js']);
    expect(test[test.indexOf('--port') + 1]).toBe(agent.environment!.SPOE_PORT);
    expect(redis.healthcheck!.test).toEqual(['CMD', 'redis-cli', 'ping']);
  });

  it('configures the agent only with variables it knows, valid ones, sharing the blocklist through the redis service', () => {
    for (const name of Object.keys(agent.environment!)) expect(Object.keys(AGENT_ENV)).toContain(name);
    expect(loadAgentConfig(agent.environment!).redisUrl).toBe('redis://redis:6379');
    expect(agent.environment!.REDIS_URL).toBe('redis://redis:6379');
    expect(agent.ports).toEqual([`127.0.0.1:${agent.environment!.HTTP_PORT}:${agent.environment!.HTTP_PORT}`]);
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
