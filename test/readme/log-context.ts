import { Controller, Injectable, Logger, Module } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { currentSpoeContext, SetVar, SpoeIp, spoeLogFields, SpoeModule } from 'nestjs-spoe';
import { LoggerModule } from 'nestjs-pino';
import type { DestinationStream } from 'pino';

@Injectable()
export class ScoreService {
  private readonly logger = new Logger(ScoreService.name);

  async score(ip: SpoeIp): Promise<number> {
    await Promise.resolve(); // a cache, a database…
    // This line carries spoeMessage, streamId, frameId, peer and engineId, and so can anything else:
    this.logger.warn(`${ip} scored from engine ${currentSpoeContext()?.getEngineId()}`);
    return 50;
  }
}

@Controller()
export class ScoreController {
  constructor(private readonly scores: ScoreService) {}

  @MessagePattern('check-client-ip')
  async check(@Payload('ip') ip: SpoeIp) {
    return SetVar.txn('ip_score', await this.scores.score(ip));
  }
}

/** With nestjs-pino: pino's mixin adds the fields of the message being handled to every line. */
export function pinoLogging(destination?: DestinationStream) {
  const options = { mixin: () => spoeLogFields() ?? {} };
  return LoggerModule.forRoot({ pinoHttp: destination ? [options, destination] : options });
}

@Module({
  imports: [
    SpoeModule.forRootAsync({
      useFactory: () => ({ port: Number(process.env.SPOE_PORT ?? 12345), messageContext: true }),
    }),
    pinoLogging(),
  ],
  controllers: [ScoreController],
  providers: [ScoreService],
})
export class LogContextAppModule {}
