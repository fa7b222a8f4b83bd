import type { AddressInfo } from 'node:net';

/** Where a listener is, as a person reads it: `host:port`, `[v6]:port`, or `unix:/path`. */
export function formatAddress(address: AddressInfo | string | null | undefined): string {
  if (typeof address === 'string') return `unix:${address}`;
  if (!address) return 'nowhere';
  return `${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`;
}

/** How to reach a listener from the same host: a wildcard address (0.0.0.0, ::) is reached over loopback. */
export function loopbackTarget(
  address: AddressInfo | string | null | undefined,
): { host: string; port: number } | { path: string } {
  if (typeof address === 'string') return { path: address };
  if (!address) throw new Error('no address: the server is not listening');
  const host = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
  return { host, port: address.port };
}
