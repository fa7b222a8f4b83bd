import { AddressInfo, createServer } from 'node:net';

/**
 * A TCP port of 127.0.0.1 that was free a moment ago: the kernel picks it, the listener closes, the caller binds it.
 * For processes that need their port on the command line (HAProxy, the example agent's SPOE and HTTP sides); the
 * window in which another process could take it is a few milliseconds on a machine that runs nothing else alike.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
