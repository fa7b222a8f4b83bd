import { Controller, Logger } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { SetVar, SpoeDataType, VarScope } from 'nestjs-spoe';
import { ActionType } from 'nestjs-spoe/protocol'; // the wire code of a decoded action
import { SpoeClient } from 'nestjs-spoe/testing';
import { NEVER, throwError } from 'rxjs';
import { startAgent, TestAgent } from '../support/agent';

@Controller()
class FailingController {
  @MessagePattern('ok')
  ok() {
    return SetVar.txn('ok', 1);
  }

  @MessagePattern('throws')
  throws(): never {
    throw new Error('handler exploded');
  }

  @MessagePattern('rejects')
  async rejects(): Promise<never> {
    await Promise.resolve();
    throw new Error('handler rejected');
  }

  @MessagePattern('errors')
  errors() {
    return throwError(() => new Error('observable failed'));
  }

  @MessagePattern('hangs', { deadline: 100 })
  hangs() {
    return NEVER;
  }

  @MessagePattern('hangs-for-a-minute', { deadline: 60_000 })
  hangsForAMinute() {
    return NEVER;
  }

  @MessagePattern('default-deadline')
  defaultDeadline() {
    return new Promise(() => undefined);
  }

  /** Answers when the test calls `release`, which it does once the handler has started. */
  @MessagePattern('answers-when-released', { deadline: 100 })
  answersWhenReleased() {
    return new Promise((resolve) => gate.started(() => resolve(SetVar.txn('released', 1))));
  }

  @MessagePattern('not-an-action')
  notAnAction() {
    return { score: 5 };
  }
}

/** How a test learns that 'answers-when-released' started, and answers it. */
const gate = { started: (release: () => void): void => release() };

const errorVar = { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'spoe_error' } as const;
// The error variable's values are what HAProxy sees and its rules test: 1 a handler failed, 2 a deadline passed.

// No stopwatch: "at once" is proven by deadlines far away. The transport deadline is a minute and the client gives up
// after 5 s (its timeoutMs): an ACK the client gets came long before any deadline it did not expect.
const FAR_DEADLINE_MS = 60_000;

describe('a handler never leaves HAProxy waiting', () => {
  let agent: TestAgent;
  let client: SpoeClient;
  let logged: jest.SpyInstance;
  beforeAll(async () => {
    agent = await startAgent(
      { controllers: [FailingController] },
      { handlerDeadlineMs: FAR_DEADLINE_MS, errorVariable: { scope: VarScope.Transaction, name: 'spoe_error' } },
    );
    client = await SpoeClient.connect({ port: agent.port });
  });
  afterAll(async () => {
    await client.close();
    await agent.close();
  });
  beforeEach(() => {
    logged = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());

  it.each(['throws', 'rejects', 'errors'])(
    'a handler that %s: ACK at once with the succeeded actions plus the error variable (1)',
    async (name) => {
      const actions = await client.notifyMessages([{ name: 'ok' }, { name }]);
      expect(actions).toEqual([
        { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'ok', value: 1, dataType: SpoeDataType.Int32 },
        { ...errorVar, value: 1, dataType: SpoeDataType.Int32 },
      ]);
    },
  );

  it('the failure is logged with the message, stream-id, frame-id and peer', async () => {
    await client.notifyMessages([{ name: 'throws' }], { streamId: 4242, frameId: 7 });
    expect(
      logged.mock.calls.some(([m]) => /"throws".*stream-id 4242, frame-id 7, from 127\.0\.0\.1:\d+/.test(String(m))),
    ).toBe(true);
  });

  it('a handler past its @MessagePattern deadline (100 ms, the transport’s is a minute): ACK with the error variable (2)', async () => {
    const warned = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const actions = await client.notifyMessages([{ name: 'ok' }, { name: 'hangs' }], { streamId: 4343, frameId: 9 });
    expect(actions.map((a) => [a.name, a.value])).toEqual([
      ['ok', 1],
      ['spoe_error', 2],
    ]);
    // Logged with the message, its ids and the peer, like every line about a message.
    const line = /"hangs".*stream-id 4343, frame-id 9, from 127\.0\.0\.1:\d+/;
    expect(warned.mock.calls.some(([m]) => line.test(String(m)))).toBe(true);
  });

  it('a handler within its deadline is waited for: its answer, not the error variable, is in the ACK', async () => {
    let started = false;
    gate.started = (release) => {
      started = true;
      // Released on a later turn: the ACK cannot be written before the handler answers.
      setImmediate(release);
    };
    const actions = await client.notifyMessages([{ name: 'ok' }, { name: 'answers-when-released' }]);
    expect(started).toBe(true);
    expect(actions.map((a) => [a.name, a.value])).toEqual([
      ['ok', 1],
      ['released', 1],
    ]);
  });

  it.each([
    ['first', ['hangs', 'hangs-for-a-minute']],
    ['last', ['hangs-for-a-minute', 'hangs']],
  ])(
    'messages with different deadlines: the ACK comes at the smallest (listed %s), with the error variable (2)',
    async (_, hanging) => {
      // 'hangs' has 100 ms, 'hangs-for-a-minute' 60 s: the client, which gives up after 5 s (its timeoutMs), gets the
      // ACK.
      const actions = await client.notifyMessages([{ name: 'ok' }, ...hanging.map((name) => ({ name }))]);
      expect(actions.map((a) => [a.name, a.value])).toEqual([
        ['ok', 1],
        ['spoe_error', 2],
      ]);
    },
    15_000,
  );

  it('a result that is not an action is a failure, not a silent drop', async () => {
    expect(await client.notify('not-an-action')).toEqual([{ ...errorVar, value: 1, dataType: SpoeDataType.Int32 }]);
    expect(logged.mock.calls.some(([m]) => String(m).includes('expected a SpoeAction'))).toBe(true);
  });

  it('the connection keeps serving after failures', async () => {
    await client.notify('throws');
    expect(await client.notify('ok')).toHaveLength(1);
  });
});

describe('the transport deadline (handlerDeadlineMs)', () => {
  it('applies to a handler without its own: with 300 ms, the client (5 s) gets an ACK with the error variable (2)', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const agent = await startAgent(
      { controllers: [FailingController] },
      { handlerDeadlineMs: 300, errorVariable: { scope: VarScope.Transaction, name: 'spoe_error' } },
    );
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      expect(await client.notify('default-deadline')).toEqual([
        { ...errorVar, value: 2, dataType: SpoeDataType.Int32 },
      ]);
    } finally {
      await client.close();
      await agent.close();
      jest.restoreAllMocks();
    }
  });
});

describe('without an error variable', () => {
  it('a failed handler still gets its ACK, with only the actions that succeeded', async () => {
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const agent = await startAgent({ controllers: [FailingController] });
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      expect((await client.notifyMessages([{ name: 'ok' }, { name: 'throws' }])).map((a) => a.name)).toEqual(['ok']);
    } finally {
      await client.close();
      await agent.close();
      jest.restoreAllMocks();
    }
  });
});
