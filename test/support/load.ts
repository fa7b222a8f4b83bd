/**
 * The one load generator of the tests: `total` HTTP requests from `concurrency` concurrent clients, every response
 * checked, failures counted and described rather than thrown.
 */
import { Agent as HttpAgent, IncomingHttpHeaders } from 'node:http';
import { httpRequest, HttpRequestOptions, HttpResponse } from './http';

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** Number of requests. */
  readonly total: number;
  /** Requests in flight at once (the number of concurrent clients). */
  readonly concurrency: number;
  /** The i-th request (host, port, path, headers…); `agent` is set by runLoad (keep-alive, one socket per client). */
  readonly request: (i: number) => Omit<HttpRequestOptions, 'agent'>;
  /** Checks a response: returns a failure reason, or undefined when it is good. Default: status must be 200. */
  readonly check?: (response: HttpResponse, i: number) => string | undefined;
  /** Called after each completed request (e.g. to trigger a reload at some point). */
  readonly onProgress?: (done: number) => void;
  /** Awaited before the i-th request is sent (e.g. to hold the last requests until a reload is done). */
  readonly before?: (i: number) => Promise<void> | undefined;
  /** Keep-alive connections (default true); false: a new connection per request. */
  readonly keepAlive?: boolean;
  /** Once aborted, no new request is sent: load that lasts as long as a scenario does, `total` bounding it. */
  readonly stop?: AbortSignal;
}

/** Result of {@link runLoad}. */
export interface LoadResult {
  /** Requests sent: `total`, or fewer when stopped. */
  readonly total: number;
  readonly ok: number;
  /** Requests that failed (transport error or a `check` failure), with the reason. */
  readonly failures: ReadonlyArray<{ readonly i: number; readonly reason: string }>;
  /** Number of responses per HTTP status. */
  readonly statuses: Readonly<Record<number, number>>;
  /** Every response (only the status and headers), for further checks. */
  readonly responses: ReadonlyArray<{
    readonly i: number;
    readonly status: number;
    readonly headers: IncomingHttpHeaders;
  }>;
}

/**
 * Sends `total` requests from `concurrency` concurrent clients (a pool of workers sharing one keep-alive http.Agent
 * with `concurrency` sockets). Never throws for a failed request: failures are counted and described.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const keepAlive = options.keepAlive ?? true;
  const agent = new HttpAgent({ keepAlive, maxSockets: options.concurrency, maxFreeSockets: options.concurrency });
  const check = options.check ?? ((r: HttpResponse) => (r.status === 200 ? undefined : `status ${r.status}`));
  const failures: Array<{ i: number; reason: string }> = [];
  const statuses: Record<number, number> = {};
  const responses: Array<{ i: number; status: number; headers: IncomingHttpHeaders }> = [];
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < options.total && !options.stop?.aborted) {
      const i = next++;
      try {
        await options.before?.(i);
        const response = await httpRequest({ ...options.request(i), agent });
        statuses[response.status] = (statuses[response.status] ?? 0) + 1;
        responses.push({ i, status: response.status, headers: response.headers });
        const reason = check(response, i);
        if (reason !== undefined) failures.push({ i, reason });
      } catch (error) {
        failures.push({ i, reason: `transport: ${(error as Error).message}` });
      }
      done++;
      options.onProgress?.(done);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency, options.total) }, () => worker()));
  } finally {
    agent.destroy();
  }
  const total = options.stop ? done : options.total;
  return { total, ok: total - failures.length, failures, statuses, responses };
}
