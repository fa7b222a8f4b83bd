import { Controller, Module } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeContext, SpoeIp, VarScope } from 'nestjs-spoe';
import { ActionType } from 'nestjs-spoe/protocol'; // the wire code of a decoded action
import { SpoeClient } from 'nestjs-spoe/testing';
import { startAgent, TestAgent } from './support/agent';

@Controller()
class ReputationController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp, @Ctx() ctx: SpoeContext) {
    return [
      SetVar.sess('ip_score', ip.toString().startsWith('10.') ? 100 : 0),
      SetVar.txn('msg', ctx.getMessageName()),
    ];
  }
}

@Module({ controllers: [ReputationController] })
class AppModule {}

describe('smoke', () => {
  let agent: TestAgent;
  beforeAll(async () => {
    agent = await startAgent(AppModule);
  });
  afterAll(() => agent.close());

  it('answers a NOTIFY with the handler actions', async () => {
    const client = await SpoeClient.connect({ port: agent.port });
    const actions = await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') });
    expect(actions).toEqual([
      { type: ActionType.SetVar, scope: VarScope.Session, name: 'ip_score', value: 100, dataType: 2 },
      { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'msg', value: 'check-client-ip', dataType: 8 },
    ]);
    expect(await client.close()).toEqual({ status: 0, message: 'normal' });
  });
});
