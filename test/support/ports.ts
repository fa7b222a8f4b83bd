/**
 * Free TCP ports for what tests start with a port on its command line or in its configuration (HAProxy, redis-server).
 */
import { networkInterfaces } from 'node:os';
import { createServer } from 'node:net';

let ipv6Loopback: boolean | undefined;

/** True when the loopback interface has `::1` here (Docker, for one, disables IPv6 in containers by default). */
export function hasIpv6Loopback(): boolean {
  return (ipv6Loopback ??= Object.values(networkInterfaces()).some((addresses) =>
    addresses?.some((a) => a.internal && a.family === 'IPv6' && a.address === '::1'),
  ));
}

/**
 * A TCP port that was free a moment ago on every host of `hosts` (default: 127.0.0.1, and ::1 when the host has IPv6
 * loopback), so that HAProxy can bind it on each.
 */
export async function freePort(
  hosts: readonly string[] = hasIpv6Loopback() ? ['127.0.0.1', '::1'] : ['127.0.0.1'],
): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await listenAndClose(hosts[0], 0);
    let free = true;
    for (const host of hosts.slice(1)) {
      if ((await listenAndClose(host, port).catch(() => -1)) !== port) free = false;
    }
    if (free) return port;
  }
  throw new Error(`no free port on ${hosts.join(' and ')}`);
}

function listenAndClose(host: string, port: number): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : -1;
      server.close(() => resolvePort(bound));
    });
  });
}
