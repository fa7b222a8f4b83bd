import { Controller, Logger } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { ActionType, SetVar, SpoeDataType, VarScope } from 'nestjs-spoe';
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

  @MessagePattern('not-an-action')
  notAnAction() {
    return { score: 5 };
  }
}

const errorVar = { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'spoe_error' } as const;
// The error variable's values are what HAProxy sees and its rules test: 1 a handler failed, 2 a deadline passed.

describe('a handler never leaves HAProxy waiting', () => {
  let agent: TestAgent;
  let client: SpoeClient;
  let logged: jest.SpyInstance;
  beforeAll(async () => {
    agent = await startAgent({ controllers: [FailingController] }, { handlerDeadlineMs: 300, errorVariable: { scope: VarScope.Transaction, name: 'spoe_error' } });
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

  it.each(['throws', 'rejects', 'errors'])('a handler that %s: ACK at once with the succeeded actions plus the error variable (1)', async (name) => {
    const started = performance.now();
    const actions = await client.notifyMessages([{ name: 'ok' }, { name }]);
    expect(performance.now() - started).toBeLessThan(250);
    expect(actions).toEqual([
      { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'ok', value: 1, dataType: SpoeDataType.Int32 },
      { ...errorVar, value: 1, dataType: SpoeDataType.Int32 },
    ]);
  });

  it('the failure is logged with the message, stream-id and frame-id', async () => {
    await client.notifyMessages([{ name: 'throws' }], { streamId: 4242, frameId: 7 });
    expect(logged.mock.calls.some(([m]) => /"throws".*stream-id 4242, frame-id 7/.test(String(m)))).toBe(true);
  });

  it('a handler past its @MessagePattern deadline: ACK at the deadline with the error variable (2)', async () => {
    const started = performance.now();
    const actions = await client.notifyMessages([{ name: 'ok' }, { name: 'hangs' }]);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(95);
    expect(elapsed).toBeLessThan(290);
    expect(actions.map((a) => [a.name, a.value])).toEqual([
      ['ok', 1],
      ['spoe_error', 2],
    ]);
  });

  it.each([
    ['first', ['hangs', 'hangs-for-a-minute']],
    ['last', ['hangs-for-a-minute', 'hangs']],
  ])('messages with different deadlines: the ACK comes at the smallest (listed %s), with the error variable (2)', async (_, hanging) => {
    // 'hangs' has 100 ms, 'hangs-for-a-minute' 60 s: the client, which gives up after 5 s (its timeoutMs), gets the ACK.
    const actions = await client.notifyMessages([{ name: 'ok' }, ...hanging.map((name) => ({ name }))]);
    expect(actions.map((a) => [a.name, a.value])).toEqual([
      ['ok', 1],
      ['spoe_error', 2],
    ]);
  }, 15_000);

  it('a handler without an override gets the transport deadline', async () => {
    const started = performance.now();
    const actions = await client.notify('default-deadline');
    expect(performance.now() - started).toBeGreaterThanOrEqual(295);
    expect(actions).toEqual([{ ...errorVar, value: 2, dataType: SpoeDataType.Int32 }]);
  });

  it('a result that is not an action is a failure, not a silent drop', async () => {
    expect(await client.notify('not-an-action')).toEqual([{ ...errorVar, value: 1, dataType: SpoeDataType.Int32 }]);
    expect(logged.mock.calls.some(([m]) => String(m).includes('expected a SpoeAction'))).toBe(true);
  });

  it('the connection keeps serving after failures', async () => {
    await client.notify('throws');
    expect(await client.notify('ok')).toHaveLength(1);
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
