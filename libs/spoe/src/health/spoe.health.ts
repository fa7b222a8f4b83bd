import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { SpoeServer } from '../server/spoe.server';
import { loopbackTarget } from '../address';
import { SpoeClient, SpoeClientTlsOptions } from '../client/spoe-client';
import type { SpoeTlsOptions } from '../server/spoe.tls';
import { SPOE_CLIENT_DEFAULTS } from '../spoe.constants';

/** Options of {@link SpoeHealthIndicator.isHealthy}. */
export interface SpoeHealthCheckOptions {
  /** Bound on the health-check HELLO (connect + AGENT-HELLO), in ms. Default {@link SPOE_HEALTH_TIMEOUT_MS}. */
  timeoutMs?: number;
  /**
   * TLS of the probe when the server serves TLS, over these defaults: the agent's certificate is not verified (the
   * probe dials the agent itself, on loopback) and, under mutual TLS, the agent's own certificate and key are the
   * client's — give `cert` and `key` here when the server's are not signed by its `tls.ca`.
   */
  tls?: SpoeClientTlsOptions;
}

/** Default bound on the active probe. */
export const SPOE_HEALTH_TIMEOUT_MS = SPOE_CLIENT_DEFAULTS.healthTimeoutMs;

/**
 * Terminus indicator of the SPOE transport: up when the server listens and answers a health-check HELLO within the
 * timeout; the details carry `listening`, `connections`, `inFlight` and the probe's outcome. Needs the
 * {@link SpoeServer} in DI (`SpoeModule.forRoot`) and terminus' `HealthIndicatorService` (`TerminusModule`).
 *
 * ```ts
 * @Get('ready') @HealthCheck()
 * ready() { return this.health.check([() => this.spoe.isHealthy('spoe', { timeoutMs: 500 })]); }
 * ```
 */
@Injectable()
export class SpoeHealthIndicator {
  constructor(
    private readonly server: SpoeServer,
    private readonly healthIndicatorService: HealthIndicatorService,
  ) {}

  async isHealthy<const Key extends string>(
    key: Key,
    options: SpoeHealthCheckOptions = {},
  ): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.healthIndicatorService.check(key);
    const { listening, connections, inFlight } = this.server.stats;
    const stats = { listening, connections, inFlight };
    if (!listening) return indicator.down({ ...stats, message: 'the SPOE server is not listening' });
    const timeoutMs = options.timeoutMs ?? SPOE_HEALTH_TIMEOUT_MS;
    const started = performance.now();
    try {
      const serverTls = this.server.tls;
      const hello = await SpoeClient.healthCheck({
        ...loopbackTarget(this.server.address),
        timeoutMs,
        ...(serverTls && { tls: { ...selfProbeTls(serverTls), ...options.tls } }),
      });
      const probe = { version: hello.version, maxFrameSize: hello.maxFrameSize, ms: elapsed(started) };
      return indicator.up({ ...stats, probe });
    } catch (error) {
      return indicator.down({
        ...stats,
        probe: { ms: elapsed(started) },
        message: `health-check HELLO failed: ${(error as Error).message}`,
      });
    }
  }
}

/** The default TLS of the probe: see {@link SpoeHealthCheckOptions.tls}. */
function selfProbeTls(server: Readonly<SpoeTlsOptions>): SpoeClientTlsOptions {
  const identity = server.requestCert
    ? { cert: server.cert, key: server.key, pfx: server.pfx, passphrase: server.passphrase }
    : {};
  return { ...identity, rejectUnauthorized: false };
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}
