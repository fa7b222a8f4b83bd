import { OnModuleInit } from '@nestjs/common';
import { SpoeIp } from 'nestjs-spoe';
import { BlocklistChange, SupervisorAnswers, SupervisorRequest, WireBlocklistEntry } from '../cluster/messages';
import { SupervisorLink } from '../cluster/worker';
import { AGENT_LIMITS } from '../config/agent.config';
import {
  BlocklistEntry,
  BlocklistStore,
  BlocklistUnavailableError,
  CompiledBlocklist,
  NewBlocklistEntry,
} from './blocklist.store';
import { Cidr } from './cidr';

/**
 * The in-memory blocklist of a worker under the supervisor (SPOE_WORKERS > 1, no Redis): a replica of the
 * supervisor's blocklist. `find` and `list` read the local replica; `add` and `remove` go to the supervisor, which
 * applies the write, sends the change to every worker and answers once each has applied it — so when a write returns,
 * the next NOTIFY on any worker sees it. The replica is loaded before the app listens.
 */
export class ClusterBlocklistStore extends BlocklistStore implements OnModuleInit {
  private blocklist = new CompiledBlocklist();

  constructor(private readonly supervisor: SupervisorLink) {
    super();
  }

  async onModuleInit(): Promise<void> {
    // Changes follow the snapshot on the IPC channel, but may be delivered before the snapshot's promise continues.
    let early: BlocklistChange[] | undefined = [];
    this.supervisor.onBlocklistChange((change) => (early ? early.push(change) : this.apply(change)));
    const entries = await this.supervisor.request(
      { kind: 'blocklist-subscribe' },
      AGENT_LIMITS.supervisorRequestTimeoutMs,
    );
    this.blocklist = new CompiledBlocklist(entries.map(entryFromWire));
    for (const change of early) this.apply(change);
    early = undefined;
  }

  find(ip: SpoeIp): BlocklistEntry | undefined {
    return this.blocklist.find(ip);
  }

  async list(): Promise<BlocklistEntry[]> {
    this.blocklist.prune();
    return this.blocklist.live();
  }

  async add(input: NewBlocklistEntry): Promise<BlocklistEntry> {
    const request = {
      kind: 'blocklist-add',
      cidr: input.cidr.toString(),
      reason: input.reason ?? null,
      ttlSeconds: input.ttlSeconds ?? null,
    } as const;
    return entryFromWire(await this.write(request));
  }

  remove(cidr: Cidr): Promise<boolean> {
    return this.write({ kind: 'blocklist-remove', cidr: cidr.toString() });
  }

  /** A write, through the supervisor: it answers once every worker has applied it. */
  private async write<R extends SupervisorRequest>(request: R): Promise<SupervisorAnswers[R['kind']]> {
    try {
      return await this.supervisor.request(request, AGENT_LIMITS.supervisorRequestTimeoutMs);
    } catch (error) {
      throw new BlocklistUnavailableError((error as Error).message, { cause: error });
    }
  }

  private apply(change: BlocklistChange): void {
    if (change.op === 'set') this.blocklist.set(entryFromWire(change.entry));
    else this.blocklist.delete(Cidr.parse(change.cidr));
  }
}

export function entryToWire(entry: BlocklistEntry): WireBlocklistEntry {
  return {
    cidr: entry.cidr.toString(),
    reason: entry.reason ?? null,
    addedAt: entry.addedAt,
    expiresAt: entry.expiresAt ?? null,
  };
}

export function entryFromWire(wire: WireBlocklistEntry): BlocklistEntry {
  return {
    cidr: Cidr.parse(wire.cidr),
    reason: wire.reason ?? undefined,
    addedAt: wire.addedAt,
    expiresAt: wire.expiresAt ?? undefined,
  };
}
