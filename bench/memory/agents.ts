/**
 * The agents of `npm run bench:memory`, started with the memory probe preloaded (bench/memory/probe.js, answering
 * over an IPC channel) and global.gc() exposed: the example agent as shipped and the ceiling agent for reference.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { AgentOptions, RunningAgent, startCeiling, startExample } from '../support/agents';
import { CPU } from '../support/cpus';
import { ProbeClient } from './probe-client';

const PROBE = join(__dirname, 'probe.js');
/** BENCH_NODE_FLAGS: extra Node/V8 flags for the agents, to try GC settings (e.g. --max-semi-space-size=32). */
export const AGENT_NODE_FLAGS: readonly string[] = (process.env.BENCH_NODE_FLAGS ?? '')
  .split(/\s+/)
  .filter((flag) => flag !== '');

/** An agent started with the probe preloaded, and how to reach both. */
export interface ProbedAgent extends RunningAgent {
  readonly probe: ProbeClient;
}

export interface StartOptions {
  /** Start the agent with --trace-gc and append its stdout (where V8 prints the trace) to this file. */
  readonly traceGcFile?: string;
}

/** Node with the probe preloaded and global.gc() exposed, an IPC channel for the probe, stdout kept for --trace-gc. */
async function startProbed(
  start: (options: AgentOptions) => Promise<RunningAgent>,
  options: StartOptions,
): Promise<ProbedAgent> {
  const trace = options.traceGcFile ? createWriteStream(options.traceGcFile, { flags: 'a' }) : undefined;
  const nodeArgs = ['--expose-gc', ...(trace ? ['--trace-gc'] : []), ...AGENT_NODE_FLAGS, '--require', PROBE];
  try {
    // Pinned as in bench:frames (see support/cpus.ts): the soak runs the generator at full load beside it.
    const agent = await start({
      nodeArgs,
      ipc: true,
      cpu: CPU.agent,
      ...(trace && { onStdout: (chunk: Buffer) => trace.write(chunk) }),
    });
    agent.child.once('exit', () => trace?.end());
    return { ...agent, probe: new ProbeClient(agent.child) };
  } catch (error) {
    trace?.end();
    throw error;
  }
}

/** The example agent as shipped (node dist/main.js), on free ports, quiet and with no grace period on SIGTERM. */
export function startProbedExample(options: StartOptions = {}): Promise<ProbedAgent> {
  return startProbed((agentOptions) => startExample(agentOptions), options);
}

/** bench/agents/ceiling.js (plain Node, no framework): the reference. */
export function startProbedCeiling(options: StartOptions = {}): Promise<ProbedAgent> {
  return startProbed((agentOptions) => startCeiling(agentOptions), options);
}
