/**
 * The one way tests start an SPOE agent in process: a Nest microservice with a SpoeServer as its transport, on a free
 * loopback port (or the Unix socket of `path`). The example application (src/) has its own starter, as its users run
 * it: test/example/support/example.ts.
 */
import { DynamicModule, INestMicroservice, LogLevel, Module, ModuleMetadata, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SpoeModule, SpoeServer, SpoeServerOptions } from 'nestjs-spoe';
import { AddressInfo } from 'node:net';

/** A Nest microservice running the SPOE transport. */
export interface TestAgent {
  readonly server: SpoeServer;
  /** The TCP port it listens on (0 on a Unix socket). */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Which pipeline runs the handlers: nestjs-spoe's own (the app imports SpoeModule, as users are told to) or Nest's
 * generic RPC pipeline (no SpoeModule). Specs about the Nest pipeline run under both and expect the same.
 */
export type HandlerPipeline = 'nestjs-spoe' | 'nest';
export const PIPELINES: readonly HandlerPipeline[] = ['nestjs-spoe', 'nest'];

/** How {@link startAgent} builds the app, beyond the transport's own options. */
export interface StartAgentOptions {
  /**
   * The pipeline when the app is given as metadata (default nestjs-spoe: SpoeModule is imported). A module is used as
   * it is.
   */
  readonly pipeline?: HandlerPipeline;
  /** Runs once the app is created, before it listens: global enhancers, hooks, listeners on the server… */
  readonly configure?: (app: INestMicroservice, server: SpoeServer) => unknown;
}

/**
 * Starts a microservice from controllers/providers (or a module) on a SpoeServer with `serverOptions` (default:
 * 127.0.0.1, a free port). Nest's logs are off unless SPOE_E2E_LOG=1. A start that fails closes what it opened.
 */
export async function startAgent(
  app: ModuleMetadata | Type<unknown> | DynamicModule,
  serverOptions: SpoeServerOptions = {},
  options: StartAgentOptions = {},
): Promise<TestAgent> {
  const pipeline = options.pipeline ?? 'nestjs-spoe';
  const module =
    typeof app === 'function' || 'module' in app
      ? app
      : moduleOf(pipeline === 'nestjs-spoe' ? { ...app, imports: [...(app.imports ?? []), SpoeModule] } : app);
  const server = new SpoeServer({ host: '127.0.0.1', port: 0, ...serverOptions });
  const logger: LogLevel[] | false = process.env.SPOE_E2E_LOG === '1' ? ['error', 'warn', 'log'] : false;
  const microservice = await NestFactory.createMicroservice(module, { strategy: server, logger });
  try {
    await options.configure?.(microservice, server);
    await microservice.listen();
  } catch (error) {
    await microservice.close().catch(() => undefined);
    throw error;
  }
  const address = server.address;
  return {
    server,
    port: typeof address === 'object' && address ? (address as AddressInfo).port : 0,
    close: () => microservice.close(),
  };
}

function moduleOf(metadata: ModuleMetadata): Type<unknown> {
  @Module(metadata)
  class TestModule {}
  return TestModule;
}
