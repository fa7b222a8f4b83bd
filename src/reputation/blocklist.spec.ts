import { BadRequestException } from '@nestjs/common';
import { SpoeIp } from 'nestjs-spoe';
import { parseNewEntry } from './blocklist.controller';
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
    const store = new MemoryBlocklistStore(['2001:db8::/32', '10.0.0.0/8', '10.0.0.0/16', '9.0.0.0/8'].map((c) => Cidr.parse(c)));
    expect((await store.list()).map((e) => e.cidr.toString())).toEqual(['9.0.0.0/8', '10.0.0.0/8', '10.0.0.0/16', '2001:db8::/32']);
  });
});

describe('ReputationService', () => {
  const service = new ReputationService(new MemoryBlocklistStore([Cidr.parse('10.0.0.0/8')]));

  it('scores a blocked address 100 and names the entry', () => {
    expect(service.check(ip('10.1.2.3'))).toMatchObject({ score: 100, entry: { cidr: Cidr.parse('10.0.0.0/8') } });
  });

  it('scores an unknown address 0', () => {
    expect(service.check(ip('192.0.2.1'))).toEqual({ score: 0, entry: undefined });
  });

  it('judges an IPv4-mapped IPv6 source as its IPv4 address', () => {
    expect(service.check(ip('::ffff:10.1.2.3')).score).toBe(100);
  });
});

describe('parseNewEntry (POST /blocklist body)', () => {
  it('accepts a CIDR or an address, with an optional TTL and reason', () => {
    expect(parseNewEntry({ cidr: '203.0.113.7' })).toEqual({ cidr: Cidr.parse('203.0.113.7/32') });
    expect(parseNewEntry({ cidr: ' 2001:db8::/32 ', ttlSeconds: 60, reason: 'scan' })).toEqual({ cidr: Cidr.parse('2001:db8::/32'), ttlSeconds: 60, reason: 'scan' });
  });

  it.each([
    [null, /expected a JSON object/],
    [['10.0.0.0/8'], /expected a JSON object/],
    [{}, /"cidr" is required/],
    [{ cidr: 10 }, /"cidr" is required/],
    [{ cidr: '10.0.0.1/8' }, /"cidr": 10\.0\.0\.1\/8 has host bits set/],
    [{ cidr: '10.0.0.0/8', ttlSeconds: 0 }, /"ttlSeconds" must be an integer/],
    [{ cidr: '10.0.0.0/8', ttlSeconds: 1.5 }, /"ttlSeconds" must be an integer/],
    [{ cidr: '10.0.0.0/8', ttlSeconds: '60' }, /"ttlSeconds" must be an integer/],
    [{ cidr: '10.0.0.0/8', reason: 5 }, /"reason" must be a string/],
    [{ cidr: '10.0.0.0/8', ttl: 5 }, /unknown field\(s\) "ttl"/],
  ])('answers 400 for %j', (body, message) => {
    expect(() => parseNewEntry(body)).toThrow(BadRequestException);
    expect(() => parseNewEntry(body)).toThrow(message);
  });
});
