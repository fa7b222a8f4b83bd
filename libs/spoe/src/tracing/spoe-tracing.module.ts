import { DynamicModule, Module } from '@nestjs/common';
import { attachedToEveryServer } from '../module/spoe-servers';
import { SpoeTracing, SpoeTracingOptions } from './spoe.tracing';

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
      providers: attachedToEveryServer(SpoeTracing, () => new SpoeTracing(options)),
      exports: [SpoeTracing],
    };
  }
}
