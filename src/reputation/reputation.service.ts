import { Injectable } from '@nestjs/common';
import { SpoeIp } from 'nestjs-spoe';
import { BlocklistStore } from './blocklist.store';

/** The score HAProxy receives as `sess.<prefix>.ip_score`: 0 (nothing known) to 100 (blocked). */
const BLOCKED_SCORE = 100;
const CLEAN_SCORE = 0;

/** Scores client addresses against the blocklist. Synchronous and allocation-free: it runs once per NOTIFY. */
@Injectable()
export class ReputationService {
  constructor(private readonly blocklist: BlocklistStore) {}

  /** INT32 in [0, 100]; 100 when blocked. IPv4-mapped IPv6 addresses are judged as the IPv4 they carry. */
  score(ip: SpoeIp): number {
    return this.blocklist.find(ip) ? BLOCKED_SCORE : CLEAN_SCORE;
  }
}
