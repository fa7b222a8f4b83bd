import { Controller, Get, Module } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { SpoeModule } from 'nestjs-spoe';
import { SpoeHealthIndicator } from 'nestjs-spoe/health';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly spoe: SpoeHealthIndicator,
  ) {}

  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }

  @Get('ready')
  @HealthCheck()
  ready() {
    // up: listening and a real health-check HELLO answered within 500 ms; details: listening, connections, inFlight
    return this.health.check([() => this.spoe.isHealthy('spoe', { timeoutMs: 500 })]);
  }
}

@Module({
  imports: [
    SpoeModule.forRootAsync({ useFactory: () => ({ port: Number(process.env.SPOE_PORT ?? 12345) }) }),
    TerminusModule,
  ],
  controllers: [HealthController],
  providers: [SpoeHealthIndicator],
})
export class HealthAppModule {}
