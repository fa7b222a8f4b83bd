/**
 * The SPOE transport behind real HAProxy 2.6, 3.0, 3.2 and 3.4 (one `describe` per version, see describeEachHaproxy):
 * scoring and blocking by source address (IPv4, IPv6, IPv4-mapped), every data type through HAProxy and back,
 * several messages in one NOTIFY, send-spoe-group, failing and late handlers, the agent on a Unix socket, and HAProxy's
 * SPOE error counter.
 *
 * Facts these tests rely on (checked against the binaries):
 * - 2.x: STREAM-ID is HAProxy's stream id and FRAME-ID counts the NOTIFY of the stream; 3.1+: each NOTIFY is its own
 *   SPOP stream (odd stream-ids, FRAME-ID 1).
 * - HAProxy sends every integer sample as INT64 and stores INT32/INT64 variables as integers.
 * - A source set by `tcp-request content set-src` from "::ffff:a.b.c.d" is an IPv6 (IPv4-mapped) address, and so is
 *   the source on an IPv6 socket bound to ::ffff:127.0.0.1 and reached over IPv4.
 */
import { randomBytes } from 'node:crypto';
import { cleanupAll } from '../support/cleanup';
import { describeEachHaproxy, HaproxyBinary, isSpopMux } from '../support/haproxy-binaries';
import { SpoeLogEvent } from '../support/haproxy-spoe-log';
import { hasIpv6Loopback } from '../support/ports';
import { itIf } from '../support/prerequisites';
import { waitFor } from '../support/wait';
import { expectEchoed, MessageRecord, newRid, Stack, startStack, streamsEnded } from './agent-app';

afterAll(() => cleanupAll());

/** The stack binds [::1] when the host has IPv6 loopback. */
const ipv6Loopback = {
  name: 'IPv6 loopback (::1)',
  missing: hasIpv6Loopback() ? undefined : 'the loopback interface has no ::1',
  optionalInCi:
    'IPv6 is a setting of the host network (Docker disables it in containers by default), which scripts/test.sh cannot change',
};

/** Waits until HAProxy logged `count` more SPOE lines after line index `from`, and returns them. */
async function spoeLinesAfter(stack: Stack, from: number, count = 1): Promise<SpoeLogEvent[]> {
  return waitFor(
    `${count} SPOE log line(s)`,
    () => {
      const events = stack.haproxy.spoeEvents(from);
      return events.length >= count ? events : undefined;
    },
    5000,
    10,
  );
}

describeEachHaproxy('SPOE agent', (binary: HaproxyBinary) => {
  const spop = isSpopMux(binary.version);
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack(binary);
  }, 30_000);
  afterAll(() => stack?.close());

  describe('traces (nestjs-spoe/tracing)', () => {
    /** The span of the check-client-ip message of request `rid`, once it ended. */
    const spanOf = (rid: string) =>
      waitFor('the span of check-client-ip', () => {
        const [check] = stack.agent.recorder.byRid(rid).filter((r) => r.message === 'check-client-ip');
        const spans = stack.agent.recorder.spans.getFinishedSpans();
        return (
          check &&
          spans.find(
            (s) =>
              String(s.attributes['spoe.stream_id']) === check.streamId &&
              String(s.attributes['spoe.frame_id']) === check.frameId &&
              s.attributes['network.peer.port'] === Number(check.connection.split(':').pop()),
          )
        );
      });

    it("continues the trace of the request's traceparent header (args traceparent=req.hdr(traceparent))", async () => {
      const rid = newRid();
      const traceId = randomBytes(16).toString('hex');
      const parent = randomBytes(8).toString('hex');
      const res = await stack.request('/', rid, { headers: { traceparent: `00-${traceId}-${parent}-01` } });
      expect(res.status).toBe(200);
      const span = await spanOf(rid);
      expect(span.name).toBe('spoe check-client-ip');
      expect(span.spanContext().traceId).toBe(traceId);
      expect(span.parentSpanContext).toMatchObject({ traceId, spanId: parent, isRemote: true });
      expect(span.attributes).toMatchObject({ 'spoe.message': 'check-client-ip', 'spoe.outcome': 'ok' });
    });

    it('gives no span to a request whose traceparent is not sampled, and acknowledges it as any other', async () => {
      const rid = newRid();
      const traceId = randomBytes(16).toString('hex');
      const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-00`;
      const res = await stack.request('/', rid, { headers: { traceparent } });
      expect(res.status).toBe(200);
      expect(res.headers['x-ip-score']).toBe('5');
      const [check] = stack.agent.recorder.byRid(rid).filter((r) => r.message === 'check-client-ip');
      expect(check.args.find((a) => a.name === 'traceparent')).toMatchObject({ type: 'String', value: traceparent });
      // A span ends before its ACK is sent: had the message one, in its trace or a new one, it would be exported now.
      // (The audit message of the same NOTIFY carries no traceparent, and starts a trace of its own.)
      const port = Number(check.connection.split(':').pop());
      expect(
        stack.agent.recorder.spans
          .getFinishedSpans()
          .filter(
            (s) =>
              s.spanContext().traceId === traceId ||
              (s.attributes['spoe.message'] === 'check-client-ip' &&
                String(s.attributes['spoe.stream_id']) === check.streamId &&
                String(s.attributes['spoe.frame_id']) === check.frameId &&
                s.attributes['network.peer.port'] === port),
          ),
      ).toEqual([]);
    });

    it('starts a trace of its own for a request without traceparent (HAProxy sends the argument as NULL)', async () => {
      const rid = newRid();
      expect((await stack.request('/', rid)).status).toBe(200);
      const [check] = stack.agent.recorder.byRid(rid);
      expect(check.args.find((a) => a.name === 'traceparent')).toMatchObject({ type: 'Null' });
      expect((await spanOf(rid)).parentSpanContext).toBeUndefined();
    });
  });

  describe('scoring by source address', () => {
    it('scores an IPv4 client (127.0.0.1) and forwards the decision to the backend', async () => {
      const rid = newRid();
      const res = await stack.request('/', rid);
      expect(res.status).toBe(200);
      expect(res.headers['x-ip-score']).toBe('5');
      expect(res.headers['x-ip-family']).toBe('ipv4');
      expect(JSON.parse(res.body).headers['x-ip-score']).toBe('5');
      const [check] = stack.agent.recorder.byRid(rid).filter((r) => r.message === 'check-client-ip');
      expect(check.args.find((a) => a.name === 'ip')).toMatchObject({ type: 'Ipv4' });
      expect(String(check.args.find((a) => a.name === 'ip')?.value)).toBe('127.0.0.1');
    });

    itIf(ipv6Loopback)('scores an IPv6 client (::1)', async () => {
      expect(stack.port6).toBeDefined();
      const rid = newRid();
      const res = await stack.request('/', rid, { host: '::1', port: stack.port6 });
      expect(res.status).toBe(200);
      expect(res.headers['x-ip-score']).toBe('5');
      expect(res.headers['x-ip-family']).toBe('ipv6');
      expect(res.headers['x-ip-seen']).toBe('::1');
      const [check] = stack.agent.recorder.byRid(rid);
      expect(check.args.find((a) => a.name === 'ip')?.type).toBe('Ipv6');
    });

    it('sees an IPv4 client of an IPv6 socket as IPv4-mapped IPv6 (bind [::ffff:127.0.0.1] v4v6)', async () => {
      const rid = newRid();
      const res = await stack.request('/', rid, { port: stack.portMapped });
      expect(res.status).toBe(200);
      expect(res.headers['x-ip-family']).toBe('ipv4-mapped');
      expect(res.headers['x-ip-seen']).toBe('::ffff:127.0.0.1');
      expect(res.headers['x-ip-score']).toBe('5');
      expect(stack.agent.recorder.byRid(rid)[0].args.find((a) => a.name === 'ip')?.type).toBe('Ipv6');
    });

    it.each([
      ['10.1.2.3', 'ipv4', 'Ipv4'],
      ['fd00::5', 'ipv6', 'Ipv6'],
      ['::ffff:10.9.9.9', 'ipv4-mapped', 'Ipv6'],
    ])(
      'blocks %s (set by tcp-request content set-src) with a 403 after the agent scored it 100',
      async (source, family, wireType) => {
        const rid = newRid();
        const served = stack.backend.requestCount;
        const res = await stack.request('/', rid, { headers: { 'x-forwarded-for': source } });
        expect(res.status).toBe(403);
        expect(stack.backend.requestCount).toBe(served);
        expect(res.headers['x-ip-score']).toBe('100');
        expect(res.headers['x-ip-family']).toBe(family);
        expect(res.headers['x-ip-seen']).toBe(source);
        const [check] = stack.agent.recorder.byRid(rid);
        expect(check.args.find((a) => a.name === 'ip')?.type).toBe(wireType);
      },
    );

    it('lets a non-blocked forwarded source through (192.0.2.1 scores 5)', async () => {
      const res = await stack.request('/', newRid(), { headers: { 'x-forwarded-for': '192.0.2.1' } });
      expect(res.status).toBe(200);
      expect(res.headers['x-ip-score']).toBe('5');
      expect(res.headers['x-ip-seen']).toBe('192.0.2.1');
    });
  });

  describe('data types through HAProxy and back', () => {
    it('returns every argument as a variable of the same type and value; NULL leaves the variable unset', async () => {
      const rid = newRid();
      const res = await stack.request('/echo', rid, { body: 'ping-body' });
      expect(res.status).toBe(200);
      // Values as HAProxy prints the variables the agent set, and the types HAProxy sent back in echo-check.
      expectEchoed(res, 'ping-body');
      // Type-sensitive ACLs: integer comparisons beyond 2^32, a boolean match, IP network matches.
      expect(res.headers).toMatchObject({
        'x-check-neg': 'ok',
        'x-check-big': 'ok',
        'x-check-b': 'ok',
        'x-check-v4': 'ok',
        'x-check-v6': 'ok',
      });

      const [echo] = stack.agent.recorder.byRid(rid).filter((r) => r.message === 'echo');
      const [echoCheck] = stack.agent.recorder.byRid(rid).filter((r) => r.message === 'echo-check');
      const sent = (name: string) => echo.args.find((a) => a.name === name);
      const back = (name: string) => echoCheck.args.find((a) => a.name === name);
      const expected: Array<[string, string, unknown]> = [
        ['s', 'String', 'hello'],
        ['neg', 'Int64', -5],
        ['big', 'Int64', 5_000_000_000],
        ['b', 'Boolean', true],
        ['bin', 'Binary', Buffer.from('HELLO')],
        ['body', 'Binary', Buffer.from('ping-body')],
        ['h', 'Null', null],
      ];
      for (const [name, type, value] of expected) {
        expect({ name, type: sent(name)?.type, value: sent(name)?.value }).toEqual({ name, type, value });
        expect({ name, type: back(name)?.type, value: back(name)?.value }).toEqual({ name, type, value });
      }
      for (const [name, type, text] of [
        ['v4', 'Ipv4', '192.0.2.7'],
        ['v6', 'Ipv6', '::1'],
      ]) {
        expect({ type: sent(name)?.type, value: String(sent(name)?.value) }).toEqual({ type, value: text });
        expect({ type: back(name)?.type, value: String(back(name)?.value) }).toEqual({ type, value: text });
      }
    });

    it('echoes a request body as large as HAProxy buffers it (NOTIFY and ACK close to max-frame-size)', async () => {
      // The body is larger than HAProxy's buffer: req.body gives what was buffered (about 15 KB with tune.bufsize
      // 16384),
      // so the NOTIFY, and the ACK setting it back, are close to the 16380-byte frame size.
      const rid = newRid();
      const res = await stack.request('/echo', rid, { body: 'x'.repeat(20_000) });
      expect(res.status).toBe(200);
      const [echo] = stack.agent.recorder.byRid(rid).filter((r) => r.message === 'echo');
      const [echoCheck] = stack.agent.recorder.byRid(rid).filter((r) => r.message === 'echo-check');
      const sent = echo.args.find((a) => a.name === 'body')?.value as Buffer;
      const back = echoCheck.args.find((a) => a.name === 'body')?.value as Buffer;
      expect(sent.length).toBeGreaterThan(14_000);
      expect(sent.equals(Buffer.alloc(sent.length, 'x'))).toBe(true);
      expect(res.headers['x-echo-body-length']).toBe(String(sent.length));
      expect(back.equals(sent)).toBe(true);
      expect(res.headers['x-agent-error']).toBeUndefined();
      expect(res.headers['x-spoe-error']).toBeUndefined();
    });
  });

  describe('several messages and groups', () => {
    it('receives the messages of one event in ONE NOTIFY frame', async () => {
      const rid = newRid();
      const from = stack.haproxy.lines.length;
      const res = await stack.request('/echo', rid, { body: 'x' });
      expect(res.status).toBe(200);
      const records = stack.agent.recorder.byRid(rid);
      const frontend = records.filter((r) => ['check-client-ip', 'audit', 'echo'].includes(r.message));
      expect(frontend.map((r) => r.message)).toEqual(['check-client-ip', 'audit', 'echo']);
      // Same connection, same STREAM-ID and FRAME-ID: one NOTIFY carried the three messages.
      const ids = new Set(frontend.map((r) => `${r.connection} ${r.streamId}/${r.frameId}`));
      expect(ids.size).toBe(1);
      const [echoCheck] = records.filter((r) => r.message === 'echo-check');
      const first = frontend[0];
      if (spop) {
        // 3.1+: one SPOP stream per NOTIFY (odd ids: HAProxy opens them), FRAME-ID 1.
        expect(Number(first.streamId) % 2).toBe(1);
        expect(first.frameId).toBe('1');
        expect(echoCheck.frameId).toBe('1');
        // Another SPOP stream: another id, or the same on another connection (ids start again on each).
        expect(`${echoCheck.connection} ${echoCheck.streamId}`).not.toBe(`${first.connection} ${first.streamId}`);
      } else {
        // 2.x: STREAM-ID is HAProxy's stream id (the log's sid), FRAME-ID counts the stream's NOTIFY frames.
        const [event] = await spoeLinesAfter(stack, from, 2);
        expect(first.streamId).toBe(String(event.sid));
        expect(first.frameId).toBe('1');
        expect(echoCheck.streamId).toBe(first.streamId);
        expect(echoCheck.frameId).toBe('2');
      }
    });

    it('handles a message sent with http-request send-spoe-group', async () => {
      const rid = newRid();
      const from = stack.haproxy.lines.length;
      const res = await stack.request('/group', rid);
      expect(res.status).toBe(200);
      expect(res.headers['x-group']).toBe('1');
      const records = stack.agent.recorder.byRid(rid);
      expect(records.map((r) => r.message)).toEqual(['check-client-ip', 'audit', 'group-msg']);
      const group = records[2];
      // Another NOTIFY than the event's: another frame, or the same ids on another connection (3.1+ may open one).
      const notifyOf = (r: MessageRecord): string => `${r.connection} ${r.streamId}/${r.frameId}`;
      expect(notifyOf(group)).not.toBe(notifyOf(records[0]));
      const events = await spoeLinesAfter(stack, from, 2);
      expect(events.map((e) => `${e.kind}:${e.event} st=${e.st}`)).toEqual([
        'EVENT:on-frontend-http-request st=0',
        'GROUP:grp st=0',
      ]);
    });
  });

  describe('failing and late handlers', () => {
    it.each([
      ['/boom', '1', 'a handler that throws'],
      ['/slow', '2', 'a handler past its 50 ms deadline'],
    ])(
      '%s: %s is acknowledged at once, with the other messages’ actions and the error variable',
      async (path, agentError) => {
        const rid = newRid();
        const from = stack.haproxy.lines.length;
        const res = await stack.request(path, rid);
        expect(res.status).toBe(200);
        expect(res.headers['x-agent-error']).toBe(agentError);
        expect(res.headers['x-ip-score']).toBe('5');
        expect(res.headers['x-spoe-error']).toBeUndefined();
        // No stopwatch: HAProxy's `timeout processing` is 2 s (40 times the slow handler's deadline). Had the ACK not
        // come before it, HAProxy would set its own error variable and none of the agent's; SPOE status 0 is "no
        // error".
        const [event] = await spoeLinesAfter(stack, from);
        expect(event.st).toBe(0);
      },
    );
  });

  describe("HAProxy's SPOE error counter (the <nb_errors>/<nb_processed> ending each SPOE log line)", () => {
    it(`${spop ? 'counts every ended stream as an error on 3.1+ (not an agent error)' : 'stays at 0 on 2.x'}`, async () => {
      // Two scored requests with K requests in between that send no NOTIFY at all (/nospoe: every message is
      // conditional), each on its own connection, one at a time.
      const K = 3;
      const from = stack.haproxy.lines.length;
      await stack.request('/', newRid());
      const [a] = await spoeLinesAfter(stack, from);
      const sent = stack.agent.recorder.records.length;
      for (let i = 0; i < K; i++) {
        await streamsEnded(stack);
        expect((await stack.request('/nospoe', newRid())).status).toBe(200);
      }
      expect(stack.agent.recorder.records.length).toBe(sent);
      await streamsEnded(stack);
      const from2 = stack.haproxy.lines.length;
      await stack.request('/', newRid());
      const [b] = await spoeLinesAfter(stack, from2);
      expect([a.st, b.st]).toEqual([0, 0]);
      // 3.2/3.4: spoe_destroy_context() sets status INTERRUPT and increments nb_errors for every stream whose SPOE
      // context is not in state NONE when it is detached — READY after a successful exchange, or when nothing was sent.
      // So the counter grows by one per ended stream: request A and the K /nospoe requests.
      expect(b.errors - a.errors).toBe(spop ? K + 1 : 0);
    });
  });

  describe('log', () => {
    it('has logged no SPOE error and no set-on-error for any request of this suite so far', async () => {
      // One request of its own: the check stands alone, whichever tests ran before it.
      const from = stack.haproxy.lines.length;
      expect((await stack.request('/', newRid())).status).toBe(200);
      await spoeLinesAfter(stack, from);
      const events = stack.haproxy.spoeEvents();
      expect(events.filter((e) => e.st !== 0).map((e) => e.raw)).toEqual([]);
    });
  });
});

describeEachHaproxy('SPOE agent on a Unix socket', (binary: HaproxyBinary) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(binary, { unixAgent: true, extraBinds: false });
  }, 30_000);
  afterAll(() => stack?.close());

  it('scores requests through `server a1 unix@<path>`', async () => {
    const rid = newRid();
    const res = await stack.request('/', rid);
    expect(res.status).toBe(200);
    expect(res.headers['x-ip-score']).toBe('5');
    const blocked = await stack.request('/', newRid(), { headers: { 'x-forwarded-for': '10.0.0.1' } });
    expect(blocked.status).toBe(403);
    const [record] = stack.agent.recorder.byRid(rid);
    expect('path' in stack.agent.endpoint).toBe(true);
    expect(record.connection).toContain('agent.sock');
    expect(stack.haproxy.spoeEvents().filter((e) => e.st !== 0)).toEqual([]);
  });
});

describeEachHaproxy('agents backend mode', (binary: HaproxyBinary) => {
  if (isSpopMux(binary.version)) {
    it('3.1+ also runs a 2.x configuration unchanged (mode tcp backend converted to spop, timeout hello/idle ignored)', async () => {
      const stack = await startStack(binary, { agentsMode: 'tcp', extraBinds: false });
      try {
        const res = await stack.request('/', newRid());
        expect(res.headers['x-ip-score']).toBe('5');
        expect(stack.haproxy.unexpectedProblems()).toEqual([]);
      } finally {
        await stack.close();
      }
    });
  } else {
    it('2.x rejects an agents backend in mode spop', async () => {
      await expect(startStack(binary, { agentsMode: 'spop', extraBinds: false })).rejects.toThrow(
        /unknown proxy mode 'spop'/,
      );
    });
  }
});
