/** Something that can expire; `expire()` is only called when `settled` is still false at its deadline. */
export interface Expirable {
  readonly settled: boolean;
  expire(): void;
}

/**
 * Deadlines without a timer per NOTIFY. Entries with the same duration expire in the order they were added, so each
 * distinct duration keeps a FIFO and one timer armed for its head; settled entries are dropped lazily. Adding and
 * settling are O(1) and allocate one small record.
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
  private items: Expirable[] = [];
  private times: number[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly onTimer = (): void => this.sweep();

  constructor(private readonly durationMs: number) {}

  push(item: Expirable): void {
    this.items.push(item);
    this.times.push(performance.now() + this.durationMs);
    this.timer ??= setTimeout(this.onTimer, this.durationMs);
  }

  expireAll(): void {
    this.stop();
    const items = this.items.slice(this.head);
    this.reset();
    for (const item of items) if (!item.settled) item.expire();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private sweep(): void {
    this.timer = undefined;
    const now = performance.now();
    // Timers may fire up to a millisecond early by performance.now()'s reckoning.
    while (this.head < this.items.length && (this.items[this.head].settled || this.times[this.head] <= now + 1)) {
      const item = this.items[this.head++];
      if (!item.settled) item.expire();
    }
    if (this.head === this.items.length) {
      this.reset();
      return;
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(this.times[this.head] - now)));
  }

  private reset(): void {
    this.items = [];
    this.times = [];
    this.head = 0;
  }
}
