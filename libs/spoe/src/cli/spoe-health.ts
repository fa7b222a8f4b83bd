#!/usr/bin/env node
// spoe-health: one health-check HELLO against an SPOE agent, as HAProxy's `option spop-check` does. Exit 0 healthy,
// 1 unhealthy, 2 bad usage; made for Docker HEALTHCHECK and Kubernetes exec probes. Plain Node: no Nest is loaded.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatAddress } from '../address';
import { SpoeClient, SpoeClientTlsOptions } from '../client/spoe-client';
import { MAX_TIMEOUT_MS, SPOE_CLIENT_DEFAULTS } from '../spoe.constants';

/** Exit codes. */
export enum SpoeHealthExit {
  Healthy = 0,
  Unhealthy = 1,
  Usage = 2,
}

const USAGE = () => `Usage: spoe-health [--host HOST] [--port PORT] [--socket PATH] [--timeout MS] [--quiet]
                   [--tls] [--ca FILE] [--cert FILE --key FILE] [--servername NAME]

Sends a health-check HAPROXY-HELLO to an SPOE agent and waits for its AGENT-HELLO.

  --host HOST     agent address (default ${SPOE_CLIENT_DEFAULTS.host})
  --port PORT     agent TCP port (default ${SPOE_CLIENT_DEFAULTS.port})
  --socket PATH   agent Unix socket (instead of --host/--port)
  --timeout MS    bound on connecting and the HELLO (default ${SPOE_CLIENT_DEFAULTS.cliTimeoutMs})
  --tls           speak TLS (implied by the options below), verifying the agent's certificate
  --ca FILE       PEM of the CA(s) the agent's certificate is checked against (default: Node's CAs)
  --cert FILE     PEM client certificate, for agents that require one (mutual TLS); with --key
  --key FILE      PEM private key of --cert
  --servername NAME  the name the agent's certificate must carry, sent as SNI (default: --host, unless an IP)
  --quiet         print nothing; the exit code tells
  --help          show this help

Exit status: 0 healthy, 1 unhealthy, 2 bad usage.
`;

/** Where {@link runSpoeHealth} writes. */
export interface SpoeHealthOutput {
  out(line: string): void;
  err(line: string): void;
}

const processOutput: SpoeHealthOutput = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** Runs the CLI with `argv` (without node and the script) and resolves with the exit code. */
export async function runSpoeHealth(
  argv: readonly string[],
  output: SpoeHealthOutput = processOutput,
): Promise<SpoeHealthExit> {
  let values;
  try {
    values = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        socket: { type: 'string' },
        timeout: { type: 'string' },
        tls: { type: 'boolean' },
        ca: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        servername: { type: 'string' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    return usage(output, (error as Error).message);
  }
  if (values.help) {
    output.out(USAGE().trimEnd());
    return SpoeHealthExit.Healthy;
  }
  if (values.socket !== undefined && (values.host !== undefined || values.port !== undefined)) {
    return usage(output, '--socket cannot be combined with --host or --port');
  }
  if (values.socket === '') return usage(output, '--socket needs a path');
  const port = integer(values.port ?? String(SPOE_CLIENT_DEFAULTS.port), 1, 65535);
  if (port === undefined)
    return usage(output, `--port must be an integer in [1, 65535], got ${JSON.stringify(values.port)}`);
  const timeoutMs = integer(values.timeout ?? String(SPOE_CLIENT_DEFAULTS.cliTimeoutMs), 1, MAX_TIMEOUT_MS);
  if (timeoutMs === undefined)
    return usage(output, `--timeout must be a positive integer (ms), got ${JSON.stringify(values.timeout)}`);
  const host = values.host ?? SPOE_CLIENT_DEFAULTS.host;
  if (host === '') return usage(output, '--host needs an address');

  if ((values.cert === undefined) !== (values.key === undefined)) return usage(output, '--cert and --key go together');
  if (values.servername === '') return usage(output, '--servername needs a name');
  let tls: SpoeClientTlsOptions | undefined;
  if (values.tls || values.ca !== undefined || values.cert !== undefined || values.servername !== undefined) {
    tls = { ...(values.servername !== undefined && { servername: values.servername }) };
    for (const option of ['ca', 'cert', 'key'] as const) {
      const file = values[option];
      if (file === undefined) continue;
      try {
        tls[option] = readFileSync(file);
      } catch (error) {
        return usage(output, `cannot read --${option} ${file}: ${(error as Error).message}`);
      }
    }
  }

  const target = formatAddress(values.socket ?? { address: host, port, family: '' });
  const started = performance.now();
  try {
    const hello = await SpoeClient.healthCheck({
      ...(values.socket !== undefined ? { path: values.socket } : { host, port }),
      timeoutMs,
      ...(tls && { tls }),
    });
    const ms = Math.round(performance.now() - started);
    if (!values.quiet)
      output.out(
        `healthy: ${target} answered AGENT-HELLO${tls ? ' over TLS' : ''} in ${ms} ms (SPOP ${hello.version}, max-frame-size ${hello.maxFrameSize})`,
      );
    return SpoeHealthExit.Healthy;
  } catch (error) {
    if (!values.quiet) output.err(`unhealthy: ${target}: ${(error as Error).message}`);
    return SpoeHealthExit.Unhealthy;
  }
}

function usage(output: SpoeHealthOutput, problem: string): SpoeHealthExit {
  output.err(`spoe-health: ${problem}\n\n${USAGE().trimEnd()}`);
  return SpoeHealthExit.Usage;
}

function integer(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return value >= min && value <= max ? value : undefined;
}

if (require.main === module) {
  runSpoeHealth(process.argv.slice(2)).then((code) => (process.exitCode = code));
}
