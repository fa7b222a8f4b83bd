import { Controller, Get, Header } from '@nestjs/common';
import { SpoeMetrics } from 'nestjs-spoe/metrics';
import { Registry } from 'prom-client';

/** `GET /metrics`: the SPOE transport's series and Node's process metrics, in Prometheus' text format. */
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: SpoeMetrics) {}

  @Get()
  @Header('Content-Type', Registry.PROMETHEUS_CONTENT_TYPE)
  scrape(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
