// 'nestjs-spoe/health': the terminus integration, a subpath so that @nestjs/terminus stays an optional peer.
export { SpoeHealthIndicator, SPOE_HEALTH_TIMEOUT_MS } from './spoe.health';
export { SpoeHealthModule } from './spoe-health.module';
export type { SpoeHealthCheckOptions } from './spoe.health';
