import { SpoeIp } from 'nestjs-spoe';

/**
 * An IPv4 or IPv6 network: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128). IPv4-mapped IPv6
 * networks (`::ffff:10.0.0.0/104`) are stored as the IPv4 network they denote, so one entry matches both forms.
 */
export class Cidr {
  private constructor(
    readonly family: 4 | 6,
    /** The network address (host bits zero), 4 or 16 bytes. */
    readonly network: Uint8Array,
    readonly prefix: number,
  ) {}

  /** Parses `address[/prefix]`. Rejects host bits set ("10.1.2.3/8"): that is usually a typo, not a network. */
  static parse(text: string): Cidr {
    if (typeof text !== 'string') throw new TypeError(`not a CIDR: ${JSON.stringify(text)}`);
    const slash = text.indexOf('/');
    const address = slash < 0 ? text : text.slice(0, slash);
    let ip: SpoeIp;
    try {
      ip = SpoeIp.parse(address);
    } catch {
      throw new TypeError(`not an IP address or CIDR: ${JSON.stringify(text)}`);
    }
    const bits = ip.family === 4 ? 32 : 128;
    const prefixText = slash < 0 ? String(bits) : text.slice(slash + 1);
    const prefix = Number(prefixText);
    if (!/^\d{1,3}$/.test(prefixText) || prefix > bits) {
      throw new TypeError(`invalid prefix length in ${JSON.stringify(text)}: expected 0 to ${bits}`);
    }
    const network = mask(ip.bytes, prefix);
    if (!equalBytes(network, ip.bytes)) {
      const suggestion = new Cidr(ip.family, network, prefix).toString();
      throw new TypeError(`${text} has host bits set: did you mean ${suggestion}?`);
    }
    if (ip.isV4Mapped && prefix >= 96) return new Cidr(4, network.slice(12), prefix - 96);
    return new Cidr(ip.family, network, prefix);
  }

  /** True when `ip` (IPv4-mapped IPv6 included) lies in this network. */
  contains(ip: SpoeIp): boolean {
    const address = ip.unmapped();
    return address.family === this.family && equalBytes(mask(address.bytes, this.prefix), this.network);
  }

  /** Canonical text: `10.0.0.0/8`, `2001:db8::/32` (RFC 5952), the prefix always written. */
  toString(): string {
    return `${SpoeIp.fromBytes(this.network).toString()}/${this.prefix}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/**
 * Longest-prefix lookup over a set of networks, built for the per-NOTIFY hot path: one hash lookup per distinct prefix
 * length present (IPv4 keys are 32-bit integers, IPv6 keys bigints), no allocation for IPv4.
 */
export class CidrMatcher<T> {
  private readonly v4 = new PrefixTable<number, T>();
  private readonly v6 = new PrefixTable<bigint, T>();

  get size(): number {
    return this.v4.size + this.v6.size;
  }

  set(cidr: Cidr, value: T): void {
    if (cidr.family === 4) this.v4.set(cidr.prefix, v4Key(cidr.network, cidr.prefix), value);
    else this.v6.set(cidr.prefix, v6Key(cidr.network, cidr.prefix), value);
  }

  delete(cidr: Cidr): boolean {
    return cidr.family === 4
      ? this.v4.delete(cidr.prefix, v4Key(cidr.network, cidr.prefix))
      : this.v6.delete(cidr.prefix, v6Key(cidr.network, cidr.prefix));
  }

  /**
   * The value of the most specific network containing `ip` that `accept` takes (by default the most specific one). An
   * IPv4-mapped IPv6 address is looked up as IPv4.
   */
  match(ip: SpoeIp, accept?: (value: T) => boolean): T | undefined {
    const address = ip.unmapped();
    const b = address.bytes;
    if (address.family === 4) {
      const key = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
      return this.v4.match(key, maskV4, accept);
    }
    if (this.v6.size === 0) return undefined;
    return this.v6.match(v6Key(b, 128), maskV6, accept);
  }
}

/** Per prefix length, the networks of that length by masked key; lengths kept longest first. */
class PrefixTable<K, T> {
  private readonly byPrefix = new Map<number, Map<K, T>>();
  private prefixes: number[] = [];
  size = 0;

  set(prefix: number, key: K, value: T): void {
    let table = this.byPrefix.get(prefix);
    if (!table) {
      table = new Map();
      this.byPrefix.set(prefix, table);
      this.prefixes = [...this.byPrefix.keys()].sort((a, b) => b - a);
    }
    if (!table.has(key)) this.size++;
    table.set(key, value);
  }

  delete(prefix: number, key: K): boolean {
    const table = this.byPrefix.get(prefix);
    if (!table?.delete(key)) return false;
    this.size--;
    if (table.size === 0) {
      this.byPrefix.delete(prefix);
      this.prefixes = this.prefixes.filter((p) => p !== prefix);
    }
    return true;
  }

  match(key: K, maskKey: (key: K, prefix: number) => K, accept: ((value: T) => boolean) | undefined): T | undefined {
    const prefixes = this.prefixes;
    for (let i = 0; i < prefixes.length; i++) {
      const value = this.byPrefix.get(prefixes[i])!.get(maskKey(key, prefixes[i]));
      if (value !== undefined && (accept === undefined || accept(value))) return value;
    }
    return undefined;
  }
}

const V6_ALL = (1n << 128n) - 1n;
const V6_MASKS: readonly bigint[] = Array.from({ length: 129 }, (_, prefix) =>
  prefix === 0 ? 0n : (V6_ALL << BigInt(128 - prefix)) & V6_ALL,
);

const maskV4 = (key: number, prefix: number): number =>
  prefix === 0 ? 0 : (key & (0xffffffff << (32 - prefix))) >>> 0;
const maskV6 = (key: bigint, prefix: number): bigint => key & V6_MASKS[prefix];

function v4Key(network: Uint8Array, prefix: number): number {
  return maskV4(((network[0] << 24) | (network[1] << 16) | (network[2] << 8) | network[3]) >>> 0, prefix);
}

function v6Key(bytes: Uint8Array, prefix: number): bigint {
  let key = 0n;
  for (let i = 0; i < 16; i += 4)
    key = (key << 32n) | BigInt(((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0);
  return key & V6_MASKS[prefix];
}

function mask(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.min(8, Math.max(0, prefix - i * 8));
    out[i] = bytes[i] & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A comma-separated list of CIDRs (BLOCKLIST): the networks, and what is wrong with each entry that is not one. */
export function parseCidrList(text: string): { cidrs: Cidr[]; problems: string[] } {
  const cidrs: Cidr[] = [];
  const problems: string[] = [];
  for (const item of text.split(',')) {
    const entry = item.trim();
    if (entry.length === 0) continue;
    try {
      cidrs.push(Cidr.parse(entry));
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  return { cidrs, problems };
}
