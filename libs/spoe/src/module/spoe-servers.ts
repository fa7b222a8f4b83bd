import { ModulesContainer } from '@nestjs/core';
import { Subscription } from 'rxjs';
import { SpoeServer } from '../server/spoe.server';

/**
 * Calls `attach` for every SpoeServer of an app — provided by SpoeModule or built with `new SpoeServer()` — as Nest
 * announces it on `ModulesContainer.getRpcTargetRegistry()`, and what it returned on `close()`: how SpoeMetricsModule
 * and SpoeTracingModule reach the transport.
 */
export class SpoeServerObservation {
  private readonly subscription: Subscription;
  private readonly removers = new Map<SpoeServer, () => void>();

  constructor(modules: ModulesContainer, attach: (server: SpoeServer) => () => void) {
    this.subscription = modules.getRpcTargetRegistry<unknown>().subscribe((target) => {
      if (!(target instanceof SpoeServer) || this.removers.has(target)) return;
      this.removers.set(target, attach(target));
    });
  }

  close(): void {
    this.subscription.unsubscribe();
    for (const remove of this.removers.values()) remove();
    this.removers.clear();
  }
}
