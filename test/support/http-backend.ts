/**
 * A tiny HTTP backend for the HAProxy e2e tests: it answers every request with 200 and a JSON description of what it
 * received (method, URL, headers — e.g. the `x-ip-score` HAProxy added from the agent's decision — and the body
 * length), so a test can see what HAProxy forwarded.
 */
import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import { AddressInfo } from 'node:net';

/** What the backend answers (the response body, as JSON). */
export interface EchoedRequest {
  readonly method: string;
  readonly url: string;
  /** Request headers as Node parsed them (lower-case names). */
  readonly headers: IncomingHttpHeaders;
  readonly bodyLength: number;
}

/** A running backend. */
export interface HttpBackend {
  readonly host: string;
  readonly port: number;
  /** Requests served so far. */
  readonly requestCount: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Starts the backend on a free port of 127.0.0.1. */
export async function startHttpBackend(): Promise<HttpBackend> {
  const host = '127.0.0.1';
  let requestCount = 0;
  const server: Server = createServer((req, res) => {
    let bodyLength = 0;
    req.on('data', (chunk: Buffer) => (bodyLength += chunk.length));
    req.on('end', () => {
      requestCount++;
      const echoed: EchoedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyLength };
      const body = JSON.stringify(echoed);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    host,
    port,
    get requestCount() {
      return requestCount;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
