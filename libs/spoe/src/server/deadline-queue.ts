/** Something that can expire; `expire()` is only called when `settled` is still false at its deadline. */
export interface Expirable {
  readonly settled: boolean;
  expire(): void;
}

/**
 * Deadlines without a timer per NOTIFY. Entries with the same duration expire in the order they were added, so each
 * distinct duration keeps a FIFO and one timer armed for its head. Settled entries at the head are dropped on every
 * add, so the queue holds about what is in flight: a NOTIFY answered in microseconds must not stay reachable for the
 * whole deadline (at 100k NOTIFY/s that would be 100k jobs promoted to the old generation). Adding and settling are
 * O(1) amortized.
 */
export class DeadlineQueue {
  private readonly lanes = new Map<number, Lane>();

  add(durationMs: number, item: Expirable): void {
    let lane = this.lanes.get(durationMs);
    if (!lane) {
      lane = new Lane(durationMs);
      this.lanes.set(durationMs, lane);
    }
    lane.push(item);
  }

  /** Expires every pending entry now (shutdown) and stops all timers. */
  expireAll(): void {
    for (const lane of this.lanes.values()) lane.expireAll();
  }

  clear(): void {
    for (const lane of this.lanes.values()) lane.stop();
    this.lanes.clear();
  }
}

class Lane {
  private items: Array<Expirable | undefined> = [];
  private times: number[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly onTimer = (): void => this.sweep();

  constructor(private readonly durationMs: number) {}

  push(item: Expirable): void {
    this.dropSettledHead();
    this.items.push(item);
    this.times.push(performance.now() + this.durationMs);
    this.timer ??= setTimeout(this.onTimer, this.durationMs);
  }

  expireAll(): void {
    this.stop();
    const items = this.items.slice(this.head);
    this.reset();
    for (const item of items) if (item && !item.settled) item.expire();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private sweep(): void {
    this.timer = undefined;
    const now = performance.now();
    // Timers may fire up to a millisecond early by performance.now()'s reckoning.
    while (this.head < this.items.length && (this.items[this.head]!.settled || this.times[this.head] <= now + 1)) {
      const item = this.items[this.head];
      this.items[this.head++] = undefined;
      if (!item!.settled) item!.expire();
    }
    this.dropSettledHead();
    if (this.head === this.items.length) {
      this.reset();
      return;
    }
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(this.times[this.head] - now)));
  }

  /** Forgets settled entries at the head (they would otherwise stay reachable until the timer fires). */
  private dropSettledHead(): void {
    const items = this.items;
    let head = this.head;
    while (head < items.length && items[head]!.settled) items[head++] = undefined;
    this.head = head;
    if (head === items.length) {
      if (head > 0) this.reset();
    } else if (head > 1024 && head * 2 > items.length) {
      this.items = items.slice(head);
      this.times = this.times.slice(head);
      this.head = 0;
    }
  }

  /** Empties the lane, keeping its arrays: a drained lane is the common case, once per NOTIFY. */
  private reset(): void {
    this.items.length = 0;
    this.times.length = 0;
    this.head = 0;
  }
}
