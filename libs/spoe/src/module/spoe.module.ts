import { ConfigurableModuleBuilder, DynamicModule, Module, Provider, Type } from '@nestjs/common';
import { SpoeServer } from '../server/spoe.server';
import { SpoeServerOptions } from '../server/spoe.options';
import { SpoePipelinesProvider } from './spoe-pipelines.provider';

/** Injection token of the options given to `SpoeModule.forRoot` / `forRootAsync`. */
export const SPOE_MODULE_OPTIONS = Symbol('SPOE_MODULE_OPTIONS');

const serverProvider: Provider = {
  provide: SpoeServer,
  useFactory: (options: SpoeServerOptions) => new SpoeServer(options),
  inject: [SPOE_MODULE_OPTIONS],
};

/** Options of `forRoot`/`forRootAsync` beside the server's own. */
export interface SpoeModuleExtras {
  /** Make SpoeServer (and SpoeHealthIndicator) injectable everywhere. Default true. */
  isGlobal?: boolean;
  /** Provide SpoeHealthIndicator (nestjs-spoe/health). Default: when @nestjs/terminus is installed. */
  health?: boolean;
}

const { ConfigurableModuleClass } = new ConfigurableModuleBuilder<SpoeServerOptions>({
  optionsInjectionToken: SPOE_MODULE_OPTIONS,
})
  .setClassMethodName('forRoot')
  .setExtras<SpoeModuleExtras>({ isGlobal: true, health: undefined }, (definition, extras) => {
    const health = (extras.health ?? terminusInstalled()) ? [healthModule()] : [];
    return {
      ...definition,
      global: extras.isGlobal,
      // Only forRoot/forRootAsync have options to build a server with; a bare import brings the pipelines alone.
      imports: [...(definition.imports ?? []), ...health],
      providers: [...(definition.providers ?? []), serverProvider],
      exports: [...(definition.exports ?? []), SpoeServer, ...health],
    };
  })
  .build();

/**
 * nestjs-spoe in a Nest app. Imported, it lets every SpoeServer of the app run its `@MessagePattern` handlers through
 * nestjs-spoe's own pipeline: the same guards, interceptors, pipes and filters as Nest's, without its per-call promises
 * (about three times faster per message). `forRoot`/`forRootAsync` also make the {@link SpoeServer} a DI singleton
 * (global by default), so health indicators, metrics and admin code can inject it — and, when @nestjs/terminus is
 * installed, provide the `SpoeHealthIndicator` of 'nestjs-spoe/health':
 *
 * ```ts
 * // AppModule imports SpoeModule.forRoot({ port: 12345 })
 * const app = await NestFactory.create(AppModule);
 * app.connectMicroservice({ strategy: app.get(SpoeServer) }, { inheritAppConfig: true });
 * await app.startAllMicroservices();
 * await app.listen(3000);
 * ```
 */
@Module({ providers: [SpoePipelinesProvider] })
export class SpoeModule extends ConfigurableModuleClass {}

function terminusInstalled(): boolean {
  try {
    require.resolve('@nestjs/terminus');
    return true;
  } catch {
    return false;
  }
}

/**
 * SpoeHealthModule, loaded only when asked for: @nestjs/terminus is an optional peer, and the root entry point must
 * load without it.
 */
function healthModule(): Type<unknown> | DynamicModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- an optional peer, loaded on demand
  const { SpoeHealthModule } = require('../health/spoe-health.module') as typeof import('../health/spoe-health.module');
  return SpoeHealthModule;
}
