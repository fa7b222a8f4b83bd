import { Controller, Injectable, Logger } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { currentSpoeContext, SetVar, SpoeConsoleLogger, spoeLogFields } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { NEVER } from 'rxjs';
import { startAgent, TestAgent } from '../support/agent';

/** An injected service that knows nothing of SPOE but logs, and reads the message it serves. */
@Injectable()
class LookupService {
  private readonly logger = new Logger('LookupService');

  async lookup(): Promise<number> {
    await new Promise((resolve) => setTimeout(resolve, 2));
    this.logger.log('looked up');
    return Number(currentSpoeContext()?.getFrameId());
  }
}

@Controller()
class ContextController {
  constructor(private readonly service: LookupService) {}

  @MessagePattern('lookup')
  async lookup() {
    return SetVar.txn('frame', await this.service.lookup());
  }

  @MessagePattern('where')
  where() {
    return SetVar.txn('where', JSON.stringify(spoeLogFields()) ?? 'nowhere');
  }

  @MessagePattern('fails')
  fails(): never {
    throw new Error('handler exploded');
  }

  @MessagePattern('slow', { deadline: 30 })
  slow() {
    return NEVER;
  }
}

/** The JSON lines the app's SpoeConsoleLogger wrote, parsed. */
function captureJsonLines(): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const stream of [process.stdout, process.stderr]) {
    jest.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      for (const line of String(chunk).split('\n')) if (line.startsWith('{')) lines.push(JSON.parse(line));
      return true;
    });
  }
  return lines;
}

describe('messageContext: each message handled in an AsyncLocalStorage store of its SpoeContext', () => {
  let agent: TestAgent;
  let client: SpoeClient;
  let lines: Array<Record<string, unknown>>;

  beforeEach(async () => {
    agent = await startAgent(
      { controllers: [ContextController], providers: [LookupService] },
      { messageContext: true, handlerDeadlineMs: 60_000 },
      { configure: (app) => app.useLogger(new SpoeConsoleLogger({ json: true, flattenParams: true })) },
    );
    client = await SpoeClient.connect({ port: agent.port, engineId: 'engine-7' });
    lines = captureJsonLines();
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await client.close();
    await agent.close();
  });

  const about = (message: string, streamId: number, frameId: number) => ({
    spoeMessage: message,
    streamId,
    frameId,
    peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    engineId: 'engine-7',
  });

  it('reaches injected services across await, and their log lines carry the message', async () => {
    const [a, b] = await Promise.all([
      client.notifyMessages([{ name: 'lookup' }], { streamId: 5, frameId: 11 }),
      client.notifyMessages([{ name: 'lookup' }], { streamId: 6, frameId: 12 }),
    ]);
    // Two messages in flight at once, each service call saw its own.
    expect(a).toEqual([expect.objectContaining({ name: 'frame', value: 11 })]);
    expect(b).toEqual([expect.objectContaining({ name: 'frame', value: 12 })]);
    const logged = lines.filter((line) => line.message === 'looked up');
    expect(logged).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ context: 'LookupService', level: 'log', ...about('lookup', 5, 11) }),
        expect.objectContaining({ context: 'LookupService', level: 'log', ...about('lookup', 6, 12) }),
      ]),
    );
  });

  it('gives spoeLogFields() in a handler, and nothing outside one', async () => {
    const [action] = await client.notifyMessages([{ name: 'where' }], { streamId: 1, frameId: 2 });
    expect(JSON.parse(String(action.value))).toEqual(about('where', 1, 2));
    expect(spoeLogFields()).toBeUndefined();
    expect(currentSpoeContext()).toBeUndefined();
  });

  it("puts the transport's own lines about a message (failure, deadline) in its context", async () => {
    await client.notifyMessages([{ name: 'fails' }], { streamId: 3, frameId: 4 });
    await client.notifyMessages([{ name: 'slow' }], { streamId: 3, frameId: 5 });
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ context: 'SpoeDispatcher', level: 'error', ...about('fails', 3, 4) }),
        expect.objectContaining({ context: 'SpoeDispatcher', level: 'warn', ...about('slow', 3, 5) }),
      ]),
    );
  });
});

describe('messageContext off (the default)', () => {
  it('runs handlers in no store', async () => {
    const agent = await startAgent({ controllers: [ContextController], providers: [LookupService] });
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      const [action] = await client.notify('where');
      expect(action.value).toBe('nowhere');
    } finally {
      await client.close();
      await agent.close();
    }
  });
});
