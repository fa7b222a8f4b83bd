import fc from 'fast-check';
import { BlockList, isIPv4, SocketAddress } from 'node:net';
import { inspect } from 'node:util';
import { SpoeIp } from './ip';

/**
 * The full, uncompressed, upper-case form with leading zeros: "0001:0DB8:…". Valid, and as far from RFC 5952 as it
 * gets.
 */
function longForm(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2)
    groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16).padStart(4, '0').toUpperCase());
  return groups.join(':');
}

/** How Node (libuv's inet_ntop) prints an IPv6 address. */
function nodeFormat(text: string): string {
  return new SocketAddress({ address: text, family: 'ipv6' }).address;
}

/** IPv6 addresses whose groups are often zero, so that runs of zeros of every length and position come up. */
const ipv6Bytes = fc
  .array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 })
  .map((groups) => {
    const bytes = new Uint8Array(16);
    groups.forEach((g, i) => {
      bytes[2 * i] = g >> 8;
      bytes[2 * i + 1] = g & 0xff;
    });
    return bytes;
  });

/**
 * The deprecated IPv4-compatible form (::a.b.c.d, RFC 4291 2.5.5.1): libuv prints it dotted, RFC 5952 section 5 asks
 * for mixed notation only for addresses known to embed IPv4 (mapped, translated…), so SpoeIp prints it in hex.
 */
function isV4Compatible(bytes: Uint8Array): boolean {
  return bytes.subarray(0, 12).every((b) => b === 0) && ((bytes[12] << 8) | bytes[13]) !== 0;
}

describe('SpoeIp', () => {
  describe('parse and toString', () => {
    it.each([
      ['192.168.0.1', '192.168.0.1'],
      ['0.0.0.0', '0.0.0.0'],
      ['255.255.255.255', '255.255.255.255'],
    ])('reads the IPv4 address %s', (text, printed) => {
      const ip = SpoeIp.parse(text);
      expect(ip.family).toBe(4);
      expect(ip.toString()).toBe(printed);
    });

    it('keeps IPv4 bytes in network order', () => {
      expect([...SpoeIp.parse('192.168.0.1').bytes]).toEqual([192, 168, 0, 1]);
    });

    it('keeps IPv6 bytes in network order', () => {
      expect(Buffer.from(SpoeIp.parse('2001:db8::102:304').bytes).toString('hex')).toBe(
        '20010db8000000000000000001020304',
      );
    });

    it.each([
      ['::', '::', 'the unspecified address'],
      ['::1', '::1', 'loopback'],
      ['0:0:0:0:0:0:0:1', '::1', 'loopback, uncompressed'],
      ['1::', '1::', 'a trailing run of zeros'],
      ['2001:DB8::1', '2001:db8::1', 'upper case (lowered)'],
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1', 'leading zeros (dropped)'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1', 'a single zero group (not compressed)'],
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1', 'two runs (the longest compressed)'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 'two equal runs (the first compressed)'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8', 'no zero group'],
      ['0:1:2:3:4:5:6:7', '0:1:2:3:4:5:6:7', 'a lone leading zero group'],
      ['fe80::0001', 'fe80::1', 'a compressed input with a padded group'],
      ['::ffff:1.2.3.4', '::ffff:1.2.3.4', 'IPv4-mapped, dotted'],
      ['::FFFF:0102:0304', '::ffff:1.2.3.4', 'IPv4-mapped written in hex (printed dotted)'],
      ['0:0:0:0:0:ffff:1.2.3.4', '::ffff:1.2.3.4', 'IPv4-mapped, uncompressed'],
      ['::ffff:0.0.0.0', '::ffff:0.0.0.0', 'IPv4-mapped 0.0.0.0'],
      ['64:ff9b::1.2.3.4', '64:ff9b::102:304', 'an IPv4 tail outside the mapped prefix (printed in hex)'],
      ['::1.2.3.4', '::102:304', 'the deprecated IPv4-compatible form (printed in hex)'],
    ])('prints %s as %s (%s)', (text, printed) => {
      const ip = SpoeIp.parse(text);
      expect(ip.family).toBe(6);
      expect(ip.toString()).toBe(printed);
    });

    it.each([
      '',
      'abc',
      '1.2.3',
      '1.2.3.4.5',
      '256.0.0.1',
      '01.2.3.4',
      '1:2:3:4:5:6:7:8:9',
      ':::',
      '1::2::3',
      '::g',
      ' 1.2.3.4',
    ])('rejects %p with a TypeError', (text) => {
      expect(() => SpoeIp.parse(text)).toThrow(TypeError);
    });

    it.each(['fe80::1%eth0', 'fe80::1%eth0.5', 'fe80::1%1'])(
      'rejects the scoped address %s: IPV6 carries no zone',
      (text) => {
        expect(() => SpoeIp.parse(text)).toThrow(TypeError);
      },
    );
  });

  describe('agreement with node:net', () => {
    it('prints random IPv6 addresses as Node does (IPv4-compatible ones excepted)', () => {
      fc.assert(
        fc.property(ipv6Bytes, (bytes) => {
          fc.pre(!isV4Compatible(bytes));
          const text = SpoeIp.fromBytes(bytes).toString();
          expect(text).toBe(nodeFormat(longForm(bytes)));
        }),
      );
    });

    it('reads the same address as Node from any textual form', () => {
      fc.assert(
        fc.property(ipv6Bytes, (bytes) => {
          const blockList = new BlockList();
          blockList.addAddress(SpoeIp.parse(longForm(bytes)).toString(), 'ipv6');
          expect(blockList.check(longForm(bytes), 'ipv6')).toBe(true);
        }),
      );
    });

    it('prints random IPv4 addresses as valid dotted quads', () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (bytes) => {
          const text = SpoeIp.fromBytes(bytes).toString();
          expect(isIPv4(text)).toBe(true);
          expect(text).toBe([...bytes].join('.'));
        }),
      );
    });
  });

  describe('round trips through bytes', () => {
    it('IPv6: parse(toString(bytes)) gives the same bytes', () => {
      fc.assert(
        fc.property(fc.oneof(ipv6Bytes, fc.uint8Array({ minLength: 16, maxLength: 16 })), (bytes) => {
          expect([...SpoeIp.parse(SpoeIp.fromBytes(bytes).toString()).bytes]).toEqual([...bytes]);
        }),
      );
    });

    it('IPv6: any valid form prints canonically', () => {
      fc.assert(
        fc.property(ipv6Bytes, (bytes) => {
          expect(SpoeIp.parse(longForm(bytes)).toString()).toBe(SpoeIp.fromBytes(bytes).toString());
        }),
      );
    });

    it('IPv4: parse(toString(bytes)) gives the same bytes', () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (bytes) => {
          const ip = SpoeIp.parse(SpoeIp.fromBytes(bytes).toString());
          expect(ip.family).toBe(4);
          expect([...ip.bytes]).toEqual([...bytes]);
        }),
      );
    });
  });

  describe('fromBytes', () => {
    it('makes an IPv4 address of 4 bytes', () => {
      expect(SpoeIp.fromBytes(Uint8Array.of(10, 0, 0, 1)).toString()).toBe('10.0.0.1');
    });

    it('makes an IPv6 address of 16 bytes', () => {
      const bytes = new Uint8Array(16);
      bytes[15] = 1;
      expect(SpoeIp.fromBytes(bytes).toString()).toBe('::1');
    });

    it('copies the bytes', () => {
      const bytes = Uint8Array.of(10, 0, 0, 1);
      const ip = SpoeIp.fromBytes(bytes);
      bytes[0] = 192;
      expect(ip.toString()).toBe('10.0.0.1');
    });

    it.each([0, 3, 5, 15, 17])('rejects %i bytes with a TypeError', (length) => {
      expect(() => SpoeIp.fromBytes(new Uint8Array(length))).toThrow(TypeError);
    });
  });

  describe('isV4Mapped and unmapped', () => {
    it('unmaps ::ffff:a.b.c.d to the IPv4 address', () => {
      const ip = SpoeIp.parse('::ffff:1.2.3.4').unmapped();
      expect(ip.family).toBe(4);
      expect(ip.toString()).toBe('1.2.3.4');
    });

    it.each(['::1.2.3.4', '::1:ffff:1.2.3.4', '64:ff9b::1.2.3.4', '2001:db8::1'])('leaves %s as it is', (text) => {
      const ip = SpoeIp.parse(text);
      expect(ip.isV4Mapped).toBe(false);
      expect(ip.unmapped()).toBe(ip);
    });

    it('leaves an IPv4 address as it is', () => {
      const ip = SpoeIp.parse('1.2.3.4');
      expect(ip.isV4Mapped).toBe(false);
      expect(ip.unmapped()).toBe(ip);
    });

    it('recognises the mapped prefix in any notation', () => {
      expect(SpoeIp.parse('0:0:0:0:0:FFFF:0A00:0001').isV4Mapped).toBe(true);
    });
  });

  describe('equals and compare', () => {
    it('equates different notations of one address', () => {
      expect(SpoeIp.parse('2001:DB8:0:0::1').equals(SpoeIp.parse('2001:db8::0001'))).toBe(true);
    });

    it('tells different addresses apart', () => {
      expect(SpoeIp.parse('10.0.0.1').equals(SpoeIp.parse('10.0.0.2'))).toBe(false);
    });

    it('does not equate an IPv4 address with its IPv4-mapped form', () => {
      expect(SpoeIp.parse('1.2.3.4').equals(SpoeIp.parse('::ffff:1.2.3.4'))).toBe(false);
    });

    it('orders IPv4 before IPv6', () => {
      expect(SpoeIp.parse('255.255.255.255').compare(SpoeIp.parse('::'))).toBeLessThan(0);
      expect(SpoeIp.parse('::').compare(SpoeIp.parse('0.0.0.0'))).toBeGreaterThan(0);
    });

    it('orders addresses of one family numerically', () => {
      const sorted = ['10.0.0.10', '9.255.255.255', '10.0.0.9', '::1', '::', 'fe80::', '2001:db8::']
        .map((t) => SpoeIp.parse(t))
        .sort((a, b) => a.compare(b))
        .map(String);
      expect(sorted).toEqual(['9.255.255.255', '10.0.0.9', '10.0.0.10', '::', '::1', '2001:db8::', 'fe80::']);
    });

    it('is antisymmetric and zero exactly for equal addresses', () => {
      const ip = fc
        .oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 }))
        .map((b) => SpoeIp.fromBytes(b));
      fc.assert(
        fc.property(ip, ip, (a, b) => {
          expect(Math.sign(a.compare(b))).toBe(-Math.sign(b.compare(a)) || 0);
          expect(a.compare(b) === 0).toBe(a.family === b.family && Buffer.from(a.bytes).equals(b.bytes));
        }),
      );
    });
  });

  describe('printing', () => {
    it('serialises to JSON as its text', () => {
      expect(JSON.stringify({ client: SpoeIp.parse('::FFFF:1.2.3.4') })).toBe('{"client":"::ffff:1.2.3.4"}');
    });

    it('shows its text in util.inspect', () => {
      expect(inspect(SpoeIp.parse('10.0.0.1'))).toBe('SpoeIp(10.0.0.1)');
    });

    it('converts to its text in template strings', () => {
      expect(`${SpoeIp.parse('2001:db8::1')}`).toBe('2001:db8::1');
    });
  });
});
