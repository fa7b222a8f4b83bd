import fc from 'fast-check';
import { SpoeIp } from 'nestjs-spoe';
import { Cidr, CidrMatcher } from './cidr';

const ip = (text: string): SpoeIp => SpoeIp.parse(text);

describe('Cidr.parse', () => {
  it.each([
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['203.0.113.7', '203.0.113.7/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['2001:DB8::/32', '2001:db8::/32'],
    ['2001:db8:0:0::1', '2001:db8::1/128'],
    ['::/0', '::/0'],
  ])('reads %s as %s', (text, canonical) => {
    expect(Cidr.parse(text).toString()).toBe(canonical);
  });

  it('stores an IPv4-mapped IPv6 network as the IPv4 network it denotes', () => {
    const cidr = Cidr.parse('::ffff:10.0.0.0/104');
    expect(cidr.family).toBe(4);
    expect(cidr.toString()).toBe('10.0.0.0/8');
  });

  it('keeps a mapped prefix shorter than /96 as IPv6 (it covers more than IPv4)', () => {
    expect(Cidr.parse('::/80').family).toBe(6);
  });

  it.each([
    ['10.1.2.3/8', /host bits set: did you mean 10\.0\.0\.0\/8\?/],
    ['2001:db8::1/32', /did you mean 2001:db8::\/32\?/],
    ['10.0.0.0/33', /prefix length .* 0 to 32/],
    ['2001:db8::/129', /prefix length .* 0 to 128/],
    ['10.0.0.0/', /prefix length/],
    ['10.0.0.0/-1', /prefix length/],
    ['10.0.0.0/08x', /prefix length/],
    ['10.0.0', /not an IP address or CIDR/],
    ['fe80::1%eth0', /not an IP address or CIDR/],
    ['', /not an IP address or CIDR/],
    ['example.com/24', /not an IP address or CIDR/],
  ])('rejects %s', (text, message) => {
    expect(() => Cidr.parse(text)).toThrow(message);
  });
});

describe('Cidr.contains', () => {
  it('matches addresses inside the network only', () => {
    const net = Cidr.parse('192.168.0.0/16');
    expect(net.contains(ip('192.168.255.1'))).toBe(true);
    expect(net.contains(ip('192.169.0.1'))).toBe(false);
  });

  it('matches an IPv4-mapped IPv6 address against an IPv4 network', () => {
    expect(Cidr.parse('10.0.0.0/8').contains(ip('::ffff:10.1.2.3'))).toBe(true);
  });

  it('never matches across families', () => {
    expect(Cidr.parse('::/0').contains(ip('10.1.2.3'))).toBe(false);
    expect(Cidr.parse('0.0.0.0/0').contains(ip('2001:db8::1'))).toBe(false);
  });
});

describe('CidrMatcher', () => {
  const build = (...cidrs: string[]): CidrMatcher<string> => {
    const matcher = new CidrMatcher<string>();
    for (const text of cidrs) matcher.set(Cidr.parse(text), text);
    return matcher;
  };

  it('finds nothing in an empty matcher', () => {
    expect(build().match(ip('10.1.2.3'))).toBeUndefined();
    expect(build().match(ip('2001:db8::1'))).toBeUndefined();
  });

  it('returns the most specific network containing the address', () => {
    const matcher = build('10.0.0.0/8', '10.1.0.0/16', '10.1.2.3/32', '0.0.0.0/0');
    expect(matcher.match(ip('10.1.2.3'))).toBe('10.1.2.3/32');
    expect(matcher.match(ip('10.1.9.9'))).toBe('10.1.0.0/16');
    expect(matcher.match(ip('10.9.9.9'))).toBe('10.0.0.0/8');
    expect(matcher.match(ip('192.0.2.1'))).toBe('0.0.0.0/0');
  });

  it('falls back to a less specific network when `accept` refuses the most specific one', () => {
    const matcher = build('10.0.0.0/8', '10.1.0.0/16');
    expect(matcher.match(ip('10.1.2.3'), (v) => v !== '10.1.0.0/16')).toBe('10.0.0.0/8');
    expect(matcher.match(ip('10.1.2.3'), () => false)).toBeUndefined();
  });

  it('matches IPv6 networks of every prefix length, boundaries included', () => {
    const matcher = build('2001:db8::/32', '2001:db8:ffff:ffff:ffff:ffff:ffff:fffe/127', '::1/128');
    expect(matcher.match(ip('2001:db8::'))).toBe('2001:db8::/32');
    expect(matcher.match(ip('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff'))).toBe(
      '2001:db8:ffff:ffff:ffff:ffff:ffff:fffe/127',
    );
    expect(matcher.match(ip('2001:db9::'))).toBeUndefined();
    expect(matcher.match(ip('::1'))).toBe('::1/128');
    expect(matcher.match(ip('::2'))).toBeUndefined();
  });

  it('looks IPv4-mapped IPv6 sources up as IPv4', () => {
    const matcher = build('10.0.0.0/8');
    expect(matcher.match(ip('::ffff:10.1.2.3'))).toBe('10.0.0.0/8');
    expect(matcher.match(ip('::ffff:11.1.2.3'))).toBeUndefined();
  });

  it('forgets deleted networks and counts what it holds', () => {
    const matcher = build('10.0.0.0/8', '2001:db8::/32');
    expect(matcher.size).toBe(2);
    expect(matcher.delete(Cidr.parse('10.0.0.0/8'))).toBe(true);
    expect(matcher.delete(Cidr.parse('10.0.0.0/8'))).toBe(false);
    expect(matcher.match(ip('10.1.2.3'))).toBeUndefined();
    expect(matcher.size).toBe(1);
  });

  it('replaces the value of a network set twice', () => {
    const matcher = new CidrMatcher<number>();
    matcher.set(Cidr.parse('10.0.0.0/8'), 1);
    matcher.set(Cidr.parse('10.0.0.0/8'), 2);
    expect(matcher.size).toBe(1);
    expect(matcher.match(ip('10.0.0.1'))).toBe(2);
  });

  it('agrees with a linear scan of Cidr.contains (IPv4 and IPv6, random networks and addresses)', () => {
    const v4 = fc.tuple(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 32 }));
    const v6 = fc.tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 128 }));
    const network = fc.oneof(v4, v6).map(([bytes, prefix]) => {
      const masked = bytes.map((byte, i) => byte & (0xff << (8 - Math.min(8, Math.max(0, prefix - i * 8)))));
      return Cidr.parse(`${SpoeIp.fromBytes(masked).toString()}/${prefix}`);
    });
    const address = fc
      .oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 }))
      .map((b) => SpoeIp.fromBytes(b));
    fc.assert(
      fc.property(fc.array(network, { maxLength: 20 }), fc.array(address, { maxLength: 20 }), (networks, addresses) => {
        const matcher = new CidrMatcher<Cidr>();
        for (const n of networks) matcher.set(n, n);
        for (const a of addresses) {
          const expected = networks.filter((n) => n.contains(a)).sort((x, y) => y.prefix - x.prefix)[0];
          expect(matcher.match(a)?.toString()).toBe(expected?.toString());
        }
        for (const n of networks) expect(matcher.match(SpoeIp.fromBytes(n.network))).toBeDefined();
      }),
      { numRuns: 300 },
    );
  });
});
