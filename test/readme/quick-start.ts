import { Controller, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeContext, SpoeIp, SpoeModule, SpoeServer } from 'nestjs-spoe';

@Injectable()
export class ReputationService {
  async score(ip: SpoeIp): Promise<number> {
    return ip.unmapped().toString().startsWith('10.') ? 100 : 0; // a database or a cache, in real life
  }
}

@Controller()
export class ReputationController {
  constructor(private readonly reputation: ReputationService) {}

  // spoe-message check-client-ip
  //     args ip=src
  //     event on-frontend-http-request
  @MessagePattern('check-client-ip')
  async check(@Payload('ip') ip: SpoeIp, @Ctx() ctx: SpoeContext) {
    const score = await this.reputation.score(ip);
    return [SetVar.sess('ip_score', score), SetVar.txn('checked_by', ctx.getMessageName())];
  }
}

// SpoeModule runs the handlers through nestjs-spoe's own pipeline: Nest's guards, pipes, interceptors and filters,
// without Nest's per-call promises.
@Module({ imports: [SpoeModule], controllers: [ReputationController], providers: [ReputationService] })
export class AppModule {}

export async function main(port = 12345) {
  const app = await NestFactory.createMicroservice(AppModule, { strategy: new SpoeServer({ port }) });
  await app.listen();
  return app;
}
