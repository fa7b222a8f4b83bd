import { SpoeIp } from 'nestjs-spoe';
import { Cidr } from './cidr';
import { MemoryBlocklistStore } from './memory-blocklist.store';
import { ReputationService } from './reputation.service';

const ip = (text: string): SpoeIp => SpoeIp.parse(text);

describe('MemoryBlocklistStore', () => {
  afterEach(() => jest.useRealTimers());

  it('starts with the default entries', async () => {
    const store = new MemoryBlocklistStore([Cidr.parse('10.0.0.0/8')]);
    expect(store.find(ip('10.1.2.3'))?.cidr.toString()).toBe('10.0.0.0/8');
    expect((await store.list()).map((e) => e.cidr.toString())).toEqual(['10.0.0.0/8']);
  });

  it('sees an added entry at the very next lookup, and forgets a removed one', async () => {
    const store = new MemoryBlocklistStore();
    await store.add({ cidr: Cidr.parse('2001:db8::/32'), reason: 'abuse' });
    expect(store.find(ip('2001:db8::42'))).toMatchObject({ reason: 'abuse', expiresAt: undefined });
    expect(await store.remove(Cidr.parse('2001:db8::/32'))).toBe(true);
    expect(store.find(ip('2001:db8::42'))).toBeUndefined();
    expect(await store.remove(Cidr.parse('2001:db8::/32'))).toBe(false);
  });

  it('stops blocking when the TTL runs out, and drops the entry from the list', async () => {
    jest.useFakeTimers({ now: 1_000_000 });
    const store = new MemoryBlocklistStore();
    const entry = await store.add({ cidr: Cidr.parse('192.0.2.7'), ttlSeconds: 60 });
    expect(entry.expiresAt).toBe(1_060_000);
    jest.setSystemTime(1_059_999);
    expect(store.find(ip('192.0.2.7'))).toBeDefined();
    jest.setSystemTime(1_060_000);
    expect(store.find(ip('192.0.2.7'))).toBeUndefined();
    expect(await store.list()).toEqual([]);
    expect(await store.remove(Cidr.parse('192.0.2.7'))).toBe(false);
  });

  it('lets a longer-lived wider entry block once a narrower one expired', async () => {
    jest.useFakeTimers({ now: 0 });
    const store = new MemoryBlocklistStore([Cidr.parse('10.0.0.0/8')]);
    await store.add({ cidr: Cidr.parse('10.1.0.0/16'), ttlSeconds: 1 });
    jest.setSystemTime(5000);
    expect(store.find(ip('10.1.2.3'))?.cidr.toString()).toBe('10.0.0.0/8');
  });

  it('lists entries by address, IPv4 first', async () => {
    const store = new MemoryBlocklistStore(
      ['2001:db8::/32', '10.0.0.0/8', '10.0.0.0/16', '9.0.0.0/8'].map((c) => Cidr.parse(c)),
    );
    expect((await store.list()).map((e) => e.cidr.toString())).toEqual([
      '9.0.0.0/8',
      '10.0.0.0/8',
      '10.0.0.0/16',
      '2001:db8::/32',
    ]);
  });
});

describe('ReputationService', () => {
  const service = new ReputationService(new MemoryBlocklistStore([Cidr.parse('10.0.0.0/8')]));

  it('scores a blocked address 100', () => {
    expect(service.score(ip('10.1.2.3'))).toBe(100);
  });

  it('scores an unknown address 0', () => {
    expect(service.score(ip('192.0.2.1'))).toBe(0);
  });

  it('judges an IPv4-mapped IPv6 source as its IPv4 address', () => {
    expect(service.score(ip('::ffff:10.1.2.3'))).toBe(100);
  });
});
