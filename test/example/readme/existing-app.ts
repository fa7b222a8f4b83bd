import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeIp, SpoeModule, SpoeServer, TypedData } from 'nestjs-spoe';

@Controller()
export class IpCheckController {
  // spoe-message check-client-ip / args ip=src  →  sets sess.<var-prefix>.ip_score
  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp): SetVar[] {
    const blocked = ip.unmapped().toString().startsWith('10.');
    return [SetVar.sess('ip_score', TypedData.int32(blocked ? 100 : 0))];
  }
}

@Module({
  // SpoeModule makes the SpoeServer a (global) provider: health checks and admin code can inject it.
  imports: [SpoeModule.forRootAsync({ useFactory: () => ({ port: Number(process.env.SPOE_PORT ?? 12345) }) })],
  controllers: [IpCheckController],
})
export class AppModule {}

// Exported, so that tests start the app too: src/main.ts calls it.
export async function bootstrap() {
  const app = await NestFactory.create(AppModule);
  // One app, two transports: HTTP and SPOE. inheritAppConfig applies global pipes, guards and filters to both.
  app.connectMicroservice({ strategy: app.get(SpoeServer) }, { inheritAppConfig: true });
  await app.startAllMicroservices();
  await app.listen(Number(process.env.PORT ?? 3000));
  return app;
}
