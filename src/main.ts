import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { startAgent } from './agent';
import { superviseWorkers } from './cluster/supervisor';
import { AgentConfig, AgentConfigError, loadAgentConfig } from './config/agent.config';

/**
 * `npm run start:agent`: the example agent, configured from the environment (see AGENT_ENV). SIGTERM or SIGINT starts
 * the graceful shutdown; a second one ends the grace period at once. Exits 0 after a clean shutdown, 1 otherwise.
 *
 * With SPOE_WORKERS above 1 this process is the supervisor of that many agent processes sharing the ports
 * (src/cluster/supervisor.ts), and each of them runs this script again as a worker.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadAgentConfig(process.env);
  } catch (error) {
    if (!(error instanceof AgentConfigError)) throw error;
    process.stderr.write(`nestjs-spoe agent: ${error.message}\n`);
    process.exit(1);
  }
  if (config.workers === 1) return runAgent(config);
  Logger.overrideLogger(config.logLevels);
  return superviseWorkers({
    workers: config.workers,
    startWorker: (supervisor) => startAgent(config, supervisor),
    ...(config.redisUrl === undefined && { blocklist: config.defaultBlocklist }),
  });
}

async function runAgent(config: AgentConfig): Promise<void> {
  const agent = await startAgent(config);
  const log = new Logger('Agent');
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.log(`${signal} again: skipping the rest of the grace period`);
      agent.hurry();
      return;
    }
    stopping = true;
    agent.shutdown(signal).then(
      () => process.exit(0),
      (error: Error) => {
        log.error(`shutdown failed: ${error.message}`, error.stack);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((error: Error) => {
  new Logger('Agent').error(`startup failed: ${error.message}`, error.stack);
  process.exit(1);
});
