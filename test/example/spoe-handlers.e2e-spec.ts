// The example agent's SPOE handlers over a real socket, HAProxy played by SpoeClient: check-client-ip and echo.
import { SpoeDataType, SpoeIp, TypedData, VarScope } from 'nestjs-spoe';
import { ActionType } from 'nestjs-spoe/protocol'; // the wire code of a decoded action
import { SpoeClient } from 'nestjs-spoe/testing';
import { api, ExampleAgent, startExampleAgent } from './support/example';

jest.setTimeout(30_000);

describe('example agent: SPOE handlers', () => {
  let agent: ExampleAgent;
  let client: SpoeClient;

  beforeAll(async () => {
    // The failure test below logs errors on purpose.
    agent = await startExampleAgent({ BLOCKLIST: '10.0.0.0/8,2001:db8:bad::/48', LOG_LEVEL: 'fatal' });
    client = await SpoeClient.connect({ port: agent.spoePort });
  });
  afterAll(async () => {
    await client?.close();
    await agent?.close();
  });

  const score = async (ip: SpoeIp | string | TypedData): Promise<unknown> => {
    const actions = await client.notify('check-client-ip', { ip });
    expect(actions).toHaveLength(1);
    expect(actions[0]).toMatchObject({
      type: ActionType.SetVar,
      scope: VarScope.Session,
      name: 'ip_score',
      dataType: SpoeDataType.Int32,
    });
    return actions[0].value;
  };

  describe('check-client-ip', () => {
    it('sets sess.ip_score to 100 (INT32) for an address of the default blocklist', async () => {
      expect(await score(SpoeIp.parse('10.1.2.3'))).toBe(100);
    });

    it('sets sess.ip_score to 0 for an address not on the blocklist', async () => {
      expect(await score(SpoeIp.parse('192.0.2.1'))).toBe(0);
    });

    it('matches IPv6 sources against IPv6 networks', async () => {
      expect(await score(SpoeIp.parse('2001:db8:bad::1'))).toBe(100);
      expect(await score(SpoeIp.parse('2001:db8:900d::1'))).toBe(0);
    });

    it('matches IPv4-mapped IPv6 sources (a dual-stack bind) against IPv4 entries', async () => {
      expect(await score(TypedData.ipv6('::ffff:10.9.9.9'))).toBe(100);
    });

    it('accepts the address as a STRING too', async () => {
      expect(await score('10.4.4.4')).toBe(100);
    });

    it('sees a change made through the admin API at the next NOTIFY', async () => {
      expect(await score(SpoeIp.parse('198.51.100.9'))).toBe(0);
      expect((await api(agent.httpUrl, 'POST', '/blocklist', { cidr: '198.51.100.0/24' })).status).toBe(201);
      expect(await score(SpoeIp.parse('198.51.100.9'))).toBe(100);
      expect((await api(agent.httpUrl, 'DELETE', '/blocklist?cidr=198.51.100.0/24')).status).toBe(204);
      expect(await score(SpoeIp.parse('198.51.100.9'))).toBe(0);
    });

    it('reports a missing or malformed address through txn.<prefix>.agent_error (1), without a score', async () => {
      const failure = [
        {
          type: ActionType.SetVar,
          scope: VarScope.Transaction,
          name: 'agent_error',
          value: 1,
          dataType: SpoeDataType.Int32,
        },
      ];
      expect(await client.notify('check-client-ip', {})).toEqual(failure);
      expect(await client.notify('check-client-ip', { ip: 'not an address' })).toEqual(failure);
    });
  });

  describe('echo', () => {
    it('returns each argument as a txn variable of the same name and wire type', async () => {
      const args: Array<[string, TypedData]> = [
        ['a_null', TypedData.null()],
        ['a_bool', TypedData.boolean(true)],
        ['a_int32', TypedData.int32(-7)],
        ['a_uint32', TypedData.uint32(4_000_000_000)],
        ['a_int64', TypedData.int64(5)],
        ['a_uint64', TypedData.uint64(2n ** 64n - 1n)],
        ['a_ipv4', TypedData.ipv4('192.0.2.1')],
        ['a_ipv6', TypedData.ipv6('2001:db8::1')],
        ['a_string', TypedData.string('héllo')],
        ['a_binary', TypedData.binary(Buffer.from([0, 1, 255]))],
      ];
      const actions = await client.notify('echo', args);
      expect(actions.map((a) => [a.name, a.scope, a.dataType])).toEqual(
        args.map(([name, data]) => [name, VarScope.Transaction, data.type]),
      );
      expect(actions.map((a) => a.value)).toEqual([
        null,
        true,
        -7,
        4_000_000_000,
        5,
        2n ** 64n - 1n,
        SpoeIp.parse('192.0.2.1'),
        SpoeIp.parse('2001:db8::1'),
        'héllo',
        Buffer.from([0, 1, 255]),
      ]);
    });

    it('skips arguments HAProxy could not name as variables, and repeated names', async () => {
      const actions = await client.notify('echo', [
        ['ok', TypedData.int32(1)],
        ['', TypedData.int32(2)],
        ['bad-name', TypedData.int32(3)],
        ['ok', TypedData.int32(4)],
      ]);
      expect(actions.map((a) => [a.name, a.value])).toEqual([['ok', 1]]);
    });
  });
});
