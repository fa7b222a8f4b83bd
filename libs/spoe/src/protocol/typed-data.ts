import { ByteReader } from './byte-reader';
import { ByteWriter } from './byte-writer';
import { SpoeEncodeError, SpopInvalidFrameError } from './errors';
import { SpoeIp } from './ip';
import { utf8 } from './utf8';
import { INT64_MAX, INT64_MIN, UINT64_MAX } from './varint';

/** TYPED-DATA types (SPOE.txt 3.1): the low 4 bits of the type byte. */
export enum SpoeDataType {
  Null = 0,
  Boolean = 1,
  Int32 = 2,
  Uint32 = 3,
  Int64 = 4,
  Uint64 = 5,
  Ipv4 = 6,
  Ipv6 = 7,
  String = 8,
  Binary = 9,
}

const TYPE_MASK = 0x0f;
const BOOLEAN_TRUE_FLAG = 0x10;
const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;
const UINT32_MAX = 0xffffffff;
const TWO_64 = 1n << 64n;
const TWO_63 = 1n << 63n;

/**
 * A decoded value. The mapping from the wire:
 *
 * | wire            | JavaScript                                                    |
 * |-----------------|---------------------------------------------------------------|
 * | NULL            | `null`                                                        |
 * | BOOL            | `boolean`                                                     |
 * | INT32, UINT32   | `number`                                                      |
 * | INT64, UINT64   | `number` when it is a safe integer (|v| ≤ 2^53-1), else `bigint` |
 * | IPV4, IPV6      | {@link SpoeIp}                                                |
 * | STRING          | `string` (UTF-8; the raw bytes stay on the argument)          |
 * | BINARY          | `Buffer` (a view on the frame, not a copy)                    |
 */
export type SpoeValue = null | boolean | number | bigint | string | Buffer | SpoeIp;

/**
 * A value with an explicit wire type, for when inference is not what you want (an INT64 that is small, a UINT32, a
 * BINARY made from a string…). Built with the static helpers, which validate the range at once.
 */
export class TypedData {
  private static readonly NULL = new TypedData(SpoeDataType.Null, null);

  private constructor(
    readonly type: SpoeDataType,
    readonly value: SpoeValue,
  ) {}

  static null(): TypedData {
    return TypedData.NULL;
  }
  static boolean(value: boolean): TypedData {
    return new TypedData(SpoeDataType.Boolean, value);
  }
  static int32(value: number): TypedData {
    return new TypedData(SpoeDataType.Int32, checkInteger(value, INT32_MIN, INT32_MAX, 'INT32'));
  }
  static uint32(value: number): TypedData {
    return new TypedData(SpoeDataType.Uint32, checkInteger(value, 0, UINT32_MAX, 'UINT32'));
  }
  static int64(value: number | bigint): TypedData {
    return new TypedData(SpoeDataType.Int64, checkBigRange(value, INT64_MIN, INT64_MAX, 'INT64'));
  }
  static uint64(value: number | bigint): TypedData {
    return new TypedData(SpoeDataType.Uint64, checkBigRange(value, 0n, UINT64_MAX, 'UINT64'));
  }
  /** An IPV4 value: a dotted string, or an {@link SpoeIp} that is IPv4 (or IPv4-mapped IPv6). */
  static ipv4(value: string | SpoeIp): TypedData {
    const ip = (typeof value === 'string' ? SpoeIp.parse(value) : value).unmapped();
    if (ip.family !== 4) throw new SpoeEncodeError(`IPV4 value expected, got ${ip.toString()}`);
    return new TypedData(SpoeDataType.Ipv4, ip);
  }
  /** An IPV6 value; an IPv4 address is sent in its IPv4-mapped form. */
  static ipv6(value: string | SpoeIp): TypedData {
    const ip = typeof value === 'string' ? SpoeIp.parse(value) : value;
    return new TypedData(SpoeDataType.Ipv6, ip.family === 6 ? ip : SpoeIp.parse(`::ffff:${ip.toString()}`));
  }
  static string(value: string): TypedData {
    return new TypedData(SpoeDataType.String, value);
  }
  /** A STRING carrying raw bytes, for values that are not valid UTF-8. */
  static stringBytes(value: Uint8Array): TypedData {
    return new TypedData(SpoeDataType.String, Buffer.from(value));
  }
  /**
   * A value of the given wire type, checked as the dedicated helper checks it (e.g. to send back what was received).
   */
  static of(type: SpoeDataType, value: SpoeValue): TypedData {
    switch (type) {
      case SpoeDataType.Null:
        return TypedData.null();
      case SpoeDataType.Boolean:
        return TypedData.boolean(value as boolean);
      case SpoeDataType.Int32:
        return TypedData.int32(value as number);
      case SpoeDataType.Uint32:
        return TypedData.uint32(value as number);
      case SpoeDataType.Int64:
        return TypedData.int64(value as number | bigint);
      case SpoeDataType.Uint64:
        return TypedData.uint64(value as number | bigint);
      case SpoeDataType.Ipv4:
        return TypedData.ipv4(value as SpoeIp);
      case SpoeDataType.Ipv6:
        return TypedData.ipv6(value as SpoeIp);
      case SpoeDataType.String:
        return typeof value === 'string' ? TypedData.string(value) : TypedData.stringBytes(value as Uint8Array);
      case SpoeDataType.Binary:
        return TypedData.binary(value as Uint8Array);
    }
    throw new SpoeEncodeError(`unknown data type ${String(type)}`);
  }

  static binary(value: Uint8Array | string): TypedData {
    return new TypedData(
      SpoeDataType.Binary,
      typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value),
    );
  }
}

/** What an encoder accepts: a value whose wire type is inferred, or a {@link TypedData}. */
export type SpoeEncodable = SpoeValue | TypedData | undefined | Uint8Array;

/**
 * The wire type inferred for a plain value: `null`/`undefined` NULL, `boolean` BOOL, an integer `number` INT32 when it
 * fits else INT64, a `bigint` INT64 (UINT64 above 2^63-1), a `string` STRING, a `Buffer`/`Uint8Array` BINARY, an
 * {@link SpoeIp} IPV4 or IPV6. Fractions, NaN and out-of-range values throw {@link SpoeEncodeError}.
 */
export function inferDataType(value: SpoeEncodable): SpoeDataType {
  switch (typeof value) {
    case 'undefined':
      return SpoeDataType.Null;
    case 'boolean':
      return SpoeDataType.Boolean;
    case 'number':
      if (!Number.isSafeInteger(value))
        throw new SpoeEncodeError(`cannot encode ${value}: SPOP integers are whole and exact`);
      return value >= INT32_MIN && value <= INT32_MAX ? SpoeDataType.Int32 : SpoeDataType.Int64;
    case 'bigint':
      if (value >= INT64_MIN && value <= INT64_MAX) return SpoeDataType.Int64;
      if (value > INT64_MAX && value <= UINT64_MAX) return SpoeDataType.Uint64;
      throw new SpoeEncodeError(`cannot encode ${value}: outside the 64-bit integer range`);
    case 'string':
      return SpoeDataType.String;
    case 'object':
      if (value === null) return SpoeDataType.Null;
      if (value instanceof TypedData) return value.type;
      if (value instanceof SpoeIp) return value.family === 4 ? SpoeDataType.Ipv4 : SpoeDataType.Ipv6;
      if (value instanceof Uint8Array) return SpoeDataType.Binary;
  }
  throw new SpoeEncodeError(`cannot encode a value of type ${describe(value)}`);
}

/** Writes one TYPED-DATA. */
export function writeTypedData(w: ByteWriter, value: SpoeEncodable): void {
  let v: unknown = value;
  let type: SpoeDataType;
  if (value instanceof TypedData) {
    type = value.type;
    v = value.value;
  } else {
    type = inferDataType(value);
  }
  switch (type) {
    case SpoeDataType.Null:
      w.u8(SpoeDataType.Null);
      return;
    case SpoeDataType.Boolean:
      w.u8(v ? SpoeDataType.Boolean | BOOLEAN_TRUE_FLAG : SpoeDataType.Boolean);
      return;
    case SpoeDataType.Int32:
    case SpoeDataType.Int64:
      w.u8(type);
      // Signed values travel as their 64-bit two's complement, which is what HAProxy reads back.
      w.varint((v as number | bigint) >= 0 ? (v as number | bigint) : BigInt(v as number | bigint) + TWO_64);
      return;
    case SpoeDataType.Uint32:
    case SpoeDataType.Uint64:
      w.u8(type);
      w.varint(v as number | bigint);
      return;
    case SpoeDataType.Ipv4:
    case SpoeDataType.Ipv6:
      w.u8(type);
      w.bytes((v as SpoeIp).bytes);
      return;
    case SpoeDataType.String:
      w.u8(SpoeDataType.String);
      if (typeof v === 'string') w.string(v);
      else w.lengthPrefixed(v as Buffer);
      return;
    case SpoeDataType.Binary:
      w.u8(SpoeDataType.Binary);
      w.lengthPrefixed(v as Uint8Array);
      return;
  }
}

/**
 * Reads one TYPED-DATA, leaving its type in `out.type` (and, for STRING and BINARY, where its bytes lie). Unknown
 * types (10-15) and flags on other types than BOOL are invalid frames.
 */
export function readTypedData(r: ByteReader, out: TypedDataSlot): SpoeValue {
  scanTypedData(r, out);
  return typedValue(r.buf, out.type, out.start, out.end);
}

/**
 * Checks one TYPED-DATA and steps over it without decoding its value: `out` gets its type and where the value lies
 * (`[start, end)`: the value's bytes; for NULL and BOOL, the type byte itself). Everything that makes a frame invalid
 * is found here, so {@link typedValue} cannot fail later: unknown types (10-15), flags on other types than BOOL,
 * truncation, varints beyond 64 bits and 32-bit integers out of range.
 */
export function scanTypedData(r: ByteReader, out: TypedDataSlot): void {
  const at = r.pos;
  const byte = r.u8('typed data');
  const type = byte & TYPE_MASK;
  if (byte & ~TYPE_MASK && type !== SpoeDataType.Boolean) {
    throw new SpopInvalidFrameError(`typed data: flags 0x${(byte >> 4).toString(16)} on type ${type} at offset ${at}`);
  }
  out.type = type;
  out.start = r.pos;
  switch (type) {
    case SpoeDataType.Null:
    case SpoeDataType.Boolean:
      out.start = at;
      break;
    case SpoeDataType.Int32: {
      const n = toSigned(r.varint('INT32'));
      if (typeof n !== 'number' || n < INT32_MIN || n > INT32_MAX) throw outOfRange('INT32', n, at);
      break;
    }
    case SpoeDataType.Uint32: {
      const n = r.varint('UINT32');
      if (typeof n !== 'number' || n > UINT32_MAX) throw outOfRange('UINT32', n, at);
      break;
    }
    case SpoeDataType.Int64:
      r.varint('INT64');
      break;
    case SpoeDataType.Uint64:
      r.varint('UINT64');
      break;
    case SpoeDataType.Ipv4:
      r.skip(4, 'IPV4');
      break;
    case SpoeDataType.Ipv6:
      r.skip(16, 'IPV6');
      break;
    case SpoeDataType.String:
    case SpoeDataType.Binary: {
      const len = r.length(type === SpoeDataType.String ? 'STRING' : 'BINARY');
      out.start = r.pos;
      r.pos += len;
      break;
    }
    default:
      throw new SpopInvalidFrameError(`typed data: unknown type ${type} at offset ${at}`);
  }
  out.end = r.pos;
}

// Values are decoded synchronously and never re-entrantly: one cursor serves every varint.
const valueReader = new ByteReader(Buffer.alloc(0), 0, 0);

/** The value of a TYPED-DATA that {@link scanTypedData} checked (same `type`, `start` and `end`). */
export function typedValue(buf: Buffer, type: SpoeDataType, start: number, end: number): SpoeValue {
  switch (type) {
    case SpoeDataType.Null:
      return null;
    case SpoeDataType.Boolean:
      return (buf[start] & BOOLEAN_TRUE_FLAG) !== 0;
    case SpoeDataType.Int32:
    case SpoeDataType.Int64:
      return toSigned(varintAt(buf, start, end));
    case SpoeDataType.Uint32:
    case SpoeDataType.Uint64:
      return varintAt(buf, start, end);
    case SpoeDataType.Ipv4:
      return SpoeIp.read(buf, start, 4);
    case SpoeDataType.Ipv6:
      return SpoeIp.read(buf, start, 16);
    case SpoeDataType.String:
      return end === start ? '' : utf8(buf, start, end);
    case SpoeDataType.Binary:
      return buf.subarray(start, end);
  }
  throw new SpopInvalidFrameError(`typed data: unknown type ${String(type)}`);
}

function varintAt(buf: Buffer, start: number, end: number): number | bigint {
  // One-byte varints (0-239) are the common case: no cursor needed.
  if (end - start === 1 && buf[start] < 240) return buf[start];
  const r = valueReader;
  r.buf = buf;
  r.pos = start;
  r.end = end;
  return r.varint('integer');
}

/**
 * Scratch filled by {@link scanTypedData} and {@link readTypedData}: reused across reads so decoding allocates nothing
 * for it.
 */
export interface TypedDataSlot {
  type: SpoeDataType;
  start: number;
  end: number;
}

/** Reinterprets an unsigned 64-bit varint value as two's complement. */
function toSigned(n: number | bigint): number | bigint {
  if (typeof n === 'number') return n;
  if (n < TWO_63) return n;
  const s = n - TWO_64;
  return s >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s;
}

function outOfRange(type: string, n: number | bigint, at: number): SpopInvalidFrameError {
  return new SpopInvalidFrameError(`${type}: value ${n} out of range at offset ${at}`);
}

function checkInteger(value: number, min: number, max: number, type: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new SpoeEncodeError(`${type} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

function checkBigRange(value: number | bigint, min: bigint, max: bigint, type: string): number | bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new SpoeEncodeError(`${type} must be a safe integer or a bigint, got ${value}`);
  }
  const big = BigInt(value);
  if (big < min || big > max) throw new SpoeEncodeError(`${type} must be in [${min}, ${max}], got ${value}`);
  return value;
}

function describe(value: unknown): string {
  if (typeof value !== 'object' || value === null) return typeof value;
  return value.constructor?.name ?? 'object';
}
