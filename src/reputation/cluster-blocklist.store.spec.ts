import { SpoeIp } from 'nestjs-spoe';
import { BlocklistChange, SupervisorAnswers, SupervisorRequest } from '../cluster/messages';
import { SupervisorLink } from '../cluster/worker';
import { Cidr } from './cidr';
import { ClusterBlocklistStore, entryFromWire, entryToWire } from './cluster-blocklist.store';

/** The two methods the store uses, with the supervisor's answers and broadcasts played by the test. */
class FakeSupervisor {
  listener: ((change: BlocklistChange) => void) | undefined;
  readonly requests: SupervisorRequest[] = [];
  answer: (request: SupervisorRequest) => SupervisorAnswers[keyof SupervisorAnswers] = () => [];

  onBlocklistChange(listener: (change: BlocklistChange) => void): void {
    this.listener = listener;
  }

  async request(request: SupervisorRequest): Promise<SupervisorAnswers[keyof SupervisorAnswers]> {
    this.requests.push(request);
    return this.answer(request);
  }
}

const wire = (cidr: string, reason: string | null = null) => ({ cidr, reason, addedAt: 1, expiresAt: null });
const blocked = (store: ClusterBlocklistStore, ip: string): boolean => store.find(SpoeIp.parse(ip)) !== undefined;

describe('ClusterBlocklistStore', () => {
  let supervisor: FakeSupervisor;
  let store: ClusterBlocklistStore;

  beforeEach(() => {
    supervisor = new FakeSupervisor();
    store = new ClusterBlocklistStore(supervisor as unknown as SupervisorLink);
  });

  it('subscribes at init and answers lookups from the snapshot', async () => {
    supervisor.answer = () => [wire('10.0.0.0/8', 'default blocklist')];
    await store.onModuleInit();
    expect(supervisor.requests).toEqual([{ kind: 'blocklist-subscribe' }]);
    expect(blocked(store, '10.1.2.3')).toBe(true);
    expect((await store.list()).map((e) => [e.cidr.toString(), e.reason])).toEqual([
      ['10.0.0.0/8', 'default blocklist'],
    ]);
  });

  it('applies changes delivered before the snapshot is installed, after it', async () => {
    supervisor.answer = () => {
      // IPC delivers the answer and the next change together: the change reaches the listener first.
      supervisor.listener!({ op: 'set', entry: wire('192.0.2.0/24') });
      supervisor.listener!({ op: 'delete', cidr: '10.0.0.0/8' });
      return [wire('10.0.0.0/8')];
    };
    await store.onModuleInit();
    expect(blocked(store, '192.0.2.1')).toBe(true);
    expect(blocked(store, '10.1.2.3')).toBe(false);
  });

  it('applies broadcast changes to its replica', async () => {
    await store.onModuleInit();
    supervisor.listener!({ op: 'set', entry: wire('2001:db8::/32') });
    expect(blocked(store, '2001:db8::1')).toBe(true);
    supervisor.listener!({ op: 'delete', cidr: '2001:db8::/32' });
    expect(blocked(store, '2001:db8::1')).toBe(false);
  });

  it('sends writes to the supervisor', async () => {
    await store.onModuleInit();
    supervisor.answer = (request) => (request.kind === 'blocklist-add' ? wire(request.cidr, request.reason) : true);
    const entry = await store.add({ cidr: Cidr.parse('203.0.113.0/24'), reason: 'test', ttlSeconds: 60 });
    expect(entry.cidr.toString()).toBe('203.0.113.0/24');
    expect(await store.remove(Cidr.parse('203.0.113.0/24'))).toBe(true);
    expect(supervisor.requests.slice(1)).toEqual([
      { kind: 'blocklist-add', cidr: '203.0.113.0/24', reason: 'test', ttlSeconds: 60 },
      { kind: 'blocklist-remove', cidr: '203.0.113.0/24' },
    ]);
  });

  it('carries entries over the wire without loss', () => {
    const entry = { cidr: Cidr.parse('2001:db8::/48'), reason: undefined, addedAt: 1000, expiresAt: 5000 };
    expect(entryToWire(entry)).toEqual({ cidr: '2001:db8::/48', reason: null, addedAt: 1000, expiresAt: 5000 });
    expect(entryFromWire(entryToWire(entry))).toEqual(entry);
  });
});
