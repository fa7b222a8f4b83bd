import { Logger } from '@nestjs/common';
import { SpoeServer, SpoeTlsOptions } from 'nestjs-spoe';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// Mutual TLS: the agent's certificate and key, and the CA of HAProxy's client certificate, which is then required.
function readTls(dir: string): SpoeTlsOptions {
  const read = (file: string) => readFileSync(join(dir, file));
  return { cert: read('agent.pem'), key: read('agent.key'), ca: read('ca.pem'), requestCert: true };
}

export function createTlsServer(dir: string, port = 12345): SpoeServer {
  const server = new SpoeServer({ port, tls: readTls(dir) });
  // kill -HUP: the files as they are now, for new connections (live ones keep theirs). Node exits on SIGHUP otherwise.
  process.on('SIGHUP', () => reloadTls(server, dir));
  return server;
}

export function reloadTls(server: SpoeServer, dir: string): void {
  try {
    server.reloadTls(readTls(dir));
  } catch (error) {
    // A file missing, or a key that is not the certificate's: nothing changed, the previous certificates stay.
    new Logger('Tls').error(`TLS certificates not reloaded: ${(error as Error).message}`);
  }
}
