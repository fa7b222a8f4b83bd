import 'reflect-metadata';
import { Controller, Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeIp, SpoeModule, SpoeServer } from 'nestjs-spoe';
import cluster from 'node:cluster';
import { superviseWorkers } from '../../src/cluster/supervisor';
import { SupervisedApp, SupervisorLink } from '../../src/cluster/worker';

/**
 * The agent of `npm run bench:workers`: a handler that costs ≈50 µs of CPU per message, run by N worker processes
 * under the example agent's supervisor (src/cluster/supervisor.ts), as SPOE_WORKERS=N runs the example agent. With
 * a handler that heavy, the transport is a small share of each frame and the question is only whether N processes
 * get N times the work done.
 *
 *   PORT=12345 HEAVY_WORKERS=2 HEAVY_TARGET_US=50 [HEAVY_ITERATIONS=n] node -r @swc-node/register bench/agents/heavy-agent.ts
 *
 * The supervisor (primary) calibrates the work once, before forking, unless HEAVY_ITERATIONS gives it: a number of
 * iterations of a cheap integer hash that take HEAVY_TARGET_US on this machine. Every worker then does exactly that
 * many (the bench passes the first calibration to every later run, so that 1 and 2 workers do the same work). It
 * prints `CALIBRATED <iterations> iterations <µs> us` (the median time of that many iterations, measured now), then
 * `READY <port>` once the supervisor reports every worker ready (each worker prints it; the bench reads the first).
 */

const WORKERS = positiveInt('HEAVY_WORKERS', 1);
const TARGET_US = positiveInt('HEAVY_TARGET_US', 50);
/** Timed runs of the calibration; their median is the cost taken (the fastest would flatter a shared machine). */
const CALIBRATION_RUNS = 31;
const CALIBRATION_PROBE_ITERATIONS = 100_000;
/** How often a worker asks the supervisor whether every worker is ready, while starting. */
const READY_POLL_MS = 50;
const READY_TIMEOUT_MS = 30_000;

function positiveInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`${name} must be an integer ≥ 1, got ${JSON.stringify(text)}`);
  return value;
}

// ------------------------------------------------------------------------------------------------------- the work

/**
 * `iterations` rounds of murmur3's 32-bit finalizer over a running value: integer multiplies and shifts, no
 * allocation, nothing the JIT can fold away (each round depends on the last, and the result is the handler's answer).
 */
function work(seed: number, iterations: number): number {
  let h = seed | 0;
  for (let i = 0; i < iterations; i++) {
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    // | 0 keeps h an int32: an overflow to a double would send the optimised loop down a slower path after a while.
    h = ((h ^ (h >>> 16)) + i) | 0;
  }
  return h >>> 0;
}

/** Nanoseconds each of `runs` calls of `work(…, iterations)` took, sorted. */
function timings(iterations: number, runs: number): number[] {
  const ns: number[] = [];
  for (let run = 0; run < runs; run++) {
    const start = process.hrtime.bigint();
    work(run, iterations);
    ns.push(Number(process.hrtime.bigint() - start));
  }
  return ns.sort((a, b) => a - b);
}

/** The iterations that take `targetUs` here and now (the median of several timed runs, after JIT warm-up). */
function calibrate(targetUs: number): number {
  timings(CALIBRATION_PROBE_ITERATIONS, 20); // optimised before it counts
  const nsPerIteration =
    timings(CALIBRATION_PROBE_ITERATIONS, CALIBRATION_RUNS)[CALIBRATION_RUNS >> 1] / CALIBRATION_PROBE_ITERATIONS;
  return Math.max(1, Math.round((targetUs * 1000) / nsPerIteration));
}

/**
 * The median µs of `iterations`, measured now (after JIT warm-up): what one message costs the handler at this moment.
 */
function medianUs(iterations: number): number {
  timings(iterations, CALIBRATION_RUNS);
  return timings(iterations, CALIBRATION_RUNS)[CALIBRATION_RUNS >> 1] / 1000;
}

// ------------------------------------------------------------------------------------------------------- the app

@Controller()
class HeavyController {
  private readonly iterations = positiveInt('HEAVY_ITERATIONS', 1);

  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp): SetVar {
    const seed = ip.bytes.reduce((h, byte) => Math.imul(h ^ byte, 16777619), 2166136261);
    // A score below 100 (never "blocked"), derived from the work so that it cannot be skipped.
    return SetVar.sess('ip_score', work(seed, this.iterations) % 50);
  }
}

// SpoeModule, as users are told: handlers then run through nestjs-spoe's pipeline.
@Module({ imports: [SpoeModule], controllers: [HeavyController] })
class HeavyModule {}

/** A worker: the app on the shared port (node:cluster hands connections out round-robin). */
async function startWorker(supervisor: SupervisorLink): Promise<SupervisedApp> {
  const port = positiveInt('PORT', 12345);
  const server = new SpoeServer({ host: '127.0.0.1', port });
  const app = await NestFactory.createMicroservice(HeavyModule, { strategy: server, logger: ['error', 'warn'] });
  await app.listen();
  // After this returns, runWorker reports the worker ready; the supervisor then knows when all are.
  setImmediate(() => void announceWhenAllReady(supervisor, port));
  // The grace period (hurry) and TLS (reloadTls) are the example agent's; this app has neither: close drains and returns.
  return { shutdown: () => app.close(), hurry: () => undefined, reloadTls: () => undefined };
}

/** Prints READY once the supervisor reports every worker ready: the bench must not measure 1 of 2 workers. */
async function announceWhenAllReady(supervisor: SupervisorLink, port: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const status = await supervisor.request({ kind: 'workers' }, READY_TIMEOUT_MS);
    if (status.stopping) return;
    if (status.ready === status.expected) {
      console.log(`READY ${port}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  console.error(`heavy agent: the supervisor did not report every worker ready within ${READY_TIMEOUT_MS} ms`);
}

/**
 * In the supervisor (the primary, before it forks): the work per message, once, handed to the workers through their
 * environment.
 */
function prepareWork(): void {
  const iterations = process.env.HEAVY_ITERATIONS ? positiveInt('HEAVY_ITERATIONS', 1) : calibrate(TARGET_US);
  process.env.HEAVY_ITERATIONS = String(iterations);
  console.log(`CALIBRATED ${iterations} iterations ${medianUs(iterations).toFixed(1)} us`);
}

async function main(): Promise<void> {
  // The supervisor logs through Nest's Logger: warnings and errors only (a dead worker still shows).
  Logger.overrideLogger(['error', 'warn']);
  if (cluster.isPrimary) prepareWork();
  await superviseWorkers({ workers: WORKERS, startWorker });
}

main().catch((error: Error) => {
  console.error(`heavy agent: ${error.message}`);
  process.exit(1);
});
