// @EventPattern handlers beside a message's @MessagePattern handler: each runs once per message, whatever the order
// Nest registered them in (Nest keeps one handler chain per pattern).
import { Controller, Logger } from '@nestjs/common';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { PIPELINES, startAgent, TestAgent } from '../support/agent';
import { waitFor } from '../support/wait';

const calls: string[] = [];

/** A few turns of the event loop: long enough for a handler that would run twice to have done so. */
async function settled(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

@Controller()
class EventsFirst {
  @EventPattern('audited')
  first(@Payload('n') n: number) {
    calls.push(`first ${n}`);
  }

  @EventPattern('audited')
  second(@Payload('n') n: number) {
    calls.push(`second ${n}`);
  }
}

@Controller()
class MessageAfter {
  @MessagePattern('audited')
  answer(@Payload('n') n: number) {
    calls.push(`answer ${n}`);
    return SetVar.txn('n', n);
  }

  @EventPattern('events-only')
  only(@Payload('n') n: number) {
    calls.push(`only ${n}`);
  }
}

describe.each(PIPELINES)('@EventPattern handlers (%s pipeline)', (pipeline) => {
  let agent: TestAgent;
  let client: SpoeClient;
  beforeAll(async () => {
    Logger.overrideLogger(false);
    agent = await startAgent({ controllers: [EventsFirst, MessageAfter] }, {}, { pipeline });
    client = await SpoeClient.connect({ port: agent.port });
  });
  afterAll(async () => {
    await client.close();
    await agent.close();
    Logger.overrideLogger(['log', 'error', 'warn']);
  });
  beforeEach(() => (calls.length = 0));

  it('registered before the message handler, each still runs once, and the handler answers', async () => {
    expect((await client.notify('audited', { n: 7 })).map((a) => [a.name, a.value])).toEqual([['n', 7]]);
    await waitFor('both event handlers', () => calls.length >= 3);
    await settled();
    expect([...calls].sort()).toEqual(['answer 7', 'first 7', 'second 7']);
  });

  it('a message with event handlers only is acknowledged without actions, each handler run once', async () => {
    expect(await client.notify('events-only', { n: 3 })).toEqual([]);
    await waitFor('the event handler', () => calls.length >= 1);
    await settled();
    expect(calls).toEqual(['only 3']);
  });
});
