import fc from 'fast-check';
import { ByteReader } from './byte-reader';
import { ByteWriter } from './byte-writer';
import { SpoeEncodeError, SpopInvalidFrameError } from './errors';
import { SpoeIp } from './ip';
import { decodeMessages } from './notify';
import {
  inferDataType,
  readTypedData,
  SpoeDataType,
  SpoeEncodable,
  SpoeValue,
  TypedData,
  TypedDataSlot,
  writeTypedData,
} from './typed-data';
import { INT64_MAX, INT64_MIN, UINT64_MAX } from './varint';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function encode(value: SpoeEncodable): Buffer {
  const w = new ByteWriter(Buffer.alloc(4096), 0, 4096);
  writeTypedData(w, value);
  return w.buf.subarray(0, w.pos);
}

interface Decoded {
  type: SpoeDataType;
  value: SpoeValue;
}

/** Reads one TYPED-DATA that must span the whole of `bytes`. */
function decode(bytes: Buffer): Decoded {
  const r = new ByteReader(bytes, 0, bytes.length);
  const slot: TypedDataSlot = { type: SpoeDataType.Null, start: 0, end: 0 };
  const value = readTypedData(r, slot);
  expect(r.pos).toBe(bytes.length);
  return { type: slot.type, value };
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** What the decoder returns for a 64-bit value: a number when it is a safe integer, else a bigint. */
function asDecoded(value: bigint): number | bigint {
  return value >= -SAFE_MAX && value <= SAFE_MAX ? Number(value) : value;
}

// Varints below were worked out by hand from SPOE.txt 3.1 and cross-checked against the reference encoder of
// varint.spec.ts. Negative integers are their 64-bit two's complement: -1 is 2^64-1, the largest 10-byte value.
const MINUS_ONE = 'ff f0 fe fe fe fe fe fe fe 0e';

/** [description, value to encode, wire bytes, type and value decoded from those bytes]. */
const vectors: Array<[string, SpoeEncodable, string, SpoeDataType, SpoeValue]> = [
  ['NULL', null, '00', SpoeDataType.Null, null],
  ['BOOL true', true, '11', SpoeDataType.Boolean, true],
  ['BOOL false', false, '01', SpoeDataType.Boolean, false],
  ['INT32 0', TypedData.int32(0), '02 00', SpoeDataType.Int32, 0],
  ['INT32 239', TypedData.int32(239), '02 ef', SpoeDataType.Int32, 239],
  ['INT32 240', TypedData.int32(240), '02 f0 00', SpoeDataType.Int32, 240],
  ['INT32 1000', TypedData.int32(1000), '02 f8 2f', SpoeDataType.Int32, 1000],
  ['INT32 max', TypedData.int32(INT32_MAX), '02 ff f0 fe fe 3e', SpoeDataType.Int32, INT32_MAX],
  ['INT32 -1', TypedData.int32(-1), `02 ${MINUS_ONE}`, SpoeDataType.Int32, -1],
  ['INT32 -42', TypedData.int32(-42), '02 f6 ee fe fe fe fe fe fe fe 0e', SpoeDataType.Int32, -42],
  ['INT32 min', TypedData.int32(INT32_MIN), '02 f0 f1 fe fe be fe fe fe fe 0e', SpoeDataType.Int32, INT32_MIN],
  ['UINT32 0', TypedData.uint32(0), '03 00', SpoeDataType.Uint32, 0],
  ['UINT32 16380', TypedData.uint32(16380), '03 fc f0 06', SpoeDataType.Uint32, 16380],
  ['UINT32 max', TypedData.uint32(UINT32_MAX), '03 ff f0 fe fe 7e', SpoeDataType.Uint32, UINT32_MAX],
  ['INT64 42', TypedData.int64(42), '04 2a', SpoeDataType.Int64, 42],
  ['INT64 -1', TypedData.int64(-1n), `04 ${MINUS_ONE}`, SpoeDataType.Int64, -1],
  [
    'INT64 2^53-1',
    TypedData.int64(Number.MAX_SAFE_INTEGER),
    '04 ff f0 fe fe fe fe fe 7e',
    SpoeDataType.Int64,
    Number.MAX_SAFE_INTEGER,
  ],
  ['INT64 2^53', TypedData.int64(2n ** 53n), '04 f0 f1 fe fe fe fe fe 7e', SpoeDataType.Int64, 2n ** 53n],
  [
    'INT64 -(2^53-1)',
    TypedData.int64(-Number.MAX_SAFE_INTEGER),
    '04 f1 f1 fe fe fe fe fe fe fd 0e',
    SpoeDataType.Int64,
    -Number.MAX_SAFE_INTEGER,
  ],
  [
    'INT64 -(2^53)',
    TypedData.int64(-(2n ** 53n)),
    '04 f0 f1 fe fe fe fe fe fe fd 0e',
    SpoeDataType.Int64,
    -(2n ** 53n),
  ],
  ['INT64 max', TypedData.int64(INT64_MAX), '04 ff f0 fe fe fe fe fe fe fe 06', SpoeDataType.Int64, INT64_MAX],
  ['INT64 min', TypedData.int64(INT64_MIN), '04 f0 f1 fe fe fe fe fe fe fe 06', SpoeDataType.Int64, INT64_MIN],
  ['UINT64 0', TypedData.uint64(0), '05 00', SpoeDataType.Uint64, 0],
  ['UINT64 2^53', TypedData.uint64(2n ** 53n), '05 f0 f1 fe fe fe fe fe 7e', SpoeDataType.Uint64, 2n ** 53n],
  ['UINT64 2^63', TypedData.uint64(2n ** 63n), '05 f0 f1 fe fe fe fe fe fe fe 06', SpoeDataType.Uint64, 2n ** 63n],
  ['UINT64 max', TypedData.uint64(UINT64_MAX), `05 ${MINUS_ONE}`, SpoeDataType.Uint64, UINT64_MAX],
  ['IPV4', SpoeIp.parse('192.168.1.2'), '06 c0 a8 01 02', SpoeDataType.Ipv4, SpoeIp.parse('192.168.1.2')],
  [
    'IPV6',
    SpoeIp.parse('2001:db8::1'),
    '07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01',
    SpoeDataType.Ipv6,
    SpoeIp.parse('2001:db8::1'),
  ],
  [
    'IPV6 v4-mapped',
    SpoeIp.parse('::ffff:10.0.0.1'),
    '07 00 00 00 00 00 00 00 00 00 00 ff ff 0a 00 00 01',
    SpoeDataType.Ipv6,
    SpoeIp.parse('::ffff:10.0.0.1'),
  ],
  ['STRING empty', '', '08 00', SpoeDataType.String, ''],
  ['STRING ascii', 'hello', '08 05 68 65 6c 6c 6f', SpoeDataType.String, 'hello'],
  ['STRING utf-8', 'é€', '08 05 c3 a9 e2 82 ac', SpoeDataType.String, 'é€'],
  ['BINARY empty', Buffer.alloc(0), '09 00', SpoeDataType.Binary, Buffer.alloc(0)],
  ['BINARY', Buffer.from([0, 1, 0xff]), '09 03 00 01 ff', SpoeDataType.Binary, Buffer.from([0, 1, 0xff])],
];

describe('typed data (SPOE.txt 3.1)', () => {
  describe('byte-exact vectors', () => {
    it.each(vectors)('encodes %s', (_, value, bytes) => {
      expect(encode(value).toString('hex')).toBe(hex(bytes).toString('hex'));
    });

    it.each(vectors)('decodes %s', (_, __, bytes, type, value) => {
      const decoded = decode(hex(bytes));
      expect(decoded.type).toBe(type);
      expect(decoded.value).toEqual(value);
    });

    it('encodes a STRING of 240 bytes with a two-byte length', () => {
      const text = 'x'.repeat(240);
      expect(encode(text).subarray(0, 3).toString('hex')).toBe('08f000');
      expect(encode(text)).toHaveLength(3 + 240);
      expect(decode(encode(text)).value).toBe(text);
    });

    it('encodes a STRING of raw bytes (TypedData.stringBytes) as given', () => {
      expect(encode(TypedData.stringBytes(Uint8Array.of(0xff, 0xfe, 0x41))).toString('hex')).toBe('0803fffe41');
    });

    it('encodes a BINARY made from a string as its UTF-8 bytes', () => {
      expect(encode(TypedData.binary('é')).toString('hex')).toBe('0902c3a9');
    });

    it('encodes undefined and TypedData.null() as NULL', () => {
      expect(encode(undefined).toString('hex')).toBe('00');
      expect(encode(TypedData.null()).toString('hex')).toBe('00');
    });

    it('encodes explicit BOOL values', () => {
      expect(encode(TypedData.boolean(true)).toString('hex')).toBe('11');
      expect(encode(TypedData.boolean(false)).toString('hex')).toBe('01');
    });

    it('decodes an INT64 beyond 2^53 as the exact bigint', () => {
      expect(decode(hex('04 f1 f1 fe fe fe fe fe 7e')).value).toBe(2n ** 53n + 1n);
    });

    it('decodes a BINARY as a view on the frame, not a copy', () => {
      const bytes = hex('09 02 ab cd');
      const value = decode(bytes).value;
      expect(Buffer.isBuffer(value) && value.buffer === bytes.buffer).toBe(true);
    });
  });

  describe('signed integers travel as 64-bit two’s complement (HAProxy reads every integer as uint64 cast to int64)', () => {
    it('encodes a negative INT32 in 10 bytes, like the INT64 of the same value', () => {
      expect(encode(TypedData.int32(-5)).subarray(1)).toEqual(encode(TypedData.int64(-5)).subarray(1));
      expect(encode(TypedData.int32(-5))).toHaveLength(11);
    });

    it('rejects an INT32 whose value lies outside the signed 32-bit range', () => {
      expect(() => decode(hex('02 f0 f1 fe fe 3e'))).toThrow(SpopInvalidFrameError);
    });

    it('rejects an INT32 sent as 32-bit two’s complement (2^32-1 is not -1)', () => {
      expect(() => decode(hex('02 ff f0 fe fe 7e'))).toThrow(SpopInvalidFrameError);
    });

    it('rejects a UINT32 above 2^32-1', () => {
      expect(() => decode(hex('03 f0 f1 fe fe 7e'))).toThrow(SpopInvalidFrameError);
    });
  });

  describe('inferDataType', () => {
    it.each<[string, SpoeEncodable, SpoeDataType]>([
      ['null', null, SpoeDataType.Null],
      ['undefined', undefined, SpoeDataType.Null],
      ['true', true, SpoeDataType.Boolean],
      ['false', false, SpoeDataType.Boolean],
      ['0', 0, SpoeDataType.Int32],
      ['2^31-1', INT32_MAX, SpoeDataType.Int32],
      ['-2^31', INT32_MIN, SpoeDataType.Int32],
      ['2^31', 2 ** 31, SpoeDataType.Int64],
      ['-2^31-1', INT32_MIN - 1, SpoeDataType.Int64],
      ['2^53-1', Number.MAX_SAFE_INTEGER, SpoeDataType.Int64],
      ['-(2^53-1)', -Number.MAX_SAFE_INTEGER, SpoeDataType.Int64],
      ['a small bigint', 5n, SpoeDataType.Int64],
      ['INT64 min as a bigint', INT64_MIN, SpoeDataType.Int64],
      ['INT64 max as a bigint', INT64_MAX, SpoeDataType.Int64],
      ['2^63 as a bigint', INT64_MAX + 1n, SpoeDataType.Uint64],
      ['2^64-1 as a bigint', UINT64_MAX, SpoeDataType.Uint64],
      ['a string', 'x', SpoeDataType.String],
      ['an empty string', '', SpoeDataType.String],
      ['a Buffer', Buffer.from('x'), SpoeDataType.Binary],
      ['a Uint8Array', Uint8Array.of(1), SpoeDataType.Binary],
      ['an IPv4 SpoeIp', SpoeIp.parse('1.2.3.4'), SpoeDataType.Ipv4],
      ['an IPv6 SpoeIp', SpoeIp.parse('::1'), SpoeDataType.Ipv6],
      ['an IPv4-mapped IPv6 SpoeIp', SpoeIp.parse('::ffff:1.2.3.4'), SpoeDataType.Ipv6],
      ['a TypedData', TypedData.uint32(7), SpoeDataType.Uint32],
    ])('types %s as %p', (_, value, type) => {
      expect(inferDataType(value)).toBe(type);
    });

    it('writes a number outside INT32 as INT64', () => {
      expect(encode(2 ** 31).toString('hex')).toBe('04f0f1fefe3e');
    });

    it('writes a small bigint as INT64', () => {
      expect(encode(5n).toString('hex')).toBe('0405');
    });

    it('writes a negative number as INT32 in two’s complement', () => {
      expect(encode(-1).toString('hex')).toBe(hex(`02 ${MINUS_ONE}`).toString('hex'));
    });

    it.each<[string, number]>([
      ['a fraction', 1.5],
      ['NaN', NaN],
      ['Infinity', Infinity],
      ['-Infinity', -Infinity],
      ['2^53 (not exact as a number)', 2 ** 53],
      ['-(2^53)', -(2 ** 53)],
    ])('rejects %s with SpoeEncodeError', (_, value) => {
      expect(() => inferDataType(value)).toThrow(SpoeEncodeError);
      expect(() => encode(value)).toThrow(SpoeEncodeError);
    });

    it.each<[string, bigint]>([
      ['below INT64 min', INT64_MIN - 1n],
      ['above 2^64-1', UINT64_MAX + 1n],
    ])('rejects a bigint %s with SpoeEncodeError', (_, value) => {
      expect(() => inferDataType(value)).toThrow(SpoeEncodeError);
    });

    it.each<[string, unknown]>([
      ['a plain object', { a: 1 }],
      ['an array', [1]],
      ['a Date', new Date(0)],
      ['a function', () => 1],
      ['a symbol', Symbol('x')],
    ])('rejects %s with SpoeEncodeError', (_, value) => {
      // Values a JavaScript caller can pass despite the types.
      expect(() => inferDataType(value as SpoeEncodable)).toThrow(SpoeEncodeError);
    });
  });

  describe('TypedData helpers validate at once', () => {
    it.each<[string, () => TypedData]>([
      ['int32(2^31)', () => TypedData.int32(2 ** 31)],
      ['int32(-2^31-1)', () => TypedData.int32(INT32_MIN - 1)],
      ['int32(1.5)', () => TypedData.int32(1.5)],
      ['int32(NaN)', () => TypedData.int32(NaN)],
      ['int32(Infinity)', () => TypedData.int32(Infinity)],
      ['uint32(-1)', () => TypedData.uint32(-1)],
      ['uint32(2^32)', () => TypedData.uint32(2 ** 32)],
      ['uint32(0.5)', () => TypedData.uint32(0.5)],
      ['uint32(NaN)', () => TypedData.uint32(NaN)],
      ['int64(2^63)', () => TypedData.int64(INT64_MAX + 1n)],
      ['int64(-2^63-1)', () => TypedData.int64(INT64_MIN - 1n)],
      ['int64(1.5)', () => TypedData.int64(1.5)],
      ['int64(NaN)', () => TypedData.int64(NaN)],
      ['int64(-Infinity)', () => TypedData.int64(-Infinity)],
      ['int64(2^53) given as an inexact number', () => TypedData.int64(2 ** 53)],
      ['uint64(-1)', () => TypedData.uint64(-1)],
      ['uint64(-1n)', () => TypedData.uint64(-1n)],
      ['uint64(2^64)', () => TypedData.uint64(UINT64_MAX + 1n)],
      ['uint64(0.5)', () => TypedData.uint64(0.5)],
      ['uint64(NaN)', () => TypedData.uint64(NaN)],
      ['ipv4 of an IPv6 address', () => TypedData.ipv4('2001:db8::1')],
    ])('rejects %s with SpoeEncodeError', (_, make) => {
      expect(make).toThrow(SpoeEncodeError);
    });

    it('ipv4 unmaps an IPv4-mapped IPv6 address', () => {
      expect(encode(TypedData.ipv4('::ffff:10.0.0.1')).toString('hex')).toBe('060a000001');
    });

    it('ipv6 sends an IPv4 address in its IPv4-mapped form', () => {
      expect(encode(TypedData.ipv6('10.0.0.1')).toString('hex')).toBe(
        hex('07 00000000 00000000 0000ffff 0a000001').toString('hex'),
      );
    });

    it('binary copies its bytes', () => {
      const source = Uint8Array.of(1, 2);
      const data = TypedData.binary(source);
      source[0] = 9;
      expect(encode(data).toString('hex')).toBe('09020102');
    });
  });

  describe('invalid typed data', () => {
    it.each([10, 11, 12, 13, 14, 15])('rejects the reserved type %i', (type) => {
      expect(() => decode(Buffer.of(type, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toThrow(
        SpopInvalidFrameError,
      );
    });

    it.each([0, 2, 3, 4, 5, 6, 7, 8, 9])('rejects any flag on type %i', (type) => {
      for (let flags = 1; flags < 16; flags++) {
        const bytes = Buffer.alloc(17);
        bytes[0] = (flags << 4) | type;
        expect(() => decode(bytes)).toThrow(SpopInvalidFrameError);
      }
    });

    it.each(vectors.filter(([, , bytes]) => hex(bytes).length > 1))(
      'rejects every truncation of %s',
      (_, __, bytes) => {
        const whole = hex(bytes);
        for (let cut = 0; cut < whole.length; cut++) {
          const r = new ByteReader(whole, 0, cut);
          expect(() => readTypedData(r, { type: SpoeDataType.Null, start: 0, end: 0 })).toThrow(SpopInvalidFrameError);
        }
      },
    );
  });

  describe('STRING that is not valid UTF-8', () => {
    // One message "m" with a STRING argument "s" (bytes ff fe 41) and a BINARY argument "b".
    const payload = hex('01 6d 02  01 73 08 03 ff fe 41  01 62 09 02 00 01');

    it('decodes with replacement characters', () => {
      const [message] = decodeMessages(payload, 0, payload.length);
      expect(message.args[0].value).toBe('\ufffd\ufffdA');
    });

    it('keeps the raw bytes reachable through SpoeArgument.bytes', () => {
      const [message] = decodeMessages(payload, 0, payload.length);
      expect(message.args[0].type).toBe(SpoeDataType.String);
      expect(message.args[0].bytes?.toString('hex')).toBe('fffe41');
    });

    it('gives the bytes of a BINARY argument as a view on the frame', () => {
      const [message] = decodeMessages(payload, 0, payload.length);
      const bytes = message.args[1].bytes;
      expect(bytes?.toString('hex')).toBe('0001');
      expect(bytes?.buffer).toBe(payload.buffer);
    });

    it('gives no bytes for other types', () => {
      const frame = hex('01 6d 01 01 69 02 05');
      const [message] = decodeMessages(frame, 0, frame.length);
      expect(message.args[0].bytes).toBeUndefined();
    });
  });

  describe('round trips', () => {
    function roundTrip(value: SpoeEncodable): Decoded {
      return decode(encode(value));
    }

    it('NULL', () => {
      expect(roundTrip(null)).toEqual({ type: SpoeDataType.Null, value: null });
    });

    it('BOOL', () => {
      fc.assert(
        fc.property(fc.boolean(), (b) => expect(roundTrip(b)).toEqual({ type: SpoeDataType.Boolean, value: b })),
      );
    });

    it('INT32', () => {
      fc.assert(
        fc.property(fc.integer({ min: INT32_MIN, max: INT32_MAX }), (n) => {
          expect(roundTrip(TypedData.int32(n))).toEqual({ type: SpoeDataType.Int32, value: n });
        }),
      );
    });

    it('UINT32', () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: UINT32_MAX }), (n) => {
          expect(roundTrip(TypedData.uint32(n))).toEqual({ type: SpoeDataType.Uint32, value: n });
        }),
      );
    });

    it('INT64 from a bigint: a number back when safe, the same bigint otherwise', () => {
      fc.assert(
        fc.property(fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), (n) => {
          expect(roundTrip(TypedData.int64(n))).toEqual({ type: SpoeDataType.Int64, value: asDecoded(n) });
        }),
      );
    });

    it('INT64 from a safe number', () => {
      fc.assert(
        fc.property(fc.maxSafeInteger(), (n) => {
          expect(roundTrip(TypedData.int64(n))).toEqual({ type: SpoeDataType.Int64, value: n });
        }),
      );
    });

    it('UINT64', () => {
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: UINT64_MAX }), (n) => {
          expect(roundTrip(TypedData.uint64(n))).toEqual({ type: SpoeDataType.Uint64, value: asDecoded(n) });
        }),
      );
    });

    it('inferred integers keep their value', () => {
      fc.assert(
        fc.property(fc.oneof(fc.maxSafeInteger(), fc.bigInt({ min: INT64_MIN, max: UINT64_MAX })), (n) => {
          const decoded = roundTrip(n).value;
          expect(typeof decoded === 'bigint' ? decoded : BigInt(decoded as number)).toBe(BigInt(n));
        }),
      );
    });

    it('IPV4', () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (bytes) => {
          const ip = SpoeIp.fromBytes(bytes);
          const decoded = roundTrip(ip);
          expect(decoded.type).toBe(SpoeDataType.Ipv4);
          expect(decoded.value instanceof SpoeIp && decoded.value.equals(ip)).toBe(true);
        }),
      );
    });

    it('IPV6', () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
          const ip = SpoeIp.fromBytes(bytes);
          const decoded = roundTrip(ip);
          expect(decoded.type).toBe(SpoeDataType.Ipv6);
          expect(decoded.value instanceof SpoeIp && decoded.value.equals(ip)).toBe(true);
        }),
      );
    });

    it('STRING (any code points, lengths across the one-byte varint limit)', () => {
      fc.assert(
        fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => {
          expect(roundTrip(s)).toEqual({ type: SpoeDataType.String, value: s });
        }),
      );
    });

    it('BINARY', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
          const decoded = roundTrip(bytes);
          expect(decoded.type).toBe(SpoeDataType.Binary);
          expect(Buffer.isBuffer(decoded.value) && decoded.value.equals(bytes)).toBe(true);
        }),
      );
    });
  });
});
