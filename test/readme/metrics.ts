import { Controller, Get, Header, Module } from '@nestjs/common';
import { SpoeModule } from 'nestjs-spoe';
import { SpoeMetrics, SpoeMetricsModule } from 'nestjs-spoe/metrics';
import { Registry } from 'prom-client';

@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: SpoeMetrics) {}

  @Get()
  @Header('Content-Type', Registry.PROMETHEUS_CONTENT_TYPE)
  scrape() {
    return this.metrics.registry.metrics(); // prom-client's global registry unless forRoot was given one
  }
}

@Module({
  imports: [
    SpoeModule.forRootAsync({ useFactory: () => ({ port: Number(process.env.SPOE_PORT ?? 12345) }) }),
    SpoeMetricsModule.forRoot(), // counts every SpoeServer of the app
  ],
  controllers: [MetricsController],
})
export class MetricsAppModule {}
