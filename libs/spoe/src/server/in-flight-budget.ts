/** A reader of the budget: a connection, told when it may read again. */
export interface InFlightBudgetWaiter {
  /** The budget has room again: read what can be read (and wait again if the budget runs out). */
  resume(): void;
}

/**
 * The bytes of NOTIFY whose handlers run, across the connections of one server, against `maxInFlightBytes`. A
 * connection checks {@link exhausted} before each frame; when it holds, it stops reading and waits. When ACKs bring the
 * count below the limit, waiting connections resume in the order they began waiting, each until the budget runs out
 * again, when it waits behind the others: none starves, and one connection holding everything still frees it as its
 * handlers answer (their deadlines bound that). Counting is two additions per NOTIFY; nothing else runs while the
 * budget has room.
 */
export class InFlightBudget {
  /** Bytes taken and not yet released. */
  held = 0;
  private readonly waiting = new Set<InFlightBudgetWaiter>();
  private waking = false;

  constructor(readonly limit: number) {}

  /** Whether a connection must not read another frame now. */
  get exhausted(): boolean {
    return this.held >= this.limit;
  }

  /** Connections waiting for room. */
  get waiters(): number {
    return this.waiting.size;
  }

  take(bytes: number): void {
    this.held += bytes;
  }

  /** Gives back what a NOTIFY took, once it is acknowledged; resumes waiting connections when there is room again. */
  release(bytes: number): void {
    this.held -= bytes;
    if (this.waiting.size !== 0 && this.held < this.limit) this.wake();
  }

  /** `waiter` found the budget exhausted: it is resumed once there is room, after those that waited before it. */
  wait(waiter: InFlightBudgetWaiter): void {
    this.waiting.add(waiter);
  }

  /** `waiter` no longer reads (it closed). */
  cancel(waiter: InFlightBudgetWaiter): void {
    this.waiting.delete(waiter);
  }

  /**
   * Resumes waiters, first come first, while there is room. A waiter that runs out of it waits again, at the end of
   * the line. Handlers that answer at once release bytes from within resume(): the loop already running goes on, no
   * second one starts.
   */
  private wake(): void {
    if (this.waking) return;
    this.waking = true;
    try {
      for (const waiter of this.waiting) {
        if (this.held >= this.limit) break;
        this.waiting.delete(waiter);
        waiter.resume();
      }
    } finally {
      this.waking = false;
    }
  }
}
