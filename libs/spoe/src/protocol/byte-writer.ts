import { VARINT_MAX_BYTES, writeVarint } from './varint';

/** Thrown by {@link ByteWriter} when a write would pass its limit; frame encoders turn it into a typed error. */
export class WriterOverflow extends Error {
  constructor() {
    super('frame limit reached');
  }
}

/**
 * Writes into a region of a buffer, never past `limit` (the end of the frame being encoded). Frames are encoded in
 * place, straight into the buffer that goes to the socket.
 */
export class ByteWriter {
  constructor(
    public buf: Buffer,
    public pos: number,
    public limit: number,
  ) {}

  private room(n: number): void {
    if (this.limit - this.pos < n) throw new WriterOverflow();
  }

  u8(v: number): void {
    if (this.pos >= this.limit) throw new WriterOverflow();
    this.buf[this.pos++] = v;
  }

  u32(v: number): void {
    this.room(4);
    this.putU32(v, this.pos);
    this.pos += 4;
  }

  /** Writes `v` big-endian at `at` (a position already written, e.g. a frame's length once known). */
  putU32(v: number, at: number): void {
    // Byte stores: Buffer#writeUInt32BE checks its arguments on every call, which costs more than the write.
    const buf = this.buf;
    buf[at] = v >>> 24;
    buf[at + 1] = v >>> 16;
    buf[at + 2] = v >>> 8;
    buf[at + 3] = v;
  }

  /** An unsigned varint (see {@link writeVarint} for the accepted range). */
  varint(v: number | bigint): void {
    if (this.limit - this.pos < VARINT_MAX_BYTES) {
      // Near the limit: encode aside so an overflow never writes a partial value.
      const tmp = Buffer.allocUnsafe(VARINT_MAX_BYTES);
      const n = writeVarint(tmp, 0, v);
      this.bytes(tmp.subarray(0, n));
      return;
    }
    this.pos = writeVarint(this.buf, this.pos, v);
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A length-prefixed bytes block (STRING and BINARY payloads, names). */
  lengthPrefixed(b: Uint8Array): void {
    this.varint(b.length);
    this.bytes(b);
  }

  /** A length-prefixed UTF-8 string. */
  string(s: string): void {
    // Short strings: one byte of length is certain (3 bytes per UTF-16 unit at most), so write in one pass.
    if (s.length < 80 && this.limit - this.pos > 1 + s.length * 3) {
      // ASCII (names, mostly) is copied in JavaScript: cheaper than a call into Buffer#write for a few bytes.
      const buf = this.buf;
      let at = this.pos + 1;
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) {
          at = -1;
          break;
        }
        buf[at++] = c;
      }
      if (at >= 0) {
        buf[this.pos] = s.length;
        this.pos = at;
        return;
      }
      const n = this.buf.write(s, this.pos + 1, 'utf8');
      this.buf[this.pos] = n;
      this.pos += 1 + n;
      return;
    }
    const n = Buffer.byteLength(s, 'utf8');
    this.varint(n);
    this.room(n);
    this.buf.write(s, this.pos, n, 'utf8');
    this.pos += n;
  }
}
