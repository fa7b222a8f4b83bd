// The admin API over HTTP, on the agent in process: input validated by the controller's ValidationPipe (DTO) and
// ParseCidrPipe, 400s naming the field, 404 for what is not there. (503 while Redis is away: health.e2e-spec.)
import { api, ExampleAgent, startExampleAgent } from './support/example';

jest.setTimeout(30_000);

interface HttpError {
  statusCode: number;
  message: string | string[];
  error: string;
}

describe('example agent: admin API', () => {
  let agent: ExampleAgent;
  beforeAll(async () => {
    agent = await startExampleAgent({ BLOCKLIST: '10.0.0.0/8' });
  });
  afterAll(() => agent?.close());

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
