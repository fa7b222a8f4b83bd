import { Injectable } from '@nestjs/common';
import { SpoeIp } from 'nestjs-spoe';
import { BlocklistEntry, BlocklistStore } from './blocklist.store';

/** The score HAProxy receives as `sess.<prefix>.ip_score`: 0 (nothing known) to 100 (blocked). */
export const BLOCKED_SCORE = 100;
export const CLEAN_SCORE = 0;

/** What the agent knows about a client address. */
export interface Reputation {
  /** INT32 in [0, 100]; 100 when blocked. */
  readonly score: number;
  /** The blocklist entry that matched, if any. */
  readonly entry: BlocklistEntry | undefined;
}

/** Scores client addresses against the blocklist. Synchronous: it runs once per NOTIFY. */
@Injectable()
export class ReputationService {
  constructor(private readonly blocklist: BlocklistStore) {}

  /** IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 clients) are judged as the IPv4 they carry. */
  check(ip: SpoeIp): Reputation {
    const entry = this.blocklist.find(ip.unmapped());
    return { score: entry ? BLOCKED_SCORE : CLEAN_SCORE, entry };
  }
}
