import { Controller, Get, Module } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
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

// SpoeModule.forRoot / forRootAsync provides SpoeHealthIndicator (app-wide) when @nestjs/terminus is installed: import
// HealthModule next to it.
@Module({ imports: [TerminusModule], controllers: [HealthController] })
export class HealthModule {}
