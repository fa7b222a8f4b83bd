import { Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { SpoeOptionsError, SpoeServer } from 'nestjs-spoe';
import type { AgentSettings } from '../config/agent.config';
import { readTlsFiles, TlsFiles, TlsFilesError, tlsFilesMismatch } from './tls-files';

/**
 * Certificates renewed without a restart: on SIGHUP (src/main.ts; under SPOE_WORKERS, the supervisor passes it on to
 * every worker) the agent reads SPOE_TLS_CERT, SPOE_TLS_KEY and SPOE_TLS_CA again and hands them to the transport
 * (`SpoeServer.reloadTls`): connections accepted from then on use them, live ones keep theirs. Files that cannot work
 * change nothing: the previous certificates stay in use, and an error line says why.
 */
@Injectable()
export class TlsReloader {
  private readonly log = new Logger(TlsReloader.name);
  private readonly files: TlsFiles | undefined;

  constructor(
    private readonly server: SpoeServer,
    config: ConfigService<AgentSettings, true>,
  ) {
    this.files = config.get('agent', { infer: true }).tlsFiles;
  }

  /** Reloads the certificates because of `signal`; whether the transport now uses the files as they are. */
  reload(signal: string): boolean {
    if (!this.files) {
      this.log.log(`${signal}: no TLS certificates to reload (SPOE_TLS_CERT is not set: SPOE is plain TCP)`);
      return false;
    }
    let problem: string;
    try {
      // On success the transport logs "TLS certificates reloaded: new connections use them".
      this.server.reloadTls(readTlsFiles(this.files));
      return true;
    } catch (error) {
      if (error instanceof TlsFilesError) problem = error.message;
      else if (error instanceof SpoeOptionsError) problem = tlsFilesMismatch(this.files, error.message);
      else throw error;
    }
    this.log.error(`${signal}: TLS certificates not reloaded, the previous ones stay in use: ${problem}`);
    return false;
  }
}
