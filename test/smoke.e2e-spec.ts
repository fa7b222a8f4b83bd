import { Controller, INestMicroservice, Module } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { NestFactory } from '@nestjs/core';
import { ActionType, SetVar, SpoeContext, SpoeIp, SpoeServer, VarScope } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { AddressInfo } from 'node:net';

@Controller()
class ReputationController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp, @Ctx() ctx: SpoeContext) {
    return [SetVar.sess('ip_score', ip.toString().startsWith('10.') ? 100 : 0), SetVar.txn('msg', ctx.getMessageName())];
  }
}

@Module({ controllers: [ReputationController] })
class AppModule {}

describe('smoke', () => {
  let app: INestMicroservice;
  let server: SpoeServer;
  beforeAll(async () => {
    server = new SpoeServer({ host: '127.0.0.1', port: 0 });
    app = await NestFactory.createMicroservice(AppModule, { strategy: server, logger: false });
    await app.listen();
  });
  afterAll(() => app.close());

  it('answers a NOTIFY with the handler actions', async () => {
    const client = await SpoeClient.connect({ port: (server.address as AddressInfo).port });
    const actions = await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') });
    expect(actions).toEqual([
      { type: ActionType.SetVar, scope: VarScope.Session, name: 'ip_score', value: 100, dataType: 2 },
      { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'msg', value: 'check-client-ip', dataType: 8 },
    ]);
    expect(await client.close()).toEqual({ status: 0, message: 'normal' });
  });
});
