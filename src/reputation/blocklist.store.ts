import { SpoeIp } from 'nestjs-spoe';
import { Cidr, CidrMatcher } from './cidr';

/** One blocked network. */
export interface BlocklistEntry {
  readonly cidr: Cidr;
  readonly reason: string | undefined;
  /** Epoch ms. */
  readonly addedAt: number;
  /** Epoch ms after which the entry no longer blocks; undefined: never expires. */
  readonly expiresAt: number | undefined;
}

/** What the admin API asks to add. */
export interface NewBlocklistEntry {
  readonly cidr: Cidr;
  readonly reason?: string;
  /** Time to live in seconds; undefined: forever. */
  readonly ttlSeconds?: number;
}

/**
 * A store's own part of readiness, for a store that depends on something that can fail (Redis). Terminus stays out of
 * the stores: BlocklistHealthIndicator turns this into an indicator. A store's trouble never makes the agent unready:
 * `find` answers from memory whatever happens to what holds the blocklist, so the most it can be is degraded.
 */
export interface BlocklistStoreHealth {
  /** The indicator's key in /health/ready, e.g. "redis". */
  readonly key: string;
  /** The store's state (connections, version, entries), reported up or degraded. */
  readonly details: Readonly<Record<string, unknown>>;
  /**
   * Why the store is degraded, when that is known without a round trip (a connection not ready): lookups go on from
   * the last version loaded, writes fail.
   */
  readonly degraded?: string;
  /** A round trip to what the store depends on (a PING): resolves with more details, rejects saying why it failed. */
  readonly probe?: () => Promise<Readonly<Record<string, unknown>>>;
}

/**
 * What a store throws when what holds the blocklist cannot be reached (Redis away, the supervisor not answering): the
 * write or read may succeed later. The admin API answers 503.
 */
export class BlocklistUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BlocklistUnavailableError';
  }
}

/**
 * Where the blocklist lives. `find` is the per-NOTIFY hot path: synchronous, no I/O, answered from a matcher held in
 * memory. Writes resolve once `find` sees them (and, for a shared store, once every agent instance does). `list`, `add`
 * and `remove` reject with {@link BlocklistUnavailableError} when the store cannot be reached.
 */
export abstract class BlocklistStore {
  /** The live (unexpired) entry covering `ip`, the most specific first. */
  abstract find(ip: SpoeIp): BlocklistEntry | undefined;
  /** Every live entry, ordered by address. */
  abstract list(): Promise<BlocklistEntry[]>;
  /** Adds the entry, replacing one for the same network. */
  abstract add(entry: NewBlocklistEntry): Promise<BlocklistEntry>;
  /** Removes the entry of exactly this network; false when there was none. */
  abstract remove(cidr: Cidr): Promise<boolean>;

  /** The store's part of readiness; undefined (the default) for a store that depends on nothing that can fail. */
  health(): BlocklistStoreHealth | undefined {
    return undefined;
  }
}

/** A compiled, immutable-from-outside view of a set of entries: the matcher every store answers `find` from. */
export class CompiledBlocklist {
  private readonly matcher = new CidrMatcher<BlocklistEntry>();
  private readonly entries = new Map<string, BlocklistEntry>();

  constructor(entries: Iterable<BlocklistEntry> = []) {
    for (const entry of entries) this.set(entry);
  }

  get size(): number {
    return this.entries.size;
  }

  find(ip: SpoeIp): BlocklistEntry | undefined {
    return this.matcher.match(ip, isLive);
  }

  set(entry: BlocklistEntry): void {
    this.entries.set(entry.cidr.toString(), entry);
    this.matcher.set(entry.cidr, entry);
  }

  delete(cidr: Cidr): boolean {
    const key = cidr.toString();
    const entry = this.entries.get(key);
    if (!entry) return false;
    this.entries.delete(key);
    this.matcher.delete(cidr);
    return isLive(entry);
  }

  /** Live entries ordered by address (IPv4 first), then by prefix length. */
  live(): BlocklistEntry[] {
    return [...this.entries.values()].filter(isLive).sort(compareEntries);
  }

  /** Drops expired entries; returns how many. */
  prune(now = Date.now()): number {
    let removed = 0;
    for (const entry of this.entries.values()) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= now) {
        this.entries.delete(entry.cidr.toString());
        this.matcher.delete(entry.cidr);
        removed++;
      }
    }
    return removed;
  }
}

/** Builds the entry that `add` stores. */
export function makeEntry(input: NewBlocklistEntry, now = Date.now()): BlocklistEntry {
  return {
    cidr: input.cidr,
    reason: input.reason,
    addedAt: now,
    expiresAt: input.ttlSeconds === undefined ? undefined : now + input.ttlSeconds * 1000,
  };
}

function isLive(entry: BlocklistEntry): boolean {
  return entry.expiresAt === undefined || entry.expiresAt > Date.now();
}

function compareEntries(a: BlocklistEntry, b: BlocklistEntry): number {
  if (a.cidr.family !== b.cidr.family) return a.cidr.family - b.cidr.family;
  for (let i = 0; i < a.cidr.network.length; i++) {
    if (a.cidr.network[i] !== b.cidr.network[i]) return a.cidr.network[i] - b.cidr.network[i];
  }
  return a.cidr.prefix - b.cidr.prefix;
}
