import { Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Redis, RedisKey, RedisOptions, Result } from 'ioredis';
import { SpoeIp } from 'nestjs-spoe';
import { randomUUID } from 'node:crypto';
import { AGENT_LIMITS, describeRedis, RedisConfig } from '../config/agent.config';
import {
  BlocklistEntry,
  BlocklistStore,
  BlocklistStoreHealth,
  BlocklistUnavailableError,
  CompiledBlocklist,
  makeEntry,
  NewBlocklistEntry,
} from './blocklist.store';
import { Cidr } from './cidr';

const { redisCommandTimeoutMs, redisReplicaAckTimeoutMs, sentinelQueryTimeoutMs, propagationTimeoutMs } = AGENT_LIMITS;
/** Reconnection back-off: 100 ms, 200 ms, … capped at 2 s. */
const retryStrategy = (attempt: number): number => Math.min(attempt * 100, 2000);

const KEY_PREFIX = 'spoe:blocklist';

/*
 * Data model (KEY_PREFIX "spoe:blocklist"):
 *   <prefix>:entries   HASH  cidr → {"reason","addedAt","expiresAt"} (JSON, epoch ms)
 *   <prefix>:expiry    ZSET  cidr scored by expiresAt, for pruning without scanning the hash
 *   <prefix>:version   INT   bumped by every change; its existence also means "seeded"
 *   <prefix>:changed   channel: the new version, published by the write itself (same Lua script, atomic)
 *   <prefix>:applied   channel: "<instance-id> <version>", published by each agent once its matcher has that version
 *
 * Every write is one of the Lua scripts below, defined as a command of the connection (`defineCommand`): ioredis sends
 * a script's text once per connection and then its SHA1 only (EVALSHA), and the text again if Redis forgot it.
 */

/** KEYS: entries, expiry, version. ARGV: cidr, entry JSON, now, expiresAt or '', changed channel. */
const ADD = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
for _, cidr in ipairs(expired) do redis.call('HDEL', KEYS[1], cidr) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] == '' then redis.call('ZREM', KEYS[2], ARGV[1]) else redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1]) end
local version = redis.call('INCR', KEYS[3])
return {version, redis.call('PUBLISH', ARGV[5], version)}
`;

/** KEYS: entries, expiry, version. ARGV: cidr, now, changed channel. */
const REMOVE = `
local expiresAt = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {0, 0, 0} end
local live = 1
if expiresAt and tonumber(expiresAt) <= tonumber(ARGV[2]) then live = 0 end
local version = redis.call('INCR', KEYS[3])
return {live, version, redis.call('PUBLISH', ARGV[3], version)}
`;

/**
 * KEYS: entries, version. ARGV: changed channel, then cidr and entry JSON pairs. Seeds only a blocklist never seeded.
 */
const SEED = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], version)
return version
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** ADD: [version, subscribers that received the change]. */
    blocklistAdd(
      entries: RedisKey,
      expiry: RedisKey,
      version: RedisKey,
      ...args: [cidr: string, json: string, now: number, expiresAt: number | '', channel: string]
    ): Result<[number, number], Context>;
    /** REMOVE: [1 when a live entry was removed, version (0: nothing removed), subscribers]. */
    blocklistRemove(
      entries: RedisKey,
      expiry: RedisKey,
      version: RedisKey,
      ...args: [cidr: string, now: number, channel: string]
    ): Result<[number, number, number], Context>;
    /** SEED: the new version, or 0 when the blocklist was seeded before. */
    blocklistSeed(entries: RedisKey, version: RedisKey, channel: string, ...pairs: string[]): Result<number, Context>;
  }
}

interface StoredEntry {
  reason?: string;
  addedAt: number;
  expiresAt: number | null;
}

interface Waiter {
  readonly version: number;
  readonly subscribers: number;
  readonly done: () => void;
}

/**
 * The blocklist in Redis, shared by every agent instance.
 *
 * Lookups never touch Redis: each instance answers `find` from a compiled matcher in memory, so a NOTIFY costs a few
 * hash lookups whatever Redis' latency, and keeps being answered (from the last version) while Redis is away. Every
 * write runs as one Lua script that changes the data, bumps a version counter and publishes it; each instance reloads
 * its matcher on that message (and whenever its connections are back, when messages may have been missed) and
 * acknowledges the version it now holds. A write resolves once enough replicas hold it (Redis WAIT: see `replicated`)
 * and every subscribed instance acknowledged it, so the next NOTIFY, on any instance, sees the change.
 *
 * Redis is one server (REDIS_URL) or the primary that Sentinels name (REDIS_SENTINELS): ioredis asks them where the
 * primary is at every connection, and a failover closes the connections to the old one.
 */
export class RedisBlocklistStore extends BlocklistStore implements OnModuleInit, OnApplicationShutdown {
  /** Identifies this instance in acknowledgements. */
  readonly instanceId = randomUUID();
  private readonly log = new Logger(RedisBlocklistStore.name);
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly keys: { entries: string; expiry: string; version: string; changed: string; applied: string };
  private blocklist = new CompiledBlocklist();
  private version = 0;
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;
  private readonly acknowledged = new Map<string, number>();
  private readonly waiters = new Set<Waiter>();
  private started = false;
  /** The subscriber's SUBSCRIBE answered on its current connection: until then, changes may be missed. */
  private subscribed = false;
  /** A connection was lost since the last time both were up: warned once, logged once when both are back. */
  private down = false;
  /** "Redis at redis://…" or "Redis primary "name" (Sentinels …)", for logs and messages: never a password. */
  private readonly where: string;

  constructor(
    private readonly config: RedisConfig,
    private readonly defaults: readonly Cidr[] = [],
  ) {
    super();
    this.where = describeRedis(config);
    this.keys = {
      entries: `${KEY_PREFIX}:entries`,
      expiry: `${KEY_PREFIX}:expiry`,
      version: `${KEY_PREFIX}:version`,
      changed: `${KEY_PREFIX}:changed`,
      applied: `${KEY_PREFIX}:applied`,
    };
    // The subscriber subscribes again itself once it is back (onSubscriberReady): ioredis' own resubscription is not
    // awaitable, and a reload must not read the blocklist before the subscription that reports later changes is on.
    const common: RedisOptions = { lazyConnect: true, retryStrategy, connectionName: 'nestjs-spoe-agent' };
    // Without an offline queue a command fails at once while Redis is away, instead of hanging an admin request.
    this.redis = this.connection({
      ...common,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: redisCommandTimeoutMs,
    });
    this.redis.defineCommand('blocklistAdd', { numberOfKeys: 3, lua: ADD });
    this.redis.defineCommand('blocklistRemove', { numberOfKeys: 3, lua: REMOVE });
    this.redis.defineCommand('blocklistSeed', { numberOfKeys: 2, lua: SEED });
    this.subscriber = this.connection({ ...common, autoResubscribe: false });
  }

  /** A connection to the server of REDIS_URL, or to the primary the Sentinels name, following its failovers. */
  private connection(options: RedisOptions): Redis {
    if ('url' in this.config) return new Redis(this.config.url, options);
    return new Redis({
      ...options,
      sentinels: this.config.sentinels.map(({ host, port }) => ({ host, port })),
      name: this.config.masterName,
      // A primary that dies closes the connections, and ioredis reconnects to the primary the Sentinels name then. One
      // demoted alive (SENTINEL FAILOVER) keeps them until Sentinel reconfigures it as a replica and closes them
      // (CLIENT KILL), ~16 s later in the tests; meanwhile writes are refused, no replica following it any more.
      // ioredis' failoverDetector is not used: every Sentinel announces a failover, seconds apart, and each announcement
      // dropped connections already on the new primary; reconnecting on an announcement did not shorten the wait either
      // (a Sentinel that has not switched yet probably names the old primary). A write that reaches a demoted primary is
      // answered READONLY: reconnect then.
      reconnectOnError: (error) => error.message.startsWith('READONLY'),
    });
  }

  async onModuleInit(): Promise<void> {
    for (const connection of [this.redis, this.subscriber]) {
      connection.on('error', (error: Error) => this.onConnectionLost(error.message));
      connection.on('close', () => this.onConnectionLost('connection closed'));
    }
    this.redis.on('ready', () => this.onConnectionsBack());
    this.subscriber.on('close', () => (this.subscribed = false));
    this.subscriber.on('ready', () => this.onSubscriberReady());
    this.subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    try {
      await Promise.all([this.redis.connect(), this.subscriber.connect()]);
      await this.subscribe();
      await this.seed();
      await this.reload();
    } catch (error) {
      for (const connection of this.connections()) connection.disconnect();
      throw new Error(`cannot use ${this.where}: ${(error as Error).message}`, { cause: error });
    }
    this.started = true;
    this.log.log(`blocklist in ${this.where}: version ${this.version}, ${this.blocklist.size} entries`);
  }

  async onApplicationShutdown(): Promise<void> {
    this.started = false;
    for (const waiter of this.waiters) waiter.done();
    await Promise.all(this.connections().map((c) => c.quit().catch(() => c.disconnect())));
  }

  private connections(): Redis[] {
    return [this.redis, this.subscriber];
  }

  find(ip: SpoeIp): BlocklistEntry | undefined {
    return this.blocklist.find(ip);
  }

  list(): Promise<BlocklistEntry[]> {
    return this.unavailableOnError(async () => new CompiledBlocklist((await this.snapshot()).entries).live());
  }

  add(input: NewBlocklistEntry): Promise<BlocklistEntry> {
    return this.write(async () => {
      const entry = makeEntry(input);
      const stored: StoredEntry = {
        ...(entry.reason !== undefined && { reason: entry.reason }),
        addedAt: entry.addedAt,
        expiresAt: entry.expiresAt ?? null,
      };
      const { entries, expiry, version: versionKey, changed } = this.keys;
      const [version, subscribers] = await this.redis.blocklistAdd(
        entries,
        expiry,
        versionKey,
        entry.cidr.toString(),
        JSON.stringify(stored),
        entry.addedAt,
        entry.expiresAt ?? '',
        changed,
      );
      return { result: entry, version, subscribers };
    });
  }

  remove(cidr: Cidr): Promise<boolean> {
    return this.write(async () => {
      const { entries, expiry, version: versionKey, changed } = this.keys;
      const [live, version, subscribers] = await this.redis.blocklistRemove(
        entries,
        expiry,
        versionKey,
        cidr.toString(),
        Date.now(),
        changed,
      );
      return { result: live === 1, version, subscribers };
    });
  }

  /**
   * Readiness: both connections ready and a PING answered (within the health timeout). Anything less is degraded, not
   * down: `find` answers from the last version loaded whatever Redis does, and every agent shares the Redis, so a
   * Redis outage that took agents out of rotation would take them all out at once.
   */
  override health(): BlocklistStoreHealth {
    const details = {
      command: this.redis.status,
      subscriber: this.subscriber.status,
      ...('sentinels' in this.config && { primary: this.primaryAddress() }),
      version: this.version,
      entries: this.blocklist.size,
    };
    return {
      key: 'redis',
      details,
      ...(!this.connected() && {
        degraded: `Redis is not connected: serving blocklist version ${this.version}, which may be stale; admin writes answer 503`,
      }),
      probe: () => this.ping(),
    };
  }

  private connected(): boolean {
    return this.redis.status === 'ready' && this.subscriber.status === 'ready' && this.subscribed;
  }

  /** The primary the command connection is connected to (Sentinel mode), or null. */
  private primaryAddress(): string | null {
    const connected = this.redis.status === 'ready' ? this.connectedPrimary() : undefined;
    if (connected === undefined) return null;
    const { host, port } = connected;
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  private async ping(): Promise<{ pingMs: number }> {
    const started = performance.now();
    try {
      await this.redis.ping();
    } catch (error) {
      throw new Error(`PING failed: ${(error as Error).message}`, { cause: error });
    }
    return { pingMs: Math.round((performance.now() - started) * 100) / 100 };
  }

  /** A failure to reach Redis, as the stores report it. */
  private async unavailableOnError<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw new BlocklistUnavailableError(`${this.where}: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * Runs a write script, then waits for `minReplicas` replicas to hold it and for every agent to apply it. Each way to
   * fail says whether the change was made: refused (not connected, or an error Redis answered), unknown (no answer:
   * the connection dropped or the command timed out), or made but not yet on enough replicas.
   */
  private async write<T>(script: () => Promise<{ result: T; version: number; subscribers: number }>): Promise<T> {
    if (this.redis.status !== 'ready') {
      throw new BlocklistUnavailableError(
        `${this.where} is not connected (${this.redis.status}): nothing was changed; retry once it is back`,
      );
    }
    let outcome: { result: T; version: number; subscribers: number };
    try {
      outcome = await script();
    } catch (error) {
      const applied =
        (error as Error).name === 'ReplyError'
          ? 'nothing was changed'
          : 'the change may or may not have been made; retry it';
      throw new BlocklistUnavailableError(`${this.where}: ${describeRedisError(error)}: ${applied}`, { cause: error });
    }
    // Nothing removed: nothing to replicate or propagate.
    if (outcome.version === 0) return outcome.result;
    await this.replicated();
    await this.propagated(outcome.version, outcome.subscribers);
    return outcome.result;
  }

  /**
   * Waits (Redis WAIT, on the connection that wrote) until this connection's writes are on enough replicas: at least
   * `minReplicas`, and with Sentinel every replica the Sentinels see up. A failover promotes one of those, and a
   * planned one (SENTINEL FAILOVER) detaches it from the primary while the others still replicate: a write on only one
   * replica, the wrong one, would be lost. Fewer within the timeout: the change is on the primary, not safe from a
   * failover. With Sentinel, the write is acknowledged only if a majority of the Sentinels then name the primary written
   * to and none of them is failing it over (see `confirmPrimary`).
   */
  private async replicated(): Promise<void> {
    const { config } = this;
    const { minReplicas } = config;
    if (minReplicas === 0) return;
    const sentinels = 'sentinels' in config ? config.sentinels.length : 0;
    let wanted = minReplicas;
    if (sentinels > 0) {
      const views = await this.sentinelViews();
      const connected = this.connectedPrimary();
      const ours = views.filter((view) => connected === undefined || sameAddress(view, connected));
      this.refuseDuringFailover(ours);
      wanted = Math.max(minReplicas, ...ours.map((view) => view.replicasUp));
    }
    let replicas: number;
    let written: PrimaryIdentity | undefined;
    try {
      replicas = await this.redis.wait(wanted, redisReplicaAckTimeoutMs);
      if (sentinels > 0) written = await this.writtenPrimary();
    } catch (error) {
      throw new BlocklistUnavailableError(
        `${this.where}: ${describeRedisError(error)} while waiting for ${wanted} replica(s) to acknowledge the change: it may or may not have been made; retry it`,
        { cause: error },
      );
    }
    if (replicas < wanted) {
      throw new BlocklistUnavailableError(
        `${this.where}: the change was made on the primary, but ${replicas} of ${wanted} replica(s) acknowledged it within ${redisReplicaAckTimeoutMs} ms: a failover now would lose it; retry it`,
      );
    }
    if (written) await this.confirmPrimary(written, sentinels);
  }

  /**
   * After WAIT, whether the primary written to is still the primary: a failover under way while the replicas were
   * counted may have promoted one that had stopped replicating (for a few milliseconds the Sentinels see it
   * disconnected, so it was not counted), while the others still followed the old primary, acknowledged the change,
   * then resynchronised from the new one and dropped it. Only the Sentinel leading a failover reports it until the
   * promotion is done, and the others may still name the old primary: a majority of the Sentinels (every one asked)
   * must name the primary written to, and none of those report it failing over.
   */
  private async confirmPrimary(written: PrimaryIdentity, sentinels: number): Promise<void> {
    const naming = (await this.sentinelViews()).filter((view) => names(view, written));
    this.refuseDuringFailover(naming);
    const majority = Math.floor(sentinels / 2) + 1;
    if (naming.length < majority) {
      throw new BlocklistUnavailableError(
        `${this.where}: ${naming.length} of ${sentinels} Sentinels name the primary the change was made on (${majority} needed: a failover may be under way): it may or may not have been made; retry it`,
      );
    }
  }

  private refuseDuringFailover(views: readonly SentinelView[]): void {
    if (views.some((view) => view.failingOver)) {
      throw new BlocklistUnavailableError(
        `${this.where}: a failover is under way: the change may or may not have been made; retry it`,
      );
    }
  }

  /** The address the command connection is connected to, as its socket reports it. */
  private connectedPrimary(): { host: string; port: number } | undefined {
    const { remoteAddress, remotePort } = this.redis.stream;
    return remoteAddress === undefined || remotePort === undefined
      ? undefined
      : { host: remoteAddress, port: remotePort };
  }

  /** The primary the command connection wrote to: its run id (INFO) and address. */
  private async writtenPrimary(): Promise<PrimaryIdentity> {
    const connected = this.connectedPrimary();
    const runId = runIdOf(await this.redis.info('server'));
    return { runId, host: connected?.host, port: connected?.port };
  }

  /** With Sentinel, what each Sentinel that answers knows of the primary, asked all at once; none with REDIS_URL. */
  private async sentinelViews(): Promise<SentinelView[]> {
    if (!('sentinels' in this.config)) return [];
    const { sentinels, masterName } = this.config;
    const views = await Promise.all(sentinels.map(({ host, port }) => askSentinel(host, port, masterName)));
    return views.filter((view) => view !== undefined);
  }

  private async seed(): Promise<void> {
    const now = Date.now();
    const pairs = this.defaults.flatMap((cidr) => [
      cidr.toString(),
      JSON.stringify({ reason: 'default blocklist', addedAt: now, expiresAt: null } satisfies StoredEntry),
    ]);
    const version = await this.redis.blocklistSeed(this.keys.entries, this.keys.version, this.keys.changed, ...pairs);
    if (version > 0) this.log.log(`seeded the shared blocklist with ${this.defaults.length} default entries`);
  }

  /** Reloads the matcher; concurrent requests share one reload, and a request during a reload causes one more. */
  private requestReload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.reloadAgain = false;
        await this.reload();
      } while (this.reloadAgain);
    })().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  private async reload(): Promise<void> {
    const { version, entries } = await this.snapshot();
    // Reloads run one at a time, so a smaller version means Redis lost its data (a restart without persistence).
    if (version < this.version) {
      this.log.warn(
        `blocklist version went back from ${this.version} to ${version} (Redis lost its data): following Redis`,
      );
      this.acknowledged.clear();
    }
    this.blocklist = new CompiledBlocklist(entries);
    this.version = version;
    await this.redis.publish(this.keys.applied, `${this.instanceId} ${version}`);
  }

  private async snapshot(): Promise<{ version: number; entries: BlocklistEntry[] }> {
    const results = await this.redis.multi().get(this.keys.version).hgetall(this.keys.entries).exec();
    if (!results) throw new Error('the blocklist snapshot transaction was aborted');
    const [[versionError, version], [entriesError, hash]] = results as [
      [Error | null, string | null],
      [Error | null, Record<string, string>],
    ];
    if (versionError ?? entriesError) throw versionError ?? entriesError;
    const entries: BlocklistEntry[] = [];
    for (const [cidr, json] of Object.entries(hash)) {
      try {
        const stored = JSON.parse(json) as StoredEntry;
        entries.push({
          cidr: Cidr.parse(cidr),
          reason: stored.reason,
          addedAt: stored.addedAt,
          expiresAt: stored.expiresAt ?? undefined,
        });
      } catch (error) {
        this.log.warn(`ignoring the blocklist entry ${JSON.stringify(cidr)} in Redis: ${(error as Error).message}`);
      }
    }
    return { version: Number(version ?? 0), entries };
  }

  /** Resolves once this instance's matcher and `subscribers` instances in all hold `version` (or after a timeout). */
  private async propagated(version: number, subscribers: number): Promise<void> {
    await this.requestReload();
    if (this.acknowledgedCount(version) >= subscribers) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn(
          `blocklist version ${version}: ${this.acknowledgedCount(version)} of ${subscribers} agents acknowledged it within ${propagationTimeoutMs} ms`,
        );
        waiter.done();
      }, propagationTimeoutMs);
      const waiter: Waiter = {
        version,
        subscribers,
        done: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      this.waiters.add(waiter);
    });
  }

  private acknowledgedCount(version: number): number {
    let count = 0;
    for (const applied of this.acknowledged.values()) if (applied >= version) count++;
    return count;
  }

  private onMessage(channel: string, message: string): void {
    if (channel === this.keys.changed) {
      // During a reload, `version` may be about to change: the message's version is compared with a stale one.
      if (this.reloading || Number(message) !== this.version)
        this.requestReload().catch((error: Error) => this.log.warn(`blocklist reload failed: ${error.message}`));
      return;
    }
    if (channel !== this.keys.applied) return;
    const [instance, text] = message.split(' ');
    const version = Number(text);
    if (!instance || !Number.isInteger(version)) return;
    if ((this.acknowledged.get(instance) ?? 0) < version) this.acknowledged.set(instance, version);
    for (const waiter of this.waiters) if (this.acknowledgedCount(waiter.version) >= waiter.subscribers) waiter.done();
  }

  private async subscribe(): Promise<void> {
    await this.subscriber.subscribe(this.keys.changed, this.keys.applied);
    this.subscribed = true;
  }

  private onSubscriberReady(): void {
    if (!this.started) return;
    this.subscribe()
      .then(() => this.onConnectionsBack())
      .catch((error: Error) => this.log.debug(`SUBSCRIBE after reconnection failed: ${error.message}`));
  }

  /** Both connections are up again (and subscribed): say so once, and catch up with what was missed. */
  private onConnectionsBack(): void {
    if (!this.started || !this.connected()) return;
    if (this.down) this.log.log(`reconnected to ${this.where}: catching up with the blocklist`);
    this.down = false;
    // Changes published while a connection was down were missed, and after a failover the new primary may lack the
    // last writes that reached the old one: reload. A Redis that came back empty is seeded again, as at startup.
    this.seed()
      .then(() => this.requestReload())
      .catch((error: Error) => this.log.debug(`blocklist reload after reconnection failed: ${error.message}`));
  }

  private onConnectionLost(reason: string): void {
    if (!this.started || this.down) return;
    this.down = true;
    this.log.warn(
      `${this.where} unavailable (${reason}): serving blocklist version ${this.version} until it is back; admin writes answer 503`,
    );
  }
}

type Address = Pick<PrimaryIdentity, 'host' | 'port'>;

/** A primary: its run id (from INFO) and address, either unknown. */
interface PrimaryIdentity {
  readonly runId: string | undefined;
  readonly host: string | undefined;
  readonly port: number | undefined;
}

/** What one Sentinel knows of the primary it monitors. */
interface SentinelView extends PrimaryIdentity {
  /** Its replicas the Sentinel sees up: not down, not disconnected. */
  readonly replicasUp: number;
  /** The Sentinel leads a failover of it, or one of its replicas is being promoted or reconfigured. */
  readonly failingOver: boolean;
}

function sameAddress(a: Address, b: Address): boolean {
  return a.host !== undefined && a.host === b.host && a.port === b.port;
}

/**
 * Whether a Sentinel names `primary`: by run id, or by address while it does not know the run id yet (for a few
 * seconds after a failover, until it has asked the new primary for INFO).
 */
function names(view: SentinelView, primary: PrimaryIdentity): boolean {
  return view.runId !== undefined ? view.runId === primary.runId : sameAddress(view, primary);
}

/**
 * SENTINEL MASTER and REPLICAS of `masterName`, asked of the Sentinel at host:port (a connection per question: admin
 * writes are rare); undefined if it does not answer.
 */
async function askSentinel(host: string, port: number, masterName: string): Promise<SentinelView | undefined> {
  const sentinel = new Redis({
    host,
    port,
    lazyConnect: true,
    connectTimeout: sentinelQueryTimeoutMs,
    commandTimeout: sentinelQueryTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  sentinel.on('error', () => undefined); // the others are asked too
  try {
    await sentinel.connect();
    const primary = await sentinel.call('SENTINEL', 'MASTER', masterName);
    const replicas = await sentinel.call('SENTINEL', 'REPLICAS', masterName);
    if (!Array.isArray(primary) || !Array.isArray(replicas)) return undefined;
    const replicaFlags = replicas.map((fields: unknown) =>
      String((Array.isArray(fields) && field(fields, 'flags')) || ''),
    );
    return {
      runId: String(field(primary, 'runid') ?? '') || undefined,
      host: String(field(primary, 'ip') ?? '') || undefined,
      port: Number(field(primary, 'port')) || undefined,
      replicasUp: replicaFlags.filter((flags) => !/s_down|o_down|disconnected/.test(flags)).length,
      failingOver:
        /failover_in_progress/.test(String(field(primary, 'flags') ?? '')) ||
        replicaFlags.some((flags) => /promoted|reconf_/.test(flags)),
    };
  } catch {
    return undefined;
  } finally {
    sentinel.disconnect();
  }
}

/**
 * What went wrong with a command, for an admin's 503: Redis' answer, or what happened to the connection. A command
 * still unanswered when its connection drops fails with ioredis' MaxRetriesPerRequestError ("Reached the max retries
 * per request limit…"), which says nothing of that.
 */
function describeRedisError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.name === 'MaxRetriesPerRequestError' ? 'the connection was lost before Redis answered' : error.message;
}

/** The value after `name` in a flat field list, as Sentinel answers. */
function field(fields: readonly unknown[], name: string): unknown {
  const at = fields.indexOf(name);
  return at < 0 ? undefined : fields[at + 1];
}

/** The `run_id` of an INFO server answer. */
function runIdOf(info: string): string | undefined {
  return /^run_id:(\w+)/m.exec(info)?.[1];
}
