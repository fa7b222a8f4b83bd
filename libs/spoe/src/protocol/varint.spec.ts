import fc from 'fast-check';
import { ByteReader } from './byte-reader';
import { SpopInvalidFrameError } from './errors';
import { UINT64_MAX, VARINT_MAX_BYTES, varintSize, writeVarint } from './varint';

/**
 * The Peers encoding as SPOE.txt 3.1 draws it, written without looking at varint.ts. Each length owns a range:
 *
 *      0 <= X < 240       1 byte   [ XXXX XXXX ]
 *    240 <= X < 2288      2 bytes  [ 1111 XXXX ] [ 0XXX XXXX ]                  2288 = 240 + 2^11
 *   2288 <= X < 264432    3 bytes  [ 1111 XXXX ] [ 1XXX XXXX ] [ 0XXX XXXX ]    264432 = 2288 + 2^18
 *   …                     n bytes  4 + 7(n-1) payload bits, so the range holds 2^(4+7(n-1)) values
 *
 * Within its range a value is written as its offset from the range's start, least significant bits first: 4 bits
 * under the 1111 marker, then 7 bits per byte, the high bit set on every byte but the last.
 */
function rangeStart(length: number): bigint {
  if (length === 1) return 0n;
  let start = 240n;
  for (let n = 2; n < length; n++) start += 1n << BigInt(4 + 7 * (n - 1));
  return start;
}

function referenceEncode(value: bigint): number[] {
  let length = 1;
  while (value >= rangeStart(length + 1)) length++;
  if (length === 1) return [Number(value)];
  let offset = value - rangeStart(length);
  const bytes = [0xf0 | Number(offset & 0xfn)];
  offset >>= 4n;
  for (let n = 2; n < length; n++) {
    bytes.push(0x80 | Number(offset & 0x7fn));
    offset >>= 7n;
  }
  bytes.push(Number(offset));
  return bytes;
}

function encode(value: number | bigint): Buffer {
  const buf = Buffer.alloc(VARINT_MAX_BYTES);
  return buf.subarray(0, writeVarint(buf, 0, value));
}

function decode(bytes: ArrayLike<number>): number | bigint {
  const buf = Buffer.from(Array.from(bytes));
  const reader = new ByteReader(buf, 0, buf.length);
  const value = reader.varint('test varint');
  expect(reader.pos).toBe(buf.length);
  return value;
}

function hex(text: string): number[] {
  return text
    .split(' ')
    .filter((b) => b.length > 0)
    .map((b) => parseInt(b, 16));
}

const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** What the decoder returns for a value: a number when it is a safe integer, else a bigint. */
function asDecoded(value: bigint): number | bigint {
  return value <= SAFE_MAX ? Number(value) : value;
}

/** The first and last value of every length from 1 to 10 bytes, with their bytes as the spec's diagram draws them. */
const boundaries: Array<{ length: number; value: bigint; bytes: number[] }> = [];
for (let length = 1; length <= VARINT_MAX_BYTES; length++) {
  const first = rangeStart(length);
  const last = length === VARINT_MAX_BYTES ? UINT64_MAX : rangeStart(length + 1) - 1n;
  // Offset 0 in the range: the marker alone, then continuation bytes carrying zeros.
  const firstBytes = length === 1 ? [0] : [0xf0, ...new Array<number>(length - 2).fill(0x80), 0x00];
  // Every payload bit set (the 10-byte range is cut short by 2^64-1, see below).
  const lastBytes = length === 1 ? [0xef] : [0xff, ...new Array<number>(length - 2).fill(0xff), 0x7f];
  boundaries.push({ length, value: first, bytes: firstBytes });
  if (length < VARINT_MAX_BYTES) boundaries.push({ length, value: last, bytes: lastBytes });
}

describe('varint (Peers encoding, SPOE.txt 3.1)', () => {
  describe('the reference encoder used by these tests', () => {
    it('puts the length boundaries where the spec does', () => {
      expect([1, 2, 3, 4, 5, 6].map(rangeStart)).toEqual([0n, 240n, 2288n, 264432n, 33818864n, 4328786160n]);
    });

    it('needs 10 bytes, and no more, for 2^64-1', () => {
      expect(rangeStart(10)).toBeLessThanOrEqual(UINT64_MAX);
      expect(rangeStart(11)).toBeGreaterThan(UINT64_MAX);
    });

    it.each(boundaries)('draws $value as the spec does', ({ value, bytes }) => {
      expect(referenceEncode(value)).toEqual(bytes);
    });
  });

  describe('encoding', () => {
    it.each([
      [0n, '00'],
      [1n, '01'],
      [239n, 'ef'],
      [240n, 'f0 00'],
      [241n, 'f1 00'],
      [255n, 'ff 00'],
      [256n, 'f0 01'],
      [2287n, 'ff 7f'],
      [2288n, 'f0 80 00'],
      [264431n, 'ff ff 7f'],
      [264432n, 'f0 80 80 00'],
      [33818863n, 'ff ff ff 7f'],
      [33818864n, 'f0 80 80 80 00'],
      [4328786159n, 'ff ff ff ff 7f'],
      [4328786160n, 'f0 80 80 80 80 00'],
    ])('writes %p as %s', (value, bytes) => {
      expect([...encode(value)]).toEqual(hex(bytes));
    });

    it.each(boundaries)('writes the $length-byte boundary $value as the reference does', ({ value, bytes }) => {
      expect([...encode(value)]).toEqual(bytes);
    });

    it.each(boundaries.filter((b) => b.value <= SAFE_MAX))(
      'writes $value identically from a number and a bigint',
      ({ value }) => {
        expect(encode(Number(value))).toEqual(encode(value));
      },
    );

    it.each([
      ['2^53-1', SAFE_MAX, 'ff f0 fe fe fe fe fe 7e'],
      ['2^53', SAFE_MAX + 1n, 'f0 f1 fe fe fe fe fe 7e'],
      ['2^63', 1n << 63n, 'f0 f1 fe fe fe fe fe fe fe 06'],
      ['2^64-1', UINT64_MAX, 'ff f0 fe fe fe fe fe fe fe 0e'],
    ])('writes %s as %s', (_, value, bytes) => {
      expect(referenceEncode(value)).toEqual(hex(bytes));
      expect([...encode(value)]).toEqual(hex(bytes));
    });

    it('writes at the given position and returns the position after the value', () => {
      const buf = Buffer.alloc(8, 0xaa);
      expect(writeVarint(buf, 3, 2288)).toBe(6);
      expect([...buf]).toEqual(hex('aa aa aa f0 80 00 aa aa'));
    });

    it('matches the reference for every unsigned 64-bit value', () => {
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: UINT64_MAX }), (value) => {
          expect([...encode(value)]).toEqual(referenceEncode(value));
        }),
      );
    });

    it('matches the reference for every safe integer given as a number', () => {
      fc.assert(
        fc.property(fc.maxSafeNat(), (value) => {
          expect([...encode(value)]).toEqual(referenceEncode(BigInt(value)));
        }),
      );
    });
  });

  describe('varintSize', () => {
    it.each(boundaries)('is $length for $value', ({ length, value }) => {
      expect(varintSize(value)).toBe(length);
      if (value <= SAFE_MAX) expect(varintSize(Number(value))).toBe(length);
    });

    it('is 1 for a small bigint', () => {
      expect(varintSize(5n)).toBe(1);
    });

    it("agrees with writeVarint's length for every unsigned 64-bit value", () => {
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: UINT64_MAX }), (value) => {
          expect(varintSize(value)).toBe(encode(value).length);
        }),
      );
    });

    it("agrees with writeVarint's length for every safe integer", () => {
      fc.assert(
        fc.property(fc.maxSafeNat(), (value) => {
          expect(varintSize(value)).toBe(encode(value).length);
        }),
      );
    });
  });

  describe('decoding', () => {
    it.each(boundaries)('reads the $length-byte boundary $value', ({ value, bytes }) => {
      expect(decode(bytes)).toBe(asDecoded(value));
    });

    it('reads 2^53-1 as a number', () => {
      expect(decode(hex('ff f0 fe fe fe fe fe 7e'))).toBe(Number.MAX_SAFE_INTEGER);
    });

    it('reads 2^53 as a bigint', () => {
      expect(decode(hex('f0 f1 fe fe fe fe fe 7e'))).toBe(2n ** 53n);
    });

    it('reads 2^64-1 as a bigint', () => {
      expect(decode(hex('ff f0 fe fe fe fe fe fe fe 0e'))).toBe(UINT64_MAX);
    });

    it('stops after the last byte of the value', () => {
      const buf = Buffer.from(hex('f0 80 00 ff'));
      const reader = new ByteReader(buf, 0, buf.length);
      expect(reader.varint('test')).toBe(2288);
      expect(reader.pos).toBe(3);
    });

    it.each(boundaries.filter((b) => b.length > 1))(
      'rejects every truncation of the $length-byte value $value',
      ({ bytes }) => {
        for (let cut = 0; cut < bytes.length; cut++) {
          expect(() => decode(bytes.slice(0, cut))).toThrow(SpopInvalidFrameError);
        }
      },
    );

    it('treats the reader end as the end of the data, even when the buffer goes on', () => {
      const buf = Buffer.from(hex('f0 80 00'));
      const reader = new ByteReader(buf, 0, 2);
      expect(() => reader.varint('test')).toThrow(SpopInvalidFrameError);
    });

    it('rejects a varint longer than 10 bytes', () => {
      expect(() => decode(hex('f0 80 80 80 80 80 80 80 80 80 00'))).toThrow(SpopInvalidFrameError);
    });

    it('rejects a 10-byte varint whose last byte still has its continuation bit', () => {
      expect(() => decode(hex('ff ff ff ff ff ff ff ff ff ff'))).toThrow(SpopInvalidFrameError);
    });

    it.each([
      ['2^64', referenceEncode(1n << 64n)],
      ['2^64-1 + 2^60 (last byte 0x0f)', hex('ff f0 fe fe fe fe fe fe fe 0f')],
      ['the largest 10-byte encoding', hex('ff ff ff ff ff ff ff ff ff 7f')],
    ])('rejects a 10-byte value above 2^64-1: %s', (_, bytes) => {
      expect(bytes).toHaveLength(10);
      expect(() => decode(bytes)).toThrow(SpopInvalidFrameError);
    });

    it('round-trips every unsigned 64-bit value, as a number when safe and a bigint above', () => {
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: UINT64_MAX }), (value) => {
          expect(decode(encode(value))).toBe(asDecoded(value));
        }),
      );
    });

    it('round-trips every safe integer as a number', () => {
      fc.assert(
        fc.property(fc.maxSafeNat(), (value) => {
          expect(decode(encode(value))).toBe(value);
        }),
      );
    });
  });
});
