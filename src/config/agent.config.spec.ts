import { ConfigService } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import { VarScope } from 'nestjs-spoe';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppModule } from '../app.module';
import { AGENT_ENV, AgentConfigError, AgentSettings, describeRedis, loadAgentConfig, redactUrl } from './agent.config';

const problemsOf = (env: NodeJS.ProcessEnv): readonly string[] => {
  try {
    loadAgentConfig(env);
  } catch (error) {
    if (error instanceof AgentConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected an AgentConfigError');
};

describe('loadAgentConfig', () => {
  it('runs with an empty environment: SPOE on 0.0.0.0:12345, HTTP on 3000, in-memory blocklist of 10.0.0.0/8', () => {
    const config = loadAgentConfig({});
    expect(config.spoe).toMatchObject({
      host: '0.0.0.0',
      port: 12345,
      maxFrameSize: 16380,
      maxInFlightPerConnection: 64,
      handlerDeadlineMs: 1000,
    });
    expect(config.spoe.path).toBeUndefined();
    expect(config.http).toEqual({ host: '0.0.0.0', port: 3000 });
    expect(config.adminToken).toBeUndefined();
    expect(config.redis).toBeUndefined();
    expect(config.defaultBlocklist.map(String)).toEqual(['10.0.0.0/8']);
    expect(config.shutdownGraceMs).toBe(5000);
    expect(config.healthTimeoutMs).toBe(1000);
    expect(config.logLevels).toEqual(['fatal', 'error', 'warn', 'log']);
    expect(config.logFormat).toBe('text');
    expect(config.workers).toBe(1);
    expect(config.spoe.tls).toBeUndefined();
    expect(config.tlsFiles).toBeUndefined();
  });

  it('keeps the SPOE message context off in text, and turns it on with LOG_FORMAT=json, whose lines carry it', () => {
    expect(loadAgentConfig({}).spoe.messageContext).toBe(false);
    expect(loadAgentConfig({ LOG_FORMAT: 'json' }).spoe.messageContext).toBe(true);
  });

  it('reports handler failures to HAProxy as txn.<prefix>.agent_error', () => {
    expect(loadAgentConfig({}).spoe.errorVariable).toEqual({ scope: VarScope.Transaction, name: 'agent_error' });
  });

  it('reads every variable', () => {
    const config = loadAgentConfig({
      SPOE_HOST: '127.0.0.1',
      SPOE_PORT: '0',
      SPOE_SOCKET: '/run/agent.sock',
      SPOE_MAX_FRAME_SIZE: '65532',
      SPOE_MAX_IN_FLIGHT: '8',
      SPOE_HANDLER_DEADLINE_MS: '250',
      SPOE_HELLO_TIMEOUT_MS: '100',
      SPOE_IDLE_TIMEOUT_MS: '0',
      SPOE_DRAIN_TIMEOUT_MS: '300',
      HTTP_HOST: '::',
      HTTP_PORT: '8081',
      ADMIN_TOKEN: ' 0123456789abcdef-._~+/AZaz== ',
      REDIS_URL: 'redis://:secret@redis:6379/2',
      LOG_LEVEL: 'DEBUG',
      LOG_FORMAT: ' JSON ',
      SHUTDOWN_GRACE_MS: '0',
      BLOCKLIST: ' 192.0.2.0/24 , 2001:db8::/32,,',
      HEALTH_TIMEOUT_MS: '250',
      SPOE_WORKERS: '4',
    });
    expect(config.spoe).toMatchObject({
      host: '127.0.0.1',
      port: 0,
      path: '/run/agent.sock',
      maxFrameSize: 65532,
      maxInFlightPerConnection: 8,
      handlerDeadlineMs: 250,
      helloTimeoutMs: 100,
      idleTimeoutMs: 0,
      drainTimeoutMs: 300,
    });
    expect(config.http).toEqual({ host: '::', port: 8081 });
    expect(config.adminToken).toBe('0123456789abcdef-._~+/AZaz==');
    expect(config.redis).toEqual({ url: 'redis://:secret@redis:6379/2', minReplicas: 0 });
    expect(config.logLevels).toEqual(['fatal', 'error', 'warn', 'log', 'debug']);
    expect(config.logFormat).toBe('json');
    expect(config.shutdownGraceMs).toBe(0);
    expect(config.defaultBlocklist.map(String)).toEqual(['192.0.2.0/24', '2001:db8::/32']);
    expect(config.healthTimeoutMs).toBe(250);
    expect(config.workers).toBe(4);
  });

  it('takes SPOE_WORKERS=auto as one worker per CPU', () => {
    expect(loadAgentConfig({ SPOE_WORKERS: 'auto' }).workers).toBe(availableParallelism());
    expect(loadAgentConfig({ SPOE_WORKERS: ' Auto ' }).workers).toBe(availableParallelism());
  });

  it('takes an empty BLOCKLIST as no default entries', () => {
    expect(loadAgentConfig({ BLOCKLIST: '' }).defaultBlocklist).toEqual([]);
  });

  it('reads REDIS_SENTINELS (IPv6 in brackets) and REDIS_MASTER_NAME, a replica acknowledging each write by default', () => {
    expect(
      loadAgentConfig({
        REDIS_SENTINELS: ' sentinel-1:26379, 192.0.2.7:26380 ,[::1]:26381',
        REDIS_MASTER_NAME: ' blocklist ',
      }).redis,
    ).toEqual({
      sentinels: [
        { host: 'sentinel-1', port: 26379 },
        { host: '192.0.2.7', port: 26380 },
        { host: '::1', port: 26381 },
      ],
      masterName: 'blocklist',
      minReplicas: 1,
    });
  });

  it('takes REDIS_MIN_REPLICAS over the default of either mode', () => {
    const sentinels = { REDIS_SENTINELS: 'localhost:26379', REDIS_MASTER_NAME: 'blocklist' };
    expect(loadAgentConfig({ ...sentinels, REDIS_MIN_REPLICAS: '0' }).redis?.minReplicas).toBe(0);
    expect(loadAgentConfig({ ...sentinels, REDIS_MIN_REPLICAS: '' }).redis?.minReplicas).toBe(1);
    expect(loadAgentConfig({ REDIS_URL: 'redis://redis', REDIS_MIN_REPLICAS: '2' }).redis?.minReplicas).toBe(2);
  });

  it('describes where Redis is for logs and messages, without the password', () => {
    const sentinels = { REDIS_SENTINELS: 'localhost:26379,[::1]:26380', REDIS_MASTER_NAME: 'blocklist' };
    expect(describeRedis(loadAgentConfig(sentinels).redis!)).toBe(
      'Redis primary "blocklist" (Sentinels localhost:26379,[::1]:26380)',
    );
    expect(describeRedis(loadAgentConfig({ REDIS_URL: 'redis://:hunter2@redis:6379' }).redis!)).toBe(
      'Redis at redis://:***@redis:6379',
    );
  });

  it('treats empty SPOE_SOCKET, REDIS_URL, REDIS_SENTINELS, ADMIN_TOKEN and SPOE_TLS_* as unset', () => {
    const config = loadAgentConfig({
      SPOE_SOCKET: '',
      REDIS_URL: ' ',
      REDIS_SENTINELS: ' ',
      REDIS_MASTER_NAME: '',
      REDIS_MIN_REPLICAS: ' ',
      ADMIN_TOKEN: '',
      SPOE_TLS_CERT: '',
      SPOE_TLS_KEY: ' ',
      SPOE_TLS_CA: '',
    });
    expect(config.spoe.path).toBeUndefined();
    expect(config.redis).toBeUndefined();
    expect(config.adminToken).toBeUndefined();
    expect(config.tlsFiles).toBeUndefined();
  });

  it.each([
    [{ SPOE_PORT: 'http' }, 'SPOE_PORT must be an integer in [0, 65535], got "http"'],
    [{ SPOE_PORT: '65536' }, 'SPOE_PORT must be an integer in [0, 65535], got "65536"'],
    [{ SPOE_PORT: '-1' }, 'SPOE_PORT must be an integer'],
    [{ SPOE_PORT: '1.5' }, 'SPOE_PORT must be an integer'],
    [{ HTTP_PORT: '' }, 'HTTP_PORT must be an integer in [0, 65535], got ""'],
    [{ SPOE_MAX_FRAME_SIZE: '255' }, 'SPOE_MAX_FRAME_SIZE must be an integer in [256,'],
    [{ SPOE_MAX_IN_FLIGHT: '0' }, 'SPOE_MAX_IN_FLIGHT must be an integer in [1,'],
    [{ SPOE_HANDLER_DEADLINE_MS: '0' }, 'SPOE_HANDLER_DEADLINE_MS must be an integer in [1,'],
    [{ SHUTDOWN_GRACE_MS: '5s' }, 'SHUTDOWN_GRACE_MS must be an integer'],
    [{ HEALTH_TIMEOUT_MS: '0' }, 'HEALTH_TIMEOUT_MS must be an integer in [1,'],
    [{ SPOE_HOST: ' ' }, 'SPOE_HOST must not be empty'],
    [{ REDIS_URL: 'localhost:6379' }, 'REDIS_URL must be a redis:// or rediss:// URL, got "localhost:6379"'],
    [{ REDIS_URL: 'http://redis' }, 'REDIS_URL must be a redis:// or rediss:// URL'],
    [
      { REDIS_SENTINELS: 'localhost', REDIS_MASTER_NAME: 'm' },
      'REDIS_SENTINELS: "localhost" is not host:port ([::1]:26379 for IPv6)',
    ],
    [
      { REDIS_SENTINELS: '::1:26379,a:1,,b:70000', REDIS_MASTER_NAME: 'm' },
      'REDIS_SENTINELS: "::1:26379" is not host:port ([::1]:26379 for IPv6); "" is not host:port ([::1]:26379 for IPv6); the port of "b:70000" must be in [1, 65535]',
    ],
    [{ REDIS_SENTINELS: '[nope]:26379', REDIS_MASTER_NAME: 'm' }, 'REDIS_SENTINELS: "[nope]:26379" is not host:port'],
    [
      { REDIS_SENTINELS: 'localhost:26379' },
      'REDIS_SENTINELS needs REDIS_MASTER_NAME: the name the Sentinels monitor the primary under',
    ],
    [{ REDIS_MASTER_NAME: 'blocklist' }, 'REDIS_MASTER_NAME needs REDIS_SENTINELS'],
    [
      { REDIS_URL: 'redis://redis', REDIS_SENTINELS: 'localhost:26379', REDIS_MASTER_NAME: 'm' },
      'REDIS_URL and REDIS_SENTINELS are two ways to reach Redis: set one of them',
    ],
    [{ REDIS_SENTINELS: 'localhost:26379', REDIS_MASTER_NAME: 'my master' }, 'REDIS_MASTER_NAME must be one word'],
    [{ REDIS_MIN_REPLICAS: '1' }, 'REDIS_MIN_REPLICAS needs REDIS_URL or REDIS_SENTINELS: the blocklist is in memory'],
    [
      { REDIS_URL: 'redis://redis', REDIS_MIN_REPLICAS: '-1' },
      'REDIS_MIN_REPLICAS must be an integer in [0, 100], got "-1"',
    ],
    [
      { ADMIN_TOKEN: '0123456789abcde' },
      'ADMIN_TOKEN must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (e.g. from `openssl rand -hex 32`), got 15 characters',
    ],
    [{ ADMIN_TOKEN: '0123456789 abcdef' }, 'ADMIN_TOKEN must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + /'],
    [{ ADMIN_TOKEN: '0123456789abcdef"' }, 'ADMIN_TOKEN must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + /'],
    [{ ADMIN_TOKEN: '==0123456789abcdef' }, 'ADMIN_TOKEN must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + /'],
    [{ LOG_LEVEL: 'info' }, 'LOG_LEVEL must be one of fatal, error, warn, log, debug, verbose, got "info"'],
    [{ LOG_FORMAT: 'bogus' }, 'LOG_FORMAT must be one of text, json, got "bogus"'],
    [{ LOG_FORMAT: '' }, 'LOG_FORMAT must be one of text, json, got ""'],
    [{ BLOCKLIST: '10.0.0.1/8' }, 'BLOCKLIST: 10.0.0.1/8 has host bits set: did you mean 10.0.0.0/8?'],
    [{ BLOCKLIST: 'nope' }, 'BLOCKLIST: not an IP address or CIDR: "nope"'],
    [{ SPOE_PORT: '3000' }, 'HTTP_PORT and SPOE_PORT are both 3000'],
    [{ SPOE_WORKERS: '0' }, 'SPOE_WORKERS must be "auto" or an integer in [1, 1024], got "0"'],
    [{ SPOE_WORKERS: 'many' }, 'SPOE_WORKERS must be "auto" or an integer in [1, 1024], got "many"'],
    [{ SPOE_WORKERS: '2.5' }, 'SPOE_WORKERS must be "auto" or an integer'],
    [{ SPOE_WORKERS: '' }, 'SPOE_WORKERS must be "auto" or an integer in [1, 1024], got ""'],
    [
      { SPOE_TLS_CERT: '/tls/agent.pem' },
      'SPOE_TLS_CERT and SPOE_TLS_KEY go together: both (TLS) or neither (plain TCP), got only SPOE_TLS_CERT',
    ],
    [{ SPOE_TLS_KEY: '/tls/agent.key', SPOE_TLS_CA: '/tls/ca.pem' }, 'got only SPOE_TLS_KEY'],
    [{ SPOE_TLS_CA: '/tls/ca.pem' }, 'SPOE_TLS_CA needs SPOE_TLS_CERT and SPOE_TLS_KEY'],
  ])('rejects %j with a message naming the variable', (env, message) => {
    expect(problemsOf(env).join('\n')).toContain(message);
  });

  it('names each TLS file that cannot be read, or does not hold what it should (certificates: test/example/tls)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agent-config-'));
    try {
      const notPem = join(dir, 'not.pem');
      writeFileSync(notPem, 'not a PEM file\n');
      expect(
        problemsOf({ SPOE_TLS_CERT: join(dir, 'missing.pem'), SPOE_TLS_KEY: notPem, SPOE_TLS_CA: dir, LOG_LEVEL: 'x' }),
      ).toEqual([
        expect.stringMatching(/^LOG_LEVEL /),
        `SPOE_TLS_CERT: cannot read "${join(dir, 'missing.pem')}": ENOENT: no such file or directory`,
        expect.stringMatching(new RegExp(`^SPOE_TLS_KEY: "${notPem}" holds no usable private key \\(.+\\)$`)),
        `SPOE_TLS_CA: cannot read "${dir}": EISDIR: illegal operation on a directory, read`,
      ]);
      expect(problemsOf({ SPOE_TLS_CERT: notPem, SPOE_TLS_KEY: notPem })).toContain(
        `SPOE_TLS_CERT: "${notPem}" holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists every problem at once', () => {
    const problems = problemsOf({ SPOE_PORT: 'x', HTTP_PORT: 'y', LOG_LEVEL: 'loud', REDIS_URL: 'nope' });
    expect(problems).toHaveLength(4);
    expect(() => loadAgentConfig({ SPOE_PORT: 'x', HTTP_PORT: 'y' })).toThrow(
      /^invalid configuration:\n {2}- SPOE_PORT .*\n {2}- HTTP_PORT /,
    );
  });

  it('never shows the Redis password in a message', () => {
    expect(problemsOf({ REDIS_URL: 'http://user:hunter2@redis' }).join()).not.toContain('hunter2');
    expect(redactUrl('redis://:hunter2@redis:6379/0')).toBe('redis://:***@redis:6379/0');
  });

  it('never shows ADMIN_TOKEN in a message, only what is wrong with it', () => {
    expect(problemsOf({ ADMIN_TOKEN: 'hunter2' })).toEqual([expect.stringMatching(/, got 7 characters$/)]);
    expect(problemsOf({ ADMIN_TOKEN: 'hunter2 hunter2 hunter2' })).toEqual([
      expect.stringMatching(/, got other characters$/),
    ]);
    expect(problemsOf({ ADMIN_TOKEN: 'hunter2 hunter2 hunter2' }).join()).not.toContain('hunter2');
  });

  it('documents every variable it reads', () => {
    for (const [name, spec] of Object.entries(AGENT_ENV)) {
      expect(spec.doc.length).toBeGreaterThan(10);
      if (spec.default !== undefined) expect(() => loadAgentConfig({ [name]: spec.default })).not.toThrow();
    }
  });
});

describe('AppModule configuration (validateAgentEnv, served by ConfigModule)', () => {
  it('gives ConfigService the validated config, and writes nothing into process.env', async () => {
    const before = { ...process.env };
    const app = await Test.createTestingModule({
      imports: [AppModule.forRoot({ env: { SPOE_PORT: '12346', HTTP_PORT: '8081', BLOCKLIST: '' } })],
    }).compile();
    const config = app.get<ConfigService<AgentSettings, true>>(ConfigService).get('agent', { infer: true });
    expect([config.spoe.port, config.http.port, config.defaultBlocklist]).toEqual([12346, 8081, []]);
    expect(process.env).toEqual(before);
    await app.close();
  });

  it('refuses to build the app from an invalid environment, listing every problem', async () => {
    const error: unknown = await Test.createTestingModule({
      imports: [AppModule.forRoot({ env: { SPOE_PORT: 'x', LOG_LEVEL: 'loud' } })],
    })
      .compile()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AgentConfigError);
    expect((error as AgentConfigError).problems).toEqual([
      expect.stringMatching(/^SPOE_PORT must be an integer/),
      expect.stringMatching(/^LOG_LEVEL must be one of/),
    ]);
  });
});
