import { SpoeIp } from 'nestjs-spoe';
import { BlocklistEntry, BlocklistStore, CompiledBlocklist, makeEntry, NewBlocklistEntry } from './blocklist.store';
import { Cidr } from './cidr';

/** The embedded store: one process, nothing to install. Writes are visible to the very next `find`. */
export class MemoryBlocklistStore extends BlocklistStore {
  private readonly blocklist: CompiledBlocklist;

  constructor(initial: readonly Cidr[] = []) {
    super();
    const now = Date.now();
    this.blocklist = new CompiledBlocklist(
      initial.map((cidr) => makeEntry({ cidr, reason: 'default blocklist' }, now)),
    );
  }

  find(ip: SpoeIp): BlocklistEntry | undefined {
    return this.blocklist.find(ip);
  }

  async list(): Promise<BlocklistEntry[]> {
    this.blocklist.prune();
    return this.blocklist.live();
  }

  async add(input: NewBlocklistEntry): Promise<BlocklistEntry> {
    this.blocklist.prune();
    const entry = makeEntry(input);
    this.blocklist.set(entry);
    return entry;
  }

  async remove(cidr: Cidr): Promise<boolean> {
    return this.blocklist.delete(cidr);
  }
}
