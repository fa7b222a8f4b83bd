/**
 * SPOP variable-length integers (the "Peers" encoding, SPOE.txt 3.1):
 *
 *          0 <= X < 240        : 1 byte   [ XXXX XXXX ]
 *        240 <= X < 2288       : 2 bytes  [ 1111 XXXX ] [ 0XXX XXXX ]
 *       2288 <= X < 264432     : 3 bytes  [ 1111 XXXX ] [ 1XXX XXXX ] [ 0XXX XXXX ]
 *     264432 <= X < 33818864   : 4 bytes  … and so on, 7 more bits per byte
 *
 * Every length covers its own range, so each value has exactly one encoding. Values span the full unsigned 64-bit
 * range (10 bytes at most); HAProxy sends signed integers as their 64-bit two's complement.
 */

export const VARINT_MAX_BYTES = 10;
export const UINT64_MAX = (1n << 64n) - 1n;
export const INT64_MIN = -(1n << 63n);
export const INT64_MAX = (1n << 63n) - 1n;

/** Number of bytes that `value` takes on the wire. */
export function varintSize(value: number | bigint): number {
  if (value < 240) return 1;
  let v = BigInt(value) - 240n;
  let size = 2;
  v >>= 4n;
  while (v >= 128n) {
    v = (v - 128n) >> 7n;
    size++;
  }
  return size;
}

/**
 * Writes `value` (an unsigned integer: a safe non-negative number or a bigint up to 2^64-1, already range-checked by
 * the caller) at `pos`. The caller guarantees room for {@link VARINT_MAX_BYTES}. Returns the position after it.
 */
export function writeVarint(buf: Uint8Array, pos: number, value: number | bigint): number {
  if (typeof value === 'number') {
    if (value < 240) {
      buf[pos] = value;
      return pos + 1;
    }
    if (value <= 0xffffffff) {
      buf[pos++] = (value & 15) | 240;
      let v = (value - 240) >>> 4;
      while (v >= 128) {
        buf[pos++] = (v & 127) | 128;
        v = (v - 128) >>> 7;
      }
      buf[pos] = v;
      return pos + 1;
    }
    value = BigInt(value);
  }
  if (value < 240n) {
    buf[pos] = Number(value);
    return pos + 1;
  }
  buf[pos++] = Number(value & 15n) | 240;
  let v = (value - 240n) >> 4n;
  while (v >= 128n) {
    buf[pos++] = Number(v & 127n) | 128;
    v = (v - 128n) >> 7n;
  }
  buf[pos] = Number(v);
  return pos + 1;
}
