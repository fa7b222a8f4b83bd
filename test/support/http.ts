/** A small HTTP/1.1 client for tests: one request, the whole response read. */
import { Agent as HttpAgent, IncomingHttpHeaders, request as httpRequestRaw } from 'node:http';

/** One HTTP request. */
export interface HttpRequestOptions {
  readonly host: string;
  readonly port: number;
  readonly path?: string;
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
  /** A keep-alive agent to reuse connections; default: a new connection closed after the response. */
  readonly agent?: HttpAgent;
  readonly timeoutMs?: number;
}

/** An HTTP response, its body read entirely. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** Sends one HTTP/1.1 request and reads the whole response. */
export function httpRequest(options: HttpRequestOptions): Promise<HttpResponse> {
  return new Promise((resolveResponse, reject) => {
    const body = options.body;
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const req = httpRequestRaw(
      {
        host: options.host,
        port: options.port,
        path: options.path ?? '/',
        method: options.method ?? (body !== undefined ? 'POST' : 'GET'),
        headers,
        agent: options.agent ?? false,
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolveResponse({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request timed out after ${options.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
