import { Controller, Logger } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeContext, SpoeDataType, SpoeIp, TypedData, UnsetVar, VarScope } from 'nestjs-spoe';
import { ActionType } from 'nestjs-spoe/protocol'; // the wire code of a decoded action
import { SpoeClient } from 'nestjs-spoe/testing';
import { from, Observable, of } from 'rxjs';
import { SPOE_UNKNOWN_MESSAGES_WARNED } from '../../libs/spoe/src/spoe.constants';
import { startAgent, TestAgent } from '../support/agent';
import { waitFor } from '../support/wait';

/** Lets a test decide when a handler finishes. */
class Gate {
  private release!: () => void;
  readonly opened = new Promise<void>((resolve) => (this.release = resolve));
  open(): void {
    this.release();
  }
}

const gates = new Map<string, Gate>();
const gate = (key: string): Gate => gates.get(key) ?? (gates.set(key, new Gate()), gates.get(key)!);
const running = new Set<string>();
const events: string[] = [];
const seen: Array<{ payload: unknown; context: SpoeContext }> = [];

@Controller()
class ShapesController {
  @MessagePattern('one-action')
  one() {
    return SetVar.sess('score', 42);
  }

  @MessagePattern('array')
  array() {
    return [SetVar.txn('a', 1), UnsetVar.req('b'), SetVar.res('c', 'three')];
  }

  @MessagePattern('promise')
  async promise() {
    await new Promise((resolve) => setImmediate(resolve)); // answers on a later turn of the event loop
    return SetVar.proc('p', true);
  }

  @MessagePattern('observable')
  observable(): Observable<SetVar | SetVar[]> {
    return from([SetVar.txn('first', 1), [SetVar.txn('second', 2), SetVar.txn('third', 3)]]);
  }

  @MessagePattern('nothing')
  nothing(): void {}

  @MessagePattern('null')
  nothingObservable() {
    return of(undefined, null);
  }

  @MessagePattern('wait')
  async wait(@Payload('key') key: string) {
    running.add(key);
    await gate(key).opened;
    running.delete(key);
    return SetVar.txn(`done_${key}`, true);
  }

  @MessagePattern('inspect')
  inspect(@Payload() payload: unknown, @Ctx() context: SpoeContext) {
    seen.push({ payload, context });
    return [];
  }

  @EventPattern('audit')
  async audit(@Payload('who') who: string) {
    events.push(`start ${who}`);
    await gate('audit').opened;
    events.push(`end ${who}`);
  }

  @EventPattern('audit-fails')
  auditFails(@Payload() _payload: unknown): void {
    throw new Error('event handler failure');
  }
}

describe('NOTIFY → handlers → ACK', () => {
  let agent: TestAgent;
  let client: SpoeClient;
  beforeAll(async () => {
    agent = await startAgent({ controllers: [ShapesController] });
    client = await SpoeClient.connect({ port: agent.port });
  });
  afterAll(async () => {
    await client.close();
    await agent.close();
  });
  beforeEach(() => {
    gates.clear();
    events.length = 0;
    seen.length = 0;
  });

  it('a single action becomes the ACK', async () => {
    expect(await client.notify('one-action')).toEqual([
      { type: ActionType.SetVar, scope: VarScope.Session, name: 'score', value: 42, dataType: SpoeDataType.Int32 },
    ]);
  });

  it('an array of actions keeps its order, with every scope and unset-var', async () => {
    expect(await client.notify('array')).toEqual([
      { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'a', value: 1, dataType: SpoeDataType.Int32 },
      { type: ActionType.UnsetVar, scope: VarScope.Request, name: 'b' },
      { type: ActionType.SetVar, scope: VarScope.Response, name: 'c', value: 'three', dataType: SpoeDataType.String },
    ]);
  });

  it('a Promise of an action is awaited', async () => {
    expect(await client.notify('promise')).toEqual([
      { type: ActionType.SetVar, scope: VarScope.Process, name: 'p', value: true, dataType: SpoeDataType.Boolean },
    ]);
  });

  it('every emission of an Observable is collected', async () => {
    expect((await client.notify('observable')).map((a) => a.name)).toEqual(['first', 'second', 'third']);
  });

  it.each(['nothing', 'null'])('a handler returning %s gets an ACK without actions', async (name) => {
    expect(await client.notify(name)).toEqual([]);
  });

  it('an unknown message gets an ACK without actions and one warning per name', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      expect(await client.notify('no-such-message')).toEqual([]);
      expect(await client.notify('no-such-message')).toEqual([]);
      expect(warn.mock.calls.filter(([m]) => String(m).includes('no-such-message'))).toHaveLength(1);
    } finally {
      warn.mockRestore();
    }
  });

  it('warns about so many unknown names, then once that it stops: a peer inventing names grows neither memory nor logs', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      for (let i = 0; i < SPOE_UNKNOWN_MESSAGES_WARNED + 50; i++)
        expect(await client.notify(`invented-${i}`)).toEqual([]);
      const warnings = warn.mock.calls.map(([m]) => String(m));
      const named = warnings.filter((m) => m.includes('"invented-'));
      // Names warned about before this test (no-such-message) count against the same bound.
      expect(named.length).toBeLessThanOrEqual(SPOE_UNKNOWN_MESSAGES_WARNED);
      expect(named.length).toBeGreaterThan(SPOE_UNKNOWN_MESSAGES_WARNED - 10);
      expect(warnings.filter((m) => m.includes('without a warning'))).toHaveLength(1);
      expect(warnings).toHaveLength(named.length + 1);
    } finally {
      warn.mockRestore();
    }
  });

  it('messages of one NOTIFY run concurrently and their actions keep message order', async () => {
    const ack = client.notifyMessages([
      { name: 'wait', args: { key: 'x' } },
      { name: 'wait', args: { key: 'y' } },
    ]);
    await waitFor('both handlers of the NOTIFY to start', () => running.has('x') && running.has('y'));
    gate('y').open();
    gate('x').open();
    expect((await ack).map((a) => a.name)).toEqual(['done_x', 'done_y']);
  });

  it('pipelined NOTIFY are acknowledged as they finish, out of order', async () => {
    const order: string[] = [];
    const slow = client.notify('wait', { key: 'slow' }).then(() => order.push('slow'));
    const fast = client.notify('wait', { key: 'fast' }).then(() => order.push('fast'));
    await waitFor('both handlers to start', () => running.has('slow') && running.has('fast'));
    gate('fast').open();
    await fast;
    gate('slow').open();
    await slow;
    expect(order).toEqual(['fast', 'slow']);
  });

  it('@EventPattern handlers run without delaying the ACK', async () => {
    const actions = await client.notifyMessages([{ name: 'audit', args: { who: 'alice' } }, { name: 'one-action' }]);
    expect(actions.map((a) => a.name)).toEqual(['score']);
    expect(events).toEqual(['start alice']);
    gate('audit').open();
    await waitFor('the event handler to end', () => events.length === 2);
  });

  it('a failing @EventPattern handler is logged and the ACK still goes out', async () => {
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    try {
      expect(await client.notifyMessages([{ name: 'audit-fails' }, { name: 'one-action' }])).toHaveLength(1);
      await waitFor('the event handler failure to be logged', () =>
        error.mock.calls.some(([m]) => String(m).includes('event handler failed')),
      );
    } finally {
      error.mockRestore();
    }
  });

  it('@Payload() is the arguments by name, typed; @Ctx() has the message, frame and connection', async () => {
    await client.notifyMessages(
      [
        {
          name: 'inspect',
          args: [
            ['ip', SpoeIp.parse('2001:db8::1')],
            ['n', TypedData.int64(-5)],
            ['big', 2n ** 60n],
            ['s', 'héllo'],
            ['bin', Buffer.from([1, 2])],
            ['none', null],
            ['dup', 'first'],
            ['dup', 'second'],
            ['', 'unnamed'],
          ],
        },
      ],
      { streamId: 77, frameId: 3 },
    );
    const [{ payload, context }] = seen;
    expect(payload).toEqual({
      ip: SpoeIp.parse('2001:db8::1'),
      n: -5,
      big: 2n ** 60n,
      s: 'héllo',
      bin: Buffer.from([1, 2]),
      none: null,
      dup: 'first',
      '': 'unnamed',
    });
    expect(context.getMessageName()).toBe('inspect');
    expect(context.getStreamId()).toBe(77);
    expect(context.getFrameId()).toBe(3);
    expect(context.getEngineId()).toBe('nestjs-spoe-client');
    expect(context.getRemoteAddress()).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(context.getSettings()).toEqual({ version: '2.0', maxFrameSize: 16380, capabilities: ['pipelining'] });
    expect(
      context
        .getArguments()
        .filter((a) => a.name === 'dup')
        .map((a) => a.value),
    ).toEqual(['first', 'second']);
    expect(context.getArguments().find((a) => a.name === 'n')?.type).toBe(SpoeDataType.Int64);
  });

  it('a STRING that is not UTF-8 keeps its raw bytes on the argument', async () => {
    const raw = Buffer.from([0x66, 0xff, 0xfe, 0x6f]);
    await client.notify('inspect', { s: TypedData.stringBytes(raw) });
    const arg = seen[0].context.getArguments()[0];
    expect(arg.type).toBe(SpoeDataType.String);
    expect(arg.bytes).toEqual(raw);
    expect(arg.value).toBe('f\uFFFD\uFFFDo');
  });
});
