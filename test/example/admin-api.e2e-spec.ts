// The admin API over HTTP, on the agent in process: input validated by the controller's ValidationPipe (DTO) and
// ParseCidrPipe, 400s naming the field, 404 for what is not there. (503 while Redis is away: health.e2e-spec.) Who may
// call it (AdminAccessGuard): with ADMIN_TOKEN, whoever sends it as a bearer token; without, clients on loopback only —
// "elsewhere" being this machine's own address off loopback, to an agent whose HTTP side is on 0.0.0.0.
import { Logger } from '@nestjs/common';
import { Readable } from 'node:stream';
import { AGENT_LIMITS } from '../../src/config/agent.config';
import { httpRequest, HttpResponse } from '../support/http';
import { itIf } from '../support/prerequisites';
import { api, bearer, ExampleAgent, nonLoopbackAddress, offLoopback, startExampleAgent } from './support/example';

jest.setTimeout(30_000);

interface HttpError {
  statusCode: number;
  message: string | string[];
  error: string;
}

const TOKEN = 'c2VjcmV0LWFkbWluLXRva2Vu-0123456789';
const WARNING = 'ADMIN_TOKEN is not set: the admin API answers only on loopback';

/** An agent on 0.0.0.0 started with `env`, and the warnings it logged while starting. */
async function startOnAnyAddress(env: Record<string, string>): Promise<{ agent: ExampleAgent; warnings: string[] }> {
  const warn = jest.spyOn(Logger.prototype, 'warn');
  try {
    const agent = await startExampleAgent({ HTTP_HOST: '0.0.0.0', ...env });
    return { agent, warnings: warn.mock.calls.map(([message]) => String(message)) };
  } finally {
    warn.mockRestore();
  }
}

/** A GET, POST or DELETE of the admin API: its status, `WWW-Authenticate` challenge and message. */
async function call(
  baseUrl: string,
  method: 'GET' | 'POST' | 'DELETE',
  headers: Record<string, string> = {},
): Promise<{ status: number; challenge: string | null; message: unknown }> {
  const body = method === 'POST' ? JSON.stringify({ cidr: '192.0.2.0/24' }) : undefined;
  const path = method === 'DELETE' ? '/blocklist?cidr=192.0.2.0/24' : '/blocklist';
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { ...(body && { 'content-type': 'application/json' }), ...headers },
    body,
  });
  const text = await response.text();
  return {
    status: response.status,
    challenge: response.headers.get('www-authenticate'),
    message: text && response.status >= 400 ? (JSON.parse(text) as HttpError).message : undefined,
  };
}

const METHODS = ['GET', 'POST', 'DELETE'] as const;
const LIMIT = AGENT_LIMITS.maxHttpBodyBytes;
const OPEN_ROUTES = ['/health/live', '/health/ready', '/metrics'];

describe('example agent: admin API', () => {
  let agent: ExampleAgent;
  beforeAll(async () => {
    agent = await startExampleAgent({ BLOCKLIST: '10.0.0.0/8' });
  });
  afterAll(() => agent?.close());

  /** A POST of `body` as it is (a stream: chunked), with its status and message. */
  const post = async (
    body: string | Readable,
    contentType = 'application/json',
  ): Promise<{ status: number; message: unknown }> => {
    const response = await fetch(`${agent.httpUrl}/blocklist`, {
      method: 'POST',
      headers: { 'content-type': contentType },
      ...(typeof body === 'string'
        ? { body }
        : { body: Readable.toWeb(body) as ReadableStream<Uint8Array>, duplex: 'half' }),
    });
    return { status: response.status, message: ((await response.json()) as HttpError).message };
  };

  it('lists, adds and removes entries', async () => {
    const added = await api(agent.httpUrl, 'POST', '/blocklist', {
      cidr: ' 2001:DB8::/32 ',
      ttlSeconds: 60,
      reason: 'scan',
    });
    expect(added).toEqual({
      status: 201,
      body: { cidr: '2001:db8::/32', reason: 'scan', addedAt: expect.any(String), expiresAt: expect.any(String) },
    });
    expect((await api<Array<{ cidr: string }>>(agent.httpUrl, 'GET', '/blocklist')).body.map((e) => e.cidr)).toEqual([
      '10.0.0.0/8',
      '2001:db8::/32',
    ]);
    expect(await api(agent.httpUrl, 'DELETE', '/blocklist?cidr=2001:db8::/32')).toEqual({
      status: 204,
      body: undefined,
    });
  });

  it('answers 400 with every problem of the body, one message per field', async () => {
    const { status, body } = await api<HttpError>(agent.httpUrl, 'POST', '/blocklist', {
      cidr: '10.0.0.1/8',
      ttlSeconds: '60',
      reason: 5,
      ttl: 5,
    });
    expect(status).toBe(400);
    expect(body.message).toEqual([
      'property ttl should not exist',
      '"cidr": 10.0.0.1/8 has host bits set: did you mean 10.0.0.0/8?',
      '"ttlSeconds" must be an integer in [1, 315360000]',
      '"reason" must be a string of at most 200 characters',
    ]);
  });

  it('answers 400 for a body that is not a JSON object', async () => {
    for (const text of ['[]', '"10.0.0.0/8"', '{']) {
      const response = await fetch(`${agent.httpUrl}/blocklist`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: text,
      });
      expect([text, response.status]).toEqual([text, 400]);
    }
    expect((await api<HttpError>(agent.httpUrl, 'POST', '/blocklist')).body.message).toEqual([
      expect.stringMatching(/^"cidr" is required/),
    ]);
  });

  it(`reads a JSON body of ${LIMIT} bytes, and answers 413 for one byte more`, async () => {
    // Valid JSON of exactly `size` bytes, whose reason is too long for the DTO: 400 once read.
    const body = (size: number): string => {
      const json = (reason: string): string => JSON.stringify({ cidr: '192.0.2.0/24', reason });
      return json('x'.repeat(size - json('').length));
    };
    expect(await post(body(LIMIT))).toEqual({
      status: 400,
      message: ['"reason" must be a string of at most 200 characters'],
    });
    expect(await post(body(LIMIT + 1))).toEqual({ status: 413, message: 'request entity too large' });
  });

  it('answers 413 for a chunked body (no Content-Length) once it grows over the limit', async () => {
    const chunk = `{"cidr": "192.0.2.0/24", "reason": "${'x'.repeat(LIMIT)}"}`;
    expect(await post(Readable.from([chunk.slice(0, 100), chunk.slice(100)]))).toEqual({
      status: 413,
      message: 'request entity too large',
    });
  });

  it('reads JSON only: a form or text body is no body (400); a charset body-parser lacks is a 415', async () => {
    expect(await post('cidr=192.0.2.0%2F24', 'application/x-www-form-urlencoded')).toEqual({
      status: 400,
      message: [expect.stringMatching(/^"cidr" is required/)],
    });
    expect(await post('{"cidr": "192.0.2.0/24"}', 'text/plain')).toMatchObject({ status: 400 });
    expect(await post('{"cidr": "192.0.2.0/24"}', 'application/json; charset=latin2')).toEqual({
      status: 415,
      message: 'unsupported charset "LATIN2"',
    });
    expect((await api(agent.httpUrl, 'GET', '/blocklist')).body).toEqual([
      expect.objectContaining({ cidr: '10.0.0.0/8' }),
    ]);
  });

  it('answers 400 for a DELETE without a valid cidr parameter, naming it', async () => {
    expect(await api<HttpError>(agent.httpUrl, 'DELETE', '/blocklist')).toMatchObject({
      status: 400,
      body: { message: 'query parameter "cidr" is required (an IP address or CIDR)' },
    });
    expect(await api<HttpError>(agent.httpUrl, 'DELETE', '/blocklist?cidr=nope')).toMatchObject({
      status: 400,
      body: { message: '"cidr": not an IP address or CIDR: "nope"' },
    });
  });

  it('answers 404 for removing a network that is not on the blocklist', async () => {
    expect(await api<HttpError>(agent.httpUrl, 'DELETE', '/blocklist?cidr=192.0.2.0/24')).toMatchObject({
      status: 404,
      body: { message: '192.0.2.0/24 is not on the blocklist' },
    });
  });
});

describe('example agent: admin API without ADMIN_TOKEN (HTTP on 0.0.0.0)', () => {
  let agent: ExampleAgent;
  let warnings: string[];
  beforeAll(async () => {
    ({ agent, warnings } = await startOnAnyAddress({}));
  });
  afterAll(() => agent?.close());

  it('says so once at startup', () => {
    expect(warnings.filter((w) => w.startsWith(WARNING))).toHaveLength(1);
  });

  it('answers clients on loopback', async () => {
    expect(await call(agent.httpUrl, 'GET')).toMatchObject({ status: 200 });
    expect(await call(agent.httpUrl, 'POST')).toMatchObject({ status: 201 });
    expect(await call(agent.httpUrl, 'DELETE')).toMatchObject({ status: 204 });
  });

  it('refuses a request on loopback addressed to another name, as from a web page after DNS rebinding: 403', async () => {
    const { port } = new URL(agent.httpUrl);
    const get = (host: string): Promise<HttpResponse> =>
      httpRequest({ host: '127.0.0.1', port: Number(port), path: '/blocklist', headers: { host } });
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`])
      expect([host, (await get(host)).status]).toEqual([host, 200]);
    const refused = await get(`attacker.example:${port}`);
    expect(refused.status).toBe(403);
    expect((JSON.parse(refused.body) as HttpError).message).toMatch(/^ADMIN_TOKEN is not set: .*localhost/);
  });

  itIf(nonLoopbackAddress)('refuses a client off loopback: 403, saying to set ADMIN_TOKEN', async () => {
    for (const method of METHODS) {
      expect([method, await call(offLoopback(agent.httpUrl), method, bearer(TOKEN))]).toEqual([
        method,
        { status: 403, challenge: null, message: expect.stringMatching(/^ADMIN_TOKEN is not set: .*loopback/) },
      ]);
    }
    expect((await api(agent.httpUrl, 'GET', '/blocklist')).body).toEqual([
      expect.objectContaining({ cidr: '10.0.0.0/8' }),
    ]);
  });

  itIf(nonLoopbackAddress)('keeps the health routes and /metrics open to a client off loopback', async () => {
    for (const path of OPEN_ROUTES)
      expect([path, (await fetch(`${offLoopback(agent.httpUrl)}${path}`)).status]).toEqual([path, 200]);
  });
});

describe('example agent: admin API with ADMIN_TOKEN (HTTP on 0.0.0.0)', () => {
  let agent: ExampleAgent;
  let warnings: string[];
  beforeAll(async () => {
    ({ agent, warnings } = await startOnAnyAddress({ ADMIN_TOKEN: TOKEN }));
  });
  afterAll(() => agent?.close());

  it('says nothing about loopback at startup', () => {
    expect(warnings.filter((w) => w.startsWith('ADMIN_TOKEN'))).toEqual([]);
  });

  it.each([
    ['no Authorization header', {}],
    ['another scheme', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
    ['no token', { authorization: 'Bearer' }],
  ])('answers 401 with a Bearer challenge for %s, on loopback too', async (_what, headers) => {
    for (const method of METHODS) {
      expect([method, await call(agent.httpUrl, method, headers)]).toEqual([
        method,
        {
          status: 401,
          challenge: 'Bearer realm="nestjs-spoe admin"',
          message: 'the admin API requires "Authorization: Bearer <ADMIN_TOKEN>"',
        },
      ]);
    }
  });

  it.each([
    ['another token', 'd3JvbmctYWRtaW4tdG9rZW4-0123456789'],
    ['the token but its last character', TOKEN.slice(0, -1)],
    ['the token and one more character', `${TOKEN}0`],
    ['the token in another case', TOKEN.toUpperCase()],
  ])('answers 401 with error="invalid_token" for %s', async (_what, token) => {
    for (const method of METHODS) {
      expect([method, await call(agent.httpUrl, method, bearer(token))]).toEqual([
        method,
        {
          status: 401,
          challenge: 'Bearer realm="nestjs-spoe admin", error="invalid_token"',
          message: 'the bearer token is not the ADMIN_TOKEN of this agent',
        },
      ]);
    }
  });

  it('answers with the token: 200, 201, 204 (the scheme in any case)', async () => {
    expect(await call(agent.httpUrl, 'GET', bearer(TOKEN))).toMatchObject({ status: 200 });
    expect(await call(agent.httpUrl, 'POST', bearer(TOKEN))).toMatchObject({ status: 201 });
    expect(await call(agent.httpUrl, 'DELETE', { authorization: `bearer ${TOKEN}` })).toMatchObject({ status: 204 });
  });

  itIf(nonLoopbackAddress)('answers a client off loopback that has the token, and only that one', async () => {
    const url = offLoopback(agent.httpUrl);
    expect(await call(url, 'GET')).toMatchObject({ status: 401 });
    expect(await call(url, 'POST', bearer(TOKEN))).toMatchObject({ status: 201 });
    expect(await call(url, 'DELETE', bearer(TOKEN))).toMatchObject({ status: 204 });
  });

  it('keeps the health routes and /metrics open without a token', async () => {
    for (const path of OPEN_ROUTES)
      expect([path, (await fetch(`${agent.httpUrl}${path}`)).status]).toEqual([path, 200]);
  });
});
