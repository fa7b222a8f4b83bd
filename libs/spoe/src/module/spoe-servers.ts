import { OnModuleDestroy, Provider, Type } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { Subscription } from 'rxjs';
import { SpoeServer } from '../server/spoe.server';

/** What attaches itself to servers: SpoeMetrics, SpoeTracing. */
export interface SpoeServerAttachable {
  attach(server: SpoeServer): void;
  release(server: SpoeServer): void;
}

/**
 * Attaches `attachable` to every SpoeServer of an app — provided by SpoeModule or built with `new SpoeServer()` — as
 * Nest announces it on `ModulesContainer.getRpcTargetRegistry()`, and releases them when the app closes.
 */
class SpoeServerObservation implements OnModuleDestroy {
  private readonly subscription: Subscription;
  private readonly servers = new Set<SpoeServer>();

  constructor(
    modules: ModulesContainer,
    private readonly attachable: SpoeServerAttachable,
  ) {
    this.subscription = modules.getRpcTargetRegistry<unknown>().subscribe((target) => {
      if (!(target instanceof SpoeServer) || this.servers.has(target)) return;
      this.servers.add(target);
      attachable.attach(target);
    });
  }

  onModuleDestroy(): void {
    this.subscription.unsubscribe();
    for (const server of this.servers) this.attachable.release(server);
    this.servers.clear();
  }
}

/**
 * The providers of SpoeMetricsModule and SpoeTracingModule: `type`, made by `create`, and what attaches it to every
 * SpoeServer of the app.
 */
export function attachedToEveryServer<T extends SpoeServerAttachable>(type: Type<T>, create: () => T): Provider[] {
  return [
    { provide: type, useFactory: create },
    {
      provide: SpoeServerObservation,
      inject: [ModulesContainer, type],
      useFactory: (modules: ModulesContainer, attachable: T) => new SpoeServerObservation(modules, attachable),
    },
  ];
}
