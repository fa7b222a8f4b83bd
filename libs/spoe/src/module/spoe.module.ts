import { ConfigurableModuleBuilder, Module } from '@nestjs/common';
import { SpoeServer } from '../server/spoe.server';
import { SpoeServerOptions } from '../server/spoe.options';

const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN } = new ConfigurableModuleBuilder<SpoeServerOptions>()
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();

/** Injection token of the options given to `SpoeModule.forRoot` / `forRootAsync`. */
export const SPOE_MODULE_OPTIONS = MODULE_OPTIONS_TOKEN;

/**
 * Makes the {@link SpoeServer} a DI singleton (global by default), so health indicators, metrics and admin code can
 * inject it. Connect it as the app's microservice transport:
 *
 * ```ts
 * const app = await NestFactory.create(AppModule);               // AppModule imports SpoeModule.forRoot({ port: 12345 })
 * app.connectMicroservice({ strategy: app.get(SpoeServer) }, { inheritAppConfig: true });
 * await app.startAllMicroservices();
 * await app.listen(3000);
 * ```
 */
@Module({
  providers: [{ provide: SpoeServer, useFactory: (options: SpoeServerOptions) => new SpoeServer(options), inject: [MODULE_OPTIONS_TOKEN] }],
  exports: [SpoeServer],
})
export class SpoeModule extends ConfigurableModuleClass {}
