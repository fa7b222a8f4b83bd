import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { ApplicationConfig, HttpAdapterHost, ModulesContainer } from '@nestjs/core';
import { Subscription } from 'rxjs';
import { SpoeServer } from '../server/spoe.server';

/**
 * Hands every SpoeServer of the app — provided by SpoeModule or built with `new SpoeServer()` and given to
 * `createMicroservice`/`connectMicroservice` — what it needs to run its handlers through nestjs-spoe's own pipeline:
 * the app's modules and config. Nest announces each microservice transport on `ModulesContainer.getRpcTargetRegistry()`.
 */
@Injectable()
export class SpoePipelinesProvider implements OnModuleDestroy {
  private readonly subscription: Subscription;

  constructor(modules: ModulesContainer, config: ApplicationConfig, adapterHost: HttpAdapterHost) {
    this.subscription = modules.getRpcTargetRegistry<unknown>().subscribe((target) => {
      if (target instanceof SpoeServer)
        target.useNestPipelines({ modules, config, hybrid: Boolean(adapterHost.httpAdapter) });
    });
  }

  onModuleDestroy(): void {
    this.subscription.unsubscribe();
  }
}
