import { SpopInvalidFrameError } from './errors';
import { utf8 } from './utf8';
import { UINT64_MAX, VARINT_MAX_BYTES } from './varint';

/**
 * A cursor over a region of a buffer. Reads never copy bytes (strings excepted, which must be decoded) and every
 * read that would cross `end` raises {@link SpopInvalidFrameError} naming what was being read.
 */
export class ByteReader {
  constructor(
    public buf: Buffer,
    public pos: number,
    public end: number,
  ) {}

  get remaining(): number {
    return this.end - this.pos;
  }

  u8(what: string): number {
    if (this.pos >= this.end) throw truncated(what, this.pos);
    return this.buf[this.pos++];
  }

  u32(what: string): number {
    if (this.end - this.pos < 4) throw truncated(what, this.pos);
    const b = this.buf;
    const p = this.pos;
    // Byte loads: Buffer#readUInt32BE checks its arguments on every call, which costs more than the read.
    const v = b[p] * 0x1000000 + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
    this.pos += 4;
    return v;
  }

  /** An unsigned varint: a number when it is a safe integer, else a bigint (up to 2^64-1). */
  varint(what: string): number | bigint {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    if (pos >= end) throw truncated(what, pos);
    let b = buf[pos++];
    if (b < 240) {
      this.pos = pos;
      return b;
    }
    // Up to 7 bytes the sum stays below 2^48: exact in a double. Longer encodings continue in bigint.
    let value = b;
    let factor = 16;
    for (let n = 1; n < 7; n++) {
      if (pos >= end) throw truncated(what, pos);
      b = buf[pos++];
      value += b * factor;
      if (b < 128) {
        this.pos = pos;
        return value;
      }
      factor *= 128;
    }
    let big = BigInt(value);
    let shift = 46n;
    for (let n = 7; n < VARINT_MAX_BYTES; n++) {
      if (pos >= end) throw truncated(what, pos);
      b = buf[pos++];
      big += BigInt(b) << shift;
      if (b < 128) {
        if (big > UINT64_MAX) throw new SpopInvalidFrameError(`${what}: varint exceeds 2^64-1 at offset ${this.pos}`);
        this.pos = pos;
        return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      }
      shift += 7n;
    }
    throw new SpopInvalidFrameError(`${what}: varint longer than ${VARINT_MAX_BYTES} bytes at offset ${this.pos}`);
  }

  /** A varint used as a length or a count: it must be a number that fits in what is left of the frame. */
  length(what: string): number {
    const at = this.pos;
    const n = this.varint(what);
    if (typeof n !== 'number' || n > this.end - this.pos) {
      throw new SpopInvalidFrameError(
        `${what}: length ${n} exceeds the ${this.end - this.pos} bytes left at offset ${at}`,
      );
    }
    return n;
  }

  /** Advances over `n` bytes and returns where they start. */
  skip(n: number, what: string): number {
    if (this.end - this.pos < n) throw truncated(what, this.pos);
    const start = this.pos;
    this.pos += n;
    return start;
  }

  /** A length-prefixed name (of a message, an argument, a KV-LIST item or a variable), decoded as UTF-8. */
  string(what: string): string {
    const len = this.length(what);
    const start = this.pos;
    this.pos += len;
    return decodeName(this.buf, start, this.pos);
  }
}

// Names come from HAProxy's configuration and repeat on every frame, and a Buffer-to-string call costs about 100 ns:
// most of the time spent decoding a NOTIFY. Recent decodings are kept in a small cache, checked byte for byte, so a
// name seen before costs a hash and a comparison. Two-way: a name hashing to a pair of slots takes the first and
// pushes the previous occupant to the second, so two names sharing a pair do not evict each other on every frame.
// Bounded: 512 names of 64 bytes at most.
const NAME_CACHE_SLOTS = 512;
const NAME_CACHE_MAX_BYTES = 64;
const cachedNameBytes: Array<Buffer | undefined> = new Array<Buffer | undefined>(NAME_CACHE_SLOTS).fill(undefined);
const cachedNames: string[] = new Array<string>(NAME_CACHE_SLOTS).fill('');

/** A name (of a message, an argument, an item or a variable) as a string, from the cache of recent ones. */
export function decodeName(buf: Buffer, start: number, end: number): string {
  if (end === start) return '';
  if (end - start > NAME_CACHE_MAX_BYTES) return utf8(buf, start, end);
  // Frame after frame the same name comes back (an agent often serves one message): one comparison, no hash.
  if (sameBytes(lastNameBytes, buf, start, end)) return lastName;
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ buf[i], 0x01000193);
  const slot = (hash ^ (hash >>> 16)) & (NAME_CACHE_SLOTS - 2);
  if (!sameBytes(cachedNameBytes[slot], buf, start, end)) {
    if (sameBytes(cachedNameBytes[slot + 1], buf, start, end)) return remember(slot + 1);
    cachedNameBytes[slot + 1] = cachedNameBytes[slot];
    cachedNames[slot + 1] = cachedNames[slot];
    // A copy: the cache must neither keep the frame's buffer alive nor see it change.
    cachedNameBytes[slot] = Buffer.from(buf.subarray(start, end));
    cachedNames[slot] = utf8(buf, start, end);
  }
  return remember(slot);
}

let lastNameBytes: Buffer | undefined;
let lastName = '';

function remember(slot: number): string {
  lastNameBytes = cachedNameBytes[slot];
  return (lastName = cachedNames[slot]);
}

function sameBytes(cached: Buffer | undefined, buf: Buffer, start: number, end: number): boolean {
  if (cached === undefined || cached.length !== end - start) return false;
  for (let i = start; i < end; i++) if (cached[i - start] !== buf[i]) return false;
  return true;
}

function truncated(what: string, pos: number): SpopInvalidFrameError {
  return new SpopInvalidFrameError(`${what}: frame truncated at offset ${pos}`);
}
