import { DynamicModule, Injectable, Module, OnModuleDestroy } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { SpoeServerObservation } from '../module/spoe-servers';
import { SpoeTracing, SpoeTracingOptions } from './spoe.tracing';

const SPOE_TRACING_OPTIONS = Symbol('SPOE_TRACING_OPTIONS');

/** Attaches the app's SpoeTracing to every SpoeServer of the app. */
@Injectable()
class SpoeTracingAttacher implements OnModuleDestroy {
  private readonly observation: SpoeServerObservation;

  constructor(modules: ModulesContainer, tracing: SpoeTracing) {
    this.observation = new SpoeServerObservation(modules, (server) => {
      tracing.attach(server);
      return () => tracing.release(server);
    });
  }

  onModuleDestroy(): void {
    this.observation.close();
  }
}

/**
 * The transport's OpenTelemetry spans in a Nest app, in one line: `SpoeTracingModule.forRoot()` traces every message
 * of every SpoeServer of the app with the global tracer provider (or the `tracerProvider` given), and makes
 * {@link SpoeTracing} injectable. Start the OpenTelemetry SDK before the app, as its documentation says.
 */
@Module({})
export class SpoeTracingModule {
  static forRoot(options: SpoeTracingOptions = {}): DynamicModule {
    return {
      module: SpoeTracingModule,
      global: true,
      providers: [
        { provide: SPOE_TRACING_OPTIONS, useValue: options },
        {
          provide: SpoeTracing,
          useFactory: (o: SpoeTracingOptions) => new SpoeTracing(o),
          inject: [SPOE_TRACING_OPTIONS],
        },
        SpoeTracingAttacher,
      ],
      exports: [SpoeTracing],
    };
  }
}
