import { Controller, Logger } from '@nestjs/common';
import { MessagePattern } from '@nestjs/microservices';
import { SetVar } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { startAgent, TestAgent } from '../support/agent';
import { haproxyHello, RawPeer } from '../support/raw-peer';
import { waitFor } from '../support/wait';

@Controller()
class QuietController {
  @MessagePattern('ok')
  ok() {
    return SetVar.txn('ok', 1);
  }
}

const LEVELS = ['log', 'error', 'warn', 'debug', 'verbose', 'fatal'] as const;

describe('logs under normal traffic', () => {
  let agent: TestAgent;
  beforeAll(async () => {
    agent = await startAgent({ controllers: [QuietController] });
  });
  afterAll(() => agent.close());

  it('say nothing per connection, per health check, per reset or per message, at any of Nest’s levels', async () => {
    const spies = LEVELS.map((level) => jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined));
    try {
      for (let i = 0; i < 3; i++) await SpoeClient.healthCheck({ port: agent.port });
      const client = await SpoeClient.connect({ port: agent.port });
      for (let i = 0; i < 20; i++) await client.notify('ok');
      await client.close();
      // HAProxy 3.1+ ends connections, health checks included, with a TCP reset.
      const peer = await RawPeer.connect({ port: agent.port });
      peer.send(haproxyHello({ healthcheck: true }));
      await peer.nextFrame();
      const closed = peer.expectClosed();
      peer.socket.resetAndDestroy();
      await closed.catch(() => undefined);
      const reset = await RawPeer.hello({ port: agent.port });
      reset.peer.socket.resetAndDestroy();
      // A socket's error comes before its close: once no connection is left, every reset was handled.
      await waitFor('every connection closed', () => agent.server.stats.connections === 0);
      for (const spy of spies) expect(spy.mock.calls).toEqual([]);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});
