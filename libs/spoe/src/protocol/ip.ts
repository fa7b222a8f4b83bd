import { isIPv4, isIPv6 } from 'node:net';

/**
 * An IPv4 or IPv6 address, as carried by the IPV4 and IPV6 data types. Immutable, printable (`toString()` gives the
 * dotted or RFC 5952 form) and comparable (`equals`, `compare`).
 */
export class SpoeIp {
  private text?: string;

  private constructor(
    /** 4 or 6: the wire type this address travels as. */
    readonly family: 4 | 6,
    /** The address in network byte order (4 or 16 bytes). Do not mutate. */
    readonly bytes: Uint8Array,
  ) {}

  /**
   * Parses a textual IPv4 or IPv6 address (IPv6 may embed a dotted IPv4 tail). Throws a TypeError otherwise, and for a
   * scoped address ("fe80::1%eth0"): the IPV6 type carries no zone.
   */
  static parse(text: string): SpoeIp {
    if (isIPv4(text)) return new SpoeIp(4, parseV4(text));
    if (isIPv6(text) && !text.includes('%')) return new SpoeIp(6, parseV6(text));
    throw new TypeError(`not an IP address: ${JSON.stringify(text)}`);
  }

  /** Wraps 4 (IPv4) or 16 (IPv6) bytes in network byte order; they are copied. */
  static fromBytes(bytes: Uint8Array): SpoeIp {
    if (bytes.length === 4) return new SpoeIp(4, Uint8Array.from(bytes));
    if (bytes.length === 16) return new SpoeIp(6, Uint8Array.from(bytes));
    throw new TypeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  }

  /** @internal Decoder fast path: copies `length` bytes at `start`. */
  static read(buf: Buffer, start: number, length: 4 | 16): SpoeIp {
    // A plain loop: for 4 or 16 bytes it is cheaper than the generic Uint8Array slice() called on a Buffer.
    const bytes = new Uint8Array(length);
    for (let i = 0; i < length; i++) bytes[i] = buf[start + i];
    return new SpoeIp(length === 4 ? 4 : 6, bytes);
  }

  /** True for an IPv6 address of the form ::ffff:a.b.c.d. */
  get isV4Mapped(): boolean {
    const b = this.bytes;
    if (this.family !== 6 || b[10] !== 0xff || b[11] !== 0xff) return false;
    for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
    return true;
  }

  /** The IPv4 address behind an IPv4-mapped IPv6 address; the address itself otherwise. */
  unmapped(): SpoeIp {
    return this.isV4Mapped ? new SpoeIp(4, this.bytes.slice(12)) : this;
  }

  equals(other: SpoeIp): boolean {
    return this.compare(other) === 0;
  }

  /** Orders IPv4 before IPv6, then by address bytes. */
  compare(other: SpoeIp): number {
    if (this.family !== other.family) return this.family - other.family;
    const a = this.bytes;
    const b = other.bytes;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
    return 0;
  }

  toString(): string {
    return (this.text ??= this.family === 4 ? formatV4(this.bytes, 0) : formatV6(this.bytes));
  }

  toJSON(): string {
    return this.toString();
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `SpoeIp(${this.toString()})`;
  }
}

function parseV4(text: string): Uint8Array {
  return Uint8Array.from(text.split('.'), Number);
}

function parseV6(text: string): Uint8Array {
  const out = new Uint8Array(16);
  let tail = text;
  let v4: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) !== -1) {
    v4 = parseV4(text.slice(lastColon + 1));
    tail = text.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = tail.split('::') as [string, string | undefined];
  const groups = (s: string | undefined): number[] => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const left = groups(head);
  const right = groups(rest);
  const all =
    rest === undefined ? left : [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  if (v4) out.set(v4, 12);
  return out;
}

function formatV4(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 5952: lower case, no leading zeros, the longest run (≥ 2) of zero groups as "::", IPv4-mapped dotted. */
function formatV6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const isMapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (isMapped) return `::ffff:${formatV4(b, 12)}`;
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
