import 'reflect-metadata';
import { Logger, ShutdownSignal } from '@nestjs/common';
import cluster from 'node:cluster';
import { warnOfOpenAdminApi } from './admin/admin-access.guard';
import { startAgent } from './agent';
import { superviseWorkers } from './cluster/supervisor';
import { AgentConfig, AgentConfigError, loadAgentConfig } from './config/agent.config';
import { supervisorLogger } from './logging/agent-logging';

/**
 * `npm run start:agent`: the example agent, configured from the environment (see AGENT_ENV). SIGTERM or SIGINT starts
 * the graceful shutdown; a second one ends the grace period at once. Exits 0 after a clean shutdown, 1 otherwise.
 * SIGHUP reads the TLS files (SPOE_TLS_*) again for new connections.
 *
 * With SPOE_WORKERS above 1 this process is the supervisor of that many agent processes sharing the ports
 * (src/cluster/supervisor.ts), and each of them runs this script again as a worker.
 */
async function main(): Promise<void> {
  // Validated before any Nest app exists, with the function AppModule's ConfigModule uses: the supervisor is not a
  // Nest app, and a bad environment is reported once, as a list, not as a Nest startup error.
  let config: AgentConfig;
  try {
    config = loadAgentConfig(process.env);
  } catch (error) {
    if (!(error instanceof AgentConfigError)) throw error;
    process.stderr.write(`nestjs-spoe agent: ${error.message}\n`);
    process.exit(1);
  }
  if (config.workers === 1) return runAgent();
  Logger.overrideLogger(supervisorLogger(config));
  // Once, by the supervisor: each worker runs this script too, then startAgent, which leaves it to the supervisor.
  if (cluster.isPrimary) warnOfOpenAdminApi(config, new Logger('Supervisor'));
  return superviseWorkers({
    workers: config.workers,
    startWorker: (supervisor) => startAgent({ supervisor }),
    ...(config.redis === undefined && { blocklist: config.defaultBlocklist }),
  });
}

async function runAgent(): Promise<void> {
  // SIGHUP reloads the TLS certificates (TlsReloader), and must never end the process as Node's default does. One that
  // comes during startup is applied once the agent serves: the files may have been read before they were replaced.
  let hangUp: NodeJS.Signals | undefined;
  let onHangUp = (signal: NodeJS.Signals): void => void (hangUp = signal);
  process.on('SIGHUP', (signal) => onHangUp(signal));
  const agent = await startAgent();
  onHangUp = (signal) => void agent.reloadTls(signal);
  if (hangUp) onHangUp(hangUp);
  // Nest runs the shutdown on the first SIGTERM or SIGINT, grace period included (Lifecycle), and exits 0 once it is
  // done; a second signal ends the grace period.
  agent.app.enableShutdownHooks([ShutdownSignal.SIGTERM, ShutdownSignal.SIGINT], { useProcessExit: true });
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (++signals < 2) return;
    new Logger('Agent').log(`${signal} again: skipping the rest of the grace period`);
    agent.hurry();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((error: Error) => {
  new Logger('Agent').error(`startup failed: ${error.message}`, error.stack);
  process.exit(1);
});
