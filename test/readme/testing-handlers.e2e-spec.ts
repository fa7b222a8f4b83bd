import { INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AddressInfo } from 'node:net';
import { SetVar, SpoeIp, SpoeServer } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { AppModule } from './quick-start';

describe('ReputationController over real SPOP', () => {
  let app: INestMicroservice;
  let client: SpoeClient;

  beforeAll(async () => {
    const server = new SpoeServer({ host: '127.0.0.1', port: 0 }); // 0: a free port
    app = await NestFactory.createMicroservice(AppModule, { strategy: server, logger: false });
    await app.listen();
    client = await SpoeClient.connect({ port: (server.address as AddressInfo).port });
  });

  afterAll(async () => {
    await client.close();
    await app.close();
  });

  it('scores a blocked address 100', async () => {
    const actions = await client.notify('check-client-ip', { ip: SpoeIp.parse('10.1.2.3') });
    expect(actions[0]).toMatchObject(SetVar.sess('ip_score', 100)); // what HAProxy received, as the handler returned it
  });
});
