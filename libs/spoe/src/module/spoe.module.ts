import { ConfigurableModuleBuilder, Module, Provider } from '@nestjs/common';
import { SpoeServer } from '../server/spoe.server';
import { SpoeServerOptions } from '../server/spoe.options';
import { SpoePipelinesProvider } from './spoe-pipelines.provider';

/** Injection token of the options given to `SpoeModule.forRoot` / `forRootAsync`. */
export const SPOE_MODULE_OPTIONS = Symbol('SPOE_MODULE_OPTIONS');

const serverProvider: Provider = { provide: SpoeServer, useFactory: (options: SpoeServerOptions) => new SpoeServer(options), inject: [SPOE_MODULE_OPTIONS] };

const { ConfigurableModuleClass } = new ConfigurableModuleBuilder<SpoeServerOptions>({ optionsInjectionToken: SPOE_MODULE_OPTIONS })
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
    // Only forRoot/forRootAsync have options to build a server with; a bare import brings the pipelines alone.
    providers: [...(definition.providers ?? []), serverProvider],
    exports: [...(definition.exports ?? []), SpoeServer],
  }))
  .build();

/**
 * nestjs-spoe in a Nest app. Imported, it lets every SpoeServer of the app run its `@MessagePattern` handlers through
 * nestjs-spoe's own pipeline: the same guards, interceptors, pipes and filters as Nest's, without its per-call promises
 * (about three times faster per message). `forRoot`/`forRootAsync` also make the {@link SpoeServer} a DI singleton
 * (global by default), so health indicators, metrics and admin code can inject it:
 *
 * ```ts
 * const app = await NestFactory.create(AppModule);               // AppModule imports SpoeModule.forRoot({ port: 12345 })
 * app.connectMicroservice({ strategy: app.get(SpoeServer) }, { inheritAppConfig: true });
 * await app.startAllMicroservices();
 * await app.listen(3000);
 * ```
 */
@Module({ providers: [SpoePipelinesProvider] })
export class SpoeModule extends ConfigurableModuleClass {}
