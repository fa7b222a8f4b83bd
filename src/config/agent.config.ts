import type { LogLevel } from '@nestjs/common';
import { plainToInstance, Transform } from 'class-transformer';
import { IsIn, IsNotEmpty, IsOptional, IsString, ValidateBy, validateSync } from 'class-validator';
import {
  MAX_TIMEOUT_MS,
  normalizeSpoeOptions,
  SPOE_DEFAULTS,
  SpoeOptionsError,
  SpoeServerOptions,
  SpoeTlsOptions,
  VarScope,
} from 'nestjs-spoe';
import { isIPv6 } from 'node:net';
import { availableParallelism } from 'node:os';
import { Cidr, parseCidrList } from '../reputation/cidr';
import { readTlsFiles, TlsFiles, TlsFilesError, tlsFilesMismatch } from '../tls/tls-files';
import {
  integerFromText,
  IntegerText,
  IsIntegerIn,
  quote,
  Trimmed,
  TrimmedOrUnset,
  unsetIfBlank,
} from './env.decorators';

/**
 * The agent's environment variables, their defaults and what they do: the single source of the defaults, and the
 * README's configuration reference. The transport's defaults are the library's own.
 */
export const AGENT_ENV = {
  SPOE_HOST: { default: SPOE_DEFAULTS.host, doc: 'Address the SPOE transport listens on.' },
  SPOE_PORT: { default: String(SPOE_DEFAULTS.port), doc: 'TCP port of the SPOE transport (0 picks a free one).' },
  SPOE_SOCKET: {
    default: undefined,
    doc: 'Unix socket path; when set, SPOE listens there instead of SPOE_HOST:SPOE_PORT.',
  },
  SPOE_MAX_FRAME_SIZE: {
    default: String(SPOE_DEFAULTS.maxFrameSize),
    doc: "The agent's max-frame-size (the smaller of it and HAProxy's is used).",
  },
  SPOE_MAX_IN_FLIGHT: {
    default: String(SPOE_DEFAULTS.maxInFlightPerConnection),
    doc: 'NOTIFY frames handled at once per HAProxy connection.',
  },
  SPOE_HANDLER_DEADLINE_MS: {
    default: String(SPOE_DEFAULTS.handlerDeadlineMs),
    doc: 'Deadline of each message handler.',
  },
  SPOE_HELLO_TIMEOUT_MS: {
    default: String(SPOE_DEFAULTS.helloTimeoutMs),
    doc: 'Connections that do not complete the HELLO within it are closed.',
  },
  SPOE_IDLE_TIMEOUT_MS: {
    default: String(SPOE_DEFAULTS.idleTimeoutMs),
    doc: 'Idle connections are closed after it (0: never).',
  },
  SPOE_DRAIN_TIMEOUT_MS: {
    default: String(SPOE_DEFAULTS.drainTimeoutMs),
    doc: 'On shutdown, how long in-flight NOTIFY may still finish.',
  },
  SPOE_TLS_CERT: {
    default: undefined,
    doc: "PEM file of the agent's certificate (and chain): SPOE is served over TLS, with SPOE_TLS_KEY. SIGHUP reads the SPOE_TLS_* files again.",
  },
  SPOE_TLS_KEY: { default: undefined, doc: 'PEM file of the private key of SPOE_TLS_CERT.' },
  SPOE_TLS_CA: {
    default: undefined,
    doc: "PEM file of the CA of HAProxy's client certificates: when set, one is required (mutual TLS). Needs SPOE_TLS_CERT.",
  },
  HTTP_HOST: { default: '0.0.0.0', doc: 'Address of the HTTP side (health routes, metrics, admin API).' },
  HTTP_PORT: { default: '3000', doc: 'Port of the HTTP side (0 picks a free one).' },
  ADMIN_TOKEN: {
    default: undefined,
    doc: 'Bearer token the admin API requires (at least 16 of A-Z a-z 0-9 - . _ ~ + /). Unset: it answers only on loopback.',
  },
  REDIS_URL: {
    default: undefined,
    doc: 'redis:// or rediss:// URL: the blocklist is kept in Redis and shared by every agent. Unset: in memory.',
  },
  REDIS_SENTINELS: {
    default: undefined,
    doc: 'Instead of REDIS_URL: comma-separated host:port of Redis Sentinels ([::1]:26379 for IPv6); the agent follows the primary they name through failovers. Needs REDIS_MASTER_NAME.',
  },
  REDIS_MASTER_NAME: {
    default: undefined,
    doc: 'With REDIS_SENTINELS: the name the Sentinels monitor the primary under (`sentinel monitor <name> …`).',
  },
  REDIS_MIN_REPLICAS: {
    default: undefined,
    doc: 'Replicas that must hold a blocklist write before the admin API acknowledges it (Redis WAIT; with REDIS_SENTINELS, also every replica they see up); unset: 1 with REDIS_SENTINELS, 0 with REDIS_URL.',
  },
  LOG_LEVEL: { default: 'log', doc: 'fatal, error, warn, log, debug or verbose.' },
  LOG_FORMAT: {
    default: 'text',
    doc: "text (Nest's console logger) or json (pino: one JSON object a line, those about an SPOE message carrying it).",
  },
  SHUTDOWN_GRACE_MS: {
    default: '5000',
    doc: 'After SIGTERM, readiness is 503 and SPOE keeps serving this long before draining.',
  },
  BLOCKLIST: {
    default: '10.0.0.0/8',
    doc: 'Comma-separated IPs/CIDRs blocked when the store starts empty ("" for none).',
  },
  HEALTH_TIMEOUT_MS: {
    default: '1000',
    doc: 'Bound on the SPOE health-check HELLO and the Redis PING of /health/ready.',
  },
  SPOE_WORKERS: {
    default: '1',
    doc: 'Agent processes sharing the SPOE and HTTP ports: an integer, or auto (one per CPU). Above 1, a supervisor runs them.',
  },
} as const satisfies Record<string, { default: string | undefined; doc: string }>;

export type AgentEnvName = keyof typeof AGENT_ENV;

/** The example's fixed bounds and timeouts: what the agent does not read from its environment. */
export const AGENT_LIMITS = {
  /** Node's longest timer: the upper bound of every *_MS variable. */
  maxTimeoutMs: MAX_TIMEOUT_MS,
  maxWorkers: 1024,
  /** A blocklist write waits this long for every agent process to apply it (through Redis or the supervisor). */
  propagationTimeoutMs: 2000,
  /** Bound on each Redis command (writes, reloads, PING). */
  redisCommandTimeoutMs: 2000,
  /**
   * How long a write waits for REDIS_MIN_REPLICAS replicas to hold it (Redis WAIT): well under the command timeout, the
   * WAIT being a command itself. A healthy replica acknowledges within a few milliseconds.
   */
  redisReplicaAckTimeoutMs: 1000,
  /** Bound on connecting to a Sentinel and on its answer, when a write asks how many replicas are up. */
  sentinelQueryTimeoutMs: 500,
  /** REDIS_MIN_REPLICAS when unset: with Sentinel there is a replica to fail over to, and a write should be on it. */
  redisMinReplicas: { sentinel: 1, url: 0 },
  /** The largest REDIS_MIN_REPLICAS: more replicas than any deployment has. */
  maxRedisReplicas: 100,
  /** Bound on a worker's requests to its supervisor: the initial blocklist, and writes (which wait for propagation). */
  supervisorRequestTimeoutMs: 5000,
  /** ADMIN_TOKEN's shortest length: 16 hex digits are 64 bits to guess. */
  minAdminTokenLength: 16,
  /** The largest request body the HTTP side reads, as JSON: 413 beyond. A POST /blocklist needs well under 1 KiB. */
  maxHttpBodyBytes: 16 * 1024,
  /** POST /blocklist: the longest `reason` and `ttlSeconds` taken. */
  maxReasonLength: 200,
  maxTtlSeconds: 10 * 365 * 24 * 3600,
} as const;

/**
 * RFC 6750's b64token, the syntax of a bearer token in `Authorization: Bearer <token>`: ADMIN_TOKEN must be one, or no
 * client could send it.
 */
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];
const LOG_FORMATS = ['text', 'json'] as const;

/** How the agent writes its logs: LOG_FORMAT. */
export type LogFormat = (typeof LOG_FORMATS)[number];
const MAX_MS = AGENT_LIMITS.maxTimeoutMs;

/** The variable the transport sets when a handler fails: `txn.<var-prefix>.agent_error` in HAProxy. */
export const AGENT_ERROR_VARIABLE = { scope: VarScope.Transaction, name: 'agent_error' } as const;

/**
 * The environment as class-validator checks it: one property per variable of {@link AGENT_ENV}, converted from its
 * text. Rules that involve several variables are in {@link validateAgentEnv}.
 */
class AgentEnvironment implements Record<AgentEnvName, unknown> {
  @Trimmed()
  @IsNotEmpty({ message: '$property must not be empty' })
  SPOE_HOST!: string;

  @IntegerText(0, 65535)
  SPOE_PORT!: number;

  @TrimmedOrUnset()
  @IsOptional()
  @IsString()
  SPOE_SOCKET!: string | undefined;

  @IntegerText(256, 0xffffffff)
  SPOE_MAX_FRAME_SIZE!: number;

  @IntegerText(1, 1_000_000)
  SPOE_MAX_IN_FLIGHT!: number;

  @IntegerText(1, MAX_MS)
  SPOE_HANDLER_DEADLINE_MS!: number;

  @IntegerText(1, MAX_MS)
  SPOE_HELLO_TIMEOUT_MS!: number;

  @IntegerText(0, MAX_MS)
  SPOE_IDLE_TIMEOUT_MS!: number;

  @IntegerText(0, MAX_MS)
  SPOE_DRAIN_TIMEOUT_MS!: number;

  // File paths: whether they can be read, and hold what they should, is checked in validateAgentEnv.
  @TrimmedOrUnset()
  @IsOptional()
  @IsString()
  SPOE_TLS_CERT!: string | undefined;

  @TrimmedOrUnset()
  @IsOptional()
  @IsString()
  SPOE_TLS_KEY!: string | undefined;

  @TrimmedOrUnset()
  @IsOptional()
  @IsString()
  SPOE_TLS_CA!: string | undefined;

  @Trimmed()
  @IsNotEmpty({ message: '$property must not be empty' })
  HTTP_HOST!: string;

  @IntegerText(0, 65535)
  HTTP_PORT!: number;

  // Set to "" is unset, as for REDIS_URL: docker-compose.yml passes `${ADMIN_TOKEN:-}` on. The message never shows the
  // value: it is a secret, and this line goes to the logs.
  @TrimmedOrUnset()
  @IsOptional()
  @ValidateBy({
    name: 'isAdminToken',
    validator: {
      validate: (value: unknown) =>
        typeof value === 'string' && value.length >= AGENT_LIMITS.minAdminTokenLength && BEARER_TOKEN.test(value),
      defaultMessage: (args) => {
        const token = String(args!.value);
        const got = BEARER_TOKEN.test(token) ? `${token.length} characters` : 'other characters';
        return `ADMIN_TOKEN must be at least ${AGENT_LIMITS.minAdminTokenLength} characters of A-Z a-z 0-9 - . _ ~ + / (e.g. from \`openssl rand -hex 32\`), got ${got}`;
      },
    },
  })
  ADMIN_TOKEN!: string | undefined;

  @TrimmedOrUnset()
  @IsOptional()
  @ValidateBy({
    name: 'isRedisUrl',
    validator: {
      validate: (value: unknown) =>
        typeof value === 'string' && ['redis:', 'rediss:'].includes(urlProtocol(value) ?? ''),
      defaultMessage: (args) =>
        `REDIS_URL must be a redis:// or rediss:// URL, got ${quote(redactUrl(String(args!.value)))}`,
    },
  })
  REDIS_URL!: string | undefined;

  // A list that does not parse stays text: the message lists what is wrong with each entry.
  @Transform(({ value }: { value: unknown }) => redisNodesOrText(unsetIfBlank(value)))
  @IsOptional()
  @ValidateBy({
    name: 'isRedisNodeList',
    validator: {
      validate: (value: unknown) => Array.isArray(value),
      defaultMessage: (args) => `REDIS_SENTINELS: ${parseRedisNodes(String(args!.value)).problems.join('; ')}`,
    },
  })
  REDIS_SENTINELS!: readonly RedisNode[] | undefined;

  @TrimmedOrUnset()
  @IsOptional()
  @ValidateBy({
    name: 'isMasterName',
    validator: {
      validate: (value: unknown) => typeof value === 'string' && !/\s/.test(value),
      defaultMessage: (args) => `REDIS_MASTER_NAME must be one word, got ${quote(args!.value)}`,
    },
  })
  REDIS_MASTER_NAME!: string | undefined;

  @Transform(({ value }: { value: unknown }) => integerFromText(unsetIfBlank(value)))
  @IsOptional()
  @IsIntegerIn(0, AGENT_LIMITS.maxRedisReplicas)
  REDIS_MIN_REPLICAS!: number | undefined;

  @Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim().toLowerCase() : value))
  @IsIn(LOG_LEVELS, {
    message: ({ value }) => `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${quote(value)}`,
  })
  LOG_LEVEL!: LogLevel;

  @Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim().toLowerCase() : value))
  @IsIn(LOG_FORMATS, {
    message: ({ value }) => `LOG_FORMAT must be one of ${LOG_FORMATS.join(', ')}, got ${quote(value)}`,
  })
  LOG_FORMAT!: LogFormat;

  @IntegerText(0, MAX_MS)
  SHUTDOWN_GRACE_MS!: number;

  // A list that does not parse stays text: the message lists what is wrong with each entry.
  @Transform(({ value }: { value: unknown }) => cidrsOrText(value))
  @ValidateBy({
    name: 'isCidrList',
    validator: {
      validate: (value: unknown) => Array.isArray(value),
      defaultMessage: (args) => `BLOCKLIST: ${parseCidrList(String(args!.value)).problems.join('; ')}`,
    },
  })
  BLOCKLIST!: readonly Cidr[];

  @IntegerText(1, MAX_MS)
  HEALTH_TIMEOUT_MS!: number;

  @Transform(({ value }: { value: unknown }) =>
    typeof value === 'string' && value.trim().toLowerCase() === 'auto'
      ? availableParallelism()
      : integerFromText(value),
  )
  @IsIntegerIn(1, AGENT_LIMITS.maxWorkers, {
    message: ({ value }) =>
      `SPOE_WORKERS must be "auto" or an integer in [1, ${AGENT_LIMITS.maxWorkers}], got ${quote(value)}`,
  })
  SPOE_WORKERS!: number;
}

/** Everything the agent reads from its environment, validated. */
export interface AgentConfig {
  /** Options of the SPOE transport (listen address, limits, and TLS with the contents of {@link tlsFiles}). */
  readonly spoe: SpoeServerOptions;
  /** SPOE_TLS_CERT, SPOE_TLS_KEY and SPOE_TLS_CA, read at startup and again on SIGHUP; undefined: plain TCP. */
  readonly tlsFiles: TlsFiles | undefined;
  /** Where the HTTP side (health, admin API) listens. */
  readonly http: { readonly host: string; readonly port: number };
  /**
   * The bearer token every admin API call must present (AdminAccessGuard). Undefined: the admin API answers clients on
   * loopback only.
   */
  readonly adminToken: string | undefined;
  /** Where the shared blocklist lives in Redis (REDIS_URL, or REDIS_SENTINELS); undefined: in memory. */
  readonly redis: RedisConfig | undefined;
  /** Nest logger levels enabled by LOG_LEVEL (that level and the more severe ones). */
  readonly logLevels: LogLevel[];
  /** text: Nest's console logger; json: pino through nestjs-pino (src/logging), the SPOE message context on. */
  readonly logFormat: LogFormat;
  /** After SIGTERM, how long readiness reports 503 while SPOE keeps serving, before the drain starts. */
  readonly shutdownGraceMs: number;
  /** Blocklist entries present when the store starts empty (the Redis store seeds them once). */
  readonly defaultBlocklist: readonly Cidr[];
  /** Bound on the active SPOE probe and the Redis PING of the readiness check. */
  readonly healthTimeoutMs: number;
  /** Agent processes on this host: 1 is a single process; more are workers of a supervisor (src/cluster). */
  readonly workers: number;
}

/** A host and port: one of REDIS_SENTINELS. */
export interface RedisNode {
  /** A name or an address; an IPv6 address without its brackets. */
  readonly host: string;
  readonly port: number;
}

/** How the agent reaches Redis: one server (REDIS_URL), or the primary that Sentinels name (REDIS_SENTINELS). */
export type RedisConfig = (
  { readonly url: string } | { readonly sentinels: readonly RedisNode[]; readonly masterName: string }
) & {
  /** Replicas that must hold a write (Redis WAIT) before it is acknowledged: REDIS_MIN_REPLICAS. */
  readonly minReplicas: number;
};

/**
 * What {@link validateAgentEnv} gives ConfigModule: `ConfigService<AgentSettings, true>` and
 * `config.get('agent', { infer: true })`. The config sits under one key holding an object, which ConfigModule does not
 * copy into process.env (it copies top-level strings and numbers).
 */
export interface AgentSettings {
  readonly agent: AgentConfig;
}

/** Every problem found in the environment, one per line. */
export class AgentConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'AgentConfigError';
  }
}

/**
 * Reads and validates the environment; throws {@link AgentConfigError} listing every problem at once. It is
 * ConfigModule's `validate` (AppModule), and main.ts runs it before any Nest app exists: the supervisor of
 * SPOE_WORKERS > 1 is not one.
 */
export function validateAgentEnv(env: Readonly<Record<string, unknown>>): AgentSettings {
  const variables = Object.fromEntries(
    Object.entries(AGENT_ENV).map(([name, spec]) => [name, env[name] ?? spec.default]),
  );
  const environment = plainToInstance(AgentEnvironment, variables);
  const errors = validateSync(environment, { stopAtFirstError: true });
  const problems = errors.flatMap((error) => Object.values(error.constraints ?? {}));
  const invalid = new Set(errors.map((error) => error.property));
  const tlsFiles = tlsFilesOf(environment, problems);
  const tls = tlsFiles && readTls(tlsFiles, problems);
  // Built even from invalid variables, for the checks across them; returned only when there is no problem at all.
  const config = toAgentConfig(environment, tlsFiles, tls);

  // The transport's own checks (normalizeSpoeOptions), once each of its variables is valid on its own.
  if (![...invalid].some((name) => name.startsWith('SPOE_') && name !== 'SPOE_WORKERS')) {
    try {
      normalizeSpoeOptions({ ...config.spoe, tls: undefined });
    } catch (error) {
      if (!(error instanceof SpoeOptionsError)) throw error;
      problems.push(error.message);
    }
  }
  const { spoe, http } = config;
  const ports = ['SPOE_HOST', 'SPOE_PORT', 'HTTP_HOST', 'HTTP_PORT'];
  if (
    !ports.some((name) => invalid.has(name)) &&
    spoe.path === undefined &&
    http.port !== 0 &&
    http.port === spoe.port &&
    http.host === spoe.host
  ) {
    problems.push(
      `HTTP_PORT and SPOE_PORT are both ${http.port}: the HTTP side and the SPOE transport need their own ports`,
    );
  }

  problems.push(...redisProblems(environment, invalid));

  if (problems.length > 0) throw new AgentConfigError(problems);
  return { agent: config };
}

/** {@link validateAgentEnv}'s config alone: what main.ts needs before Nest starts, and the tests. */
export function loadAgentConfig(env: Readonly<Record<string, unknown>> = process.env): AgentConfig {
  return validateAgentEnv(env).agent;
}

/** SPOE_TLS_CERT, SPOE_TLS_KEY and SPOE_TLS_CA when they make sense together; a problem otherwise. */
function tlsFilesOf(env: AgentEnvironment, problems: string[]): TlsFiles | undefined {
  const { SPOE_TLS_CERT: cert, SPOE_TLS_KEY: key, SPOE_TLS_CA: ca } = env;
  if ((cert === undefined) !== (key === undefined)) {
    problems.push(
      `SPOE_TLS_CERT and SPOE_TLS_KEY go together: both (TLS) or neither (plain TCP), got only ${cert === undefined ? 'SPOE_TLS_KEY' : 'SPOE_TLS_CERT'}`,
    );
    return undefined;
  }
  if (cert === undefined || key === undefined) {
    if (ca !== undefined)
      problems.push(
        "SPOE_TLS_CA needs SPOE_TLS_CERT and SPOE_TLS_KEY: mutual TLS is TLS that requires HAProxy's certificate",
      );
    return undefined;
  }
  return { cert, key, ca };
}

/**
 * The files' contents as the transport's TLS options, checked by the transport itself (normalizeSpoeOptions: a key
 * that is not the certificate's); undefined with the problems when they cannot work.
 */
function readTls(files: TlsFiles, problems: string[]): SpoeTlsOptions | undefined {
  let tls: SpoeTlsOptions;
  try {
    tls = readTlsFiles(files);
  } catch (error) {
    if (!(error instanceof TlsFilesError)) throw error;
    problems.push(...error.problems);
    return undefined;
  }
  try {
    normalizeSpoeOptions({ tls });
  } catch (error) {
    if (!(error instanceof SpoeOptionsError)) throw error;
    problems.push(tlsFilesMismatch(files, error.message));
    return undefined;
  }
  return tls;
}

function toAgentConfig(
  env: AgentEnvironment,
  tlsFiles: TlsFiles | undefined,
  tls: SpoeTlsOptions | undefined,
): AgentConfig {
  return {
    spoe: {
      host: env.SPOE_HOST,
      port: env.SPOE_PORT,
      ...(env.SPOE_SOCKET !== undefined && { path: env.SPOE_SOCKET }),
      maxFrameSize: env.SPOE_MAX_FRAME_SIZE,
      maxInFlightPerConnection: env.SPOE_MAX_IN_FLIGHT,
      handlerDeadlineMs: env.SPOE_HANDLER_DEADLINE_MS,
      helloTimeoutMs: env.SPOE_HELLO_TIMEOUT_MS,
      idleTimeoutMs: env.SPOE_IDLE_TIMEOUT_MS,
      drainTimeoutMs: env.SPOE_DRAIN_TIMEOUT_MS,
      errorVariable: AGENT_ERROR_VARIABLE,
      // What puts the SPOE message into the JSON lines about it (spoeLogFields); off in text, where no line reads it:
      // it costs a promise hook per Promise on Node 20.
      messageContext: env.LOG_FORMAT === 'json',
      ...(tls && { tls }),
    },
    tlsFiles,
    http: { host: env.HTTP_HOST, port: env.HTTP_PORT },
    adminToken: env.ADMIN_TOKEN,
    redis: redisConfig(env),
    logLevels: LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(env.LOG_LEVEL) + 1),
    logFormat: env.LOG_FORMAT,
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
    defaultBlocklist: env.BLOCKLIST,
    healthTimeoutMs: env.HEALTH_TIMEOUT_MS,
    workers: env.SPOE_WORKERS,
  };
}

/** The Redis variables that go together, and those that exclude each other. */
function redisProblems(env: AgentEnvironment, invalid: ReadonlySet<string>): string[] {
  const set = (name: 'REDIS_URL' | 'REDIS_SENTINELS' | 'REDIS_MASTER_NAME' | 'REDIS_MIN_REPLICAS'): boolean =>
    env[name] !== undefined || invalid.has(name);
  const problems: string[] = [];
  if (set('REDIS_URL') && set('REDIS_SENTINELS'))
    problems.push('REDIS_URL and REDIS_SENTINELS are two ways to reach Redis: set one of them');
  if (set('REDIS_SENTINELS') && !set('REDIS_MASTER_NAME'))
    problems.push(
      'REDIS_SENTINELS needs REDIS_MASTER_NAME: the name the Sentinels monitor the primary under (`sentinel monitor <name> …`)',
    );
  if (set('REDIS_MASTER_NAME') && !set('REDIS_SENTINELS'))
    problems.push('REDIS_MASTER_NAME needs REDIS_SENTINELS: the Sentinels that know the primary by that name');
  if (set('REDIS_MIN_REPLICAS') && !set('REDIS_URL') && !set('REDIS_SENTINELS'))
    problems.push('REDIS_MIN_REPLICAS needs REDIS_URL or REDIS_SENTINELS: the blocklist is in memory');
  return problems;
}

/** The Redis config, when the variables make one (redisProblems reports the rest). */
function redisConfig(env: AgentEnvironment): RedisConfig | undefined {
  const { REDIS_URL: url, REDIS_SENTINELS: sentinels, REDIS_MASTER_NAME: masterName } = env;
  const { sentinel, url: single } = AGENT_LIMITS.redisMinReplicas;
  if (Array.isArray(sentinels) && masterName !== undefined)
    return { sentinels, masterName, minReplicas: env.REDIS_MIN_REPLICAS ?? sentinel };
  if (url !== undefined) return { url, minReplicas: env.REDIS_MIN_REPLICAS ?? single };
  return undefined;
}

/**
 * `host:port` entries, comma-separated: a name or an IPv4 address, or an IPv6 address in brackets (`[::1]:26379`),
 * and a port in [1, 65535] (no default: a Sentinel's is 26379, Redis' 6379, and the wrong one would be a puzzle).
 */
export function parseRedisNodes(text: string): { nodes: RedisNode[]; problems: string[] } {
  const nodes: RedisNode[] = [];
  const problems: string[] = [];
  const entries = text.split(',').map((entry) => entry.trim());
  for (const entry of entries) {
    const m = /^(?:\[([^\]]*)\]|([^:\s[\]]+)):(\d+)$/.exec(entry);
    const host = m?.[1] ?? m?.[2];
    if (!m || host === undefined || (m[1] !== undefined && !isIPv6(m[1]))) {
      problems.push(`${quote(entry)} is not host:port ([::1]:26379 for IPv6)`);
      continue;
    }
    const port = Number(m[3]);
    if (port < 1 || port > 65535) problems.push(`the port of ${quote(entry)} must be in [1, 65535]`);
    else nodes.push({ host, port });
  }
  return { nodes, problems };
}

function redisNodesOrText(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const { nodes, problems } = parseRedisNodes(value);
  return problems.length === 0 ? nodes : value;
}

function cidrsOrText(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const { cidrs, problems } = parseCidrList(value);
  return problems.length === 0 ? cidrs : value;
}

function urlProtocol(text: string): string | undefined {
  try {
    return new URL(text).protocol;
  } catch {
    return undefined;
  }
}

/** Where the agent finds Redis, for messages and logs: the URL without its password, or the Sentinels. */
export function describeRedis(redis: RedisConfig): string {
  if ('url' in redis) return `Redis at ${redactUrl(redis.url)}`;
  const sentinels = redis.sentinels.map(({ host, port }) => (isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`));
  return `Redis primary "${redis.masterName}" (Sentinels ${sentinels.join(',')})`;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}
