import { INestMicroservice, ModuleMetadata, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Module } from '@nestjs/common';
import { SpoeModule, SpoeServer, SpoeServerOptions } from 'nestjs-spoe';
import { AddressInfo } from 'node:net';

/** A Nest microservice running the SPOE transport on a free loopback port. */
export interface TestAgent {
  readonly app: INestMicroservice;
  readonly server: SpoeServer;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Which pipeline runs the handlers: nestjs-spoe's own (the app imports SpoeModule, as users are told to) or Nest's
 * generic RPC pipeline (no SpoeModule). Specs about the Nest pipeline run under both and expect the same.
 */
export type HandlerPipeline = 'nestjs-spoe' | 'nest';
export const PIPELINES: readonly HandlerPipeline[] = ['nestjs-spoe', 'nest'];

/** Starts a microservice with the given controllers/providers (or module) and transport options. */
export async function startAgent(
  metadata: ModuleMetadata | Type<unknown>,
  options: SpoeServerOptions = {},
  configure?: (app: INestMicroservice) => void,
  pipeline: HandlerPipeline = 'nestjs-spoe',
): Promise<TestAgent> {
  const module = typeof metadata === 'function' ? metadata : moduleOf(pipeline === 'nestjs-spoe' ? { ...metadata, imports: [...(metadata.imports ?? []), SpoeModule] } : metadata);
  const server = new SpoeServer({ host: '127.0.0.1', port: 0, ...options });
  const app = await NestFactory.createMicroservice(module, { strategy: server, logger: false });
  configure?.(app);
  await app.listen();
  const address = server.address;
  return { app, server, port: typeof address === 'object' && address ? (address as AddressInfo).port : 0, close: () => app.close() };
}

function moduleOf(metadata: ModuleMetadata): Type<unknown> {
  @Module(metadata)
  class TestModule {}
  return TestModule;
}
