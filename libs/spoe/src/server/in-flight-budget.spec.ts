import { InFlightBudget, InFlightBudgetWaiter } from './in-flight-budget';

/**
 * A connection as the budget sees it: on resume() it reads its queued NOTIFY (their sizes) while the budget has room,
 * and waits again when it runs out; what it reads is held until the test acknowledges it.
 */
class Reader implements InFlightBudgetWaiter {
  readonly held: number[] = [];
  resumed = 0;

  constructor(
    readonly name: string,
    private readonly budget: InFlightBudget,
    readonly queue: number[],
    private readonly log: string[],
  ) {}

  resume(): void {
    this.resumed++;
    this.read();
  }

  read(): void {
    while (this.queue.length > 0) {
      if (this.budget.exhausted) return this.budget.wait(this);
      const size = this.queue.shift()!;
      this.budget.take(size);
      this.held.push(size);
      this.log.push(`${this.name}:${size}`);
    }
  }

  /** Acknowledges its oldest NOTIFY. */
  ack(): void {
    this.budget.release(this.held.shift()!);
  }
}

describe('InFlightBudget', () => {
  let log: string[];
  beforeEach(() => (log = []));

  it('is exhausted once the bytes held reach the limit, and not below it', () => {
    const budget = new InFlightBudget(100);
    budget.take(99);
    expect(budget.exhausted).toBe(false);
    budget.take(1);
    expect(budget.exhausted).toBe(true);
    budget.release(1);
    expect(budget.exhausted).toBe(false);
    expect(budget.held).toBe(99);
  });

  it('lets one NOTIFY larger than the whole limit through when nothing is held: no deadlock on a big frame', () => {
    const budget = new InFlightBudget(100);
    const a = new Reader('a', budget, [500, 10], log);
    a.read();
    expect(log).toEqual(['a:500']);
    expect(budget.waiters).toBe(1);
    a.ack();
    expect(log).toEqual(['a:500', 'a:10']);
    expect(budget.waiters).toBe(0);
  });

  it('resumes nobody when a release leaves the budget spent', () => {
    const budget = new InFlightBudget(100);
    const small = new Reader('small', budget, [50], log);
    const big = new Reader('big', budget, [200], log);
    const waiting = new Reader('waiting', budget, [10], log);
    small.read();
    big.read();
    waiting.read();
    small.ack();
    expect(budget.held).toBe(200);
    expect(waiting.resumed).toBe(0);
    big.ack();
    expect(waiting.resumed).toBe(1);
    expect(log).toEqual(['small:50', 'big:200', 'waiting:10']);
  });

  it('resumes waiting connections in the order they waited, each at the back of the line once served', () => {
    const budget = new InFlightBudget(100);
    const holder = new Reader('holder', budget, [100], log);
    const readers = ['a', 'b', 'c'].map((name) => new Reader(name, budget, [100, 100, 100], log));
    holder.read();
    readers.forEach((r) => r.read());
    expect(budget.waiters).toBe(3);
    holder.ack();
    // a reads one, fills the budget, and waits behind b and c.
    expect(log).toEqual(['holder:100', 'a:100']);
    const [a, b, c] = readers;
    a.ack();
    expect(log.slice(2)).toEqual(['b:100']);
    b.ack();
    expect(log.slice(3)).toEqual(['c:100']);
    c.ack();
    expect(log.slice(4)).toEqual(['a:100']);
  });

  it('with room for several, resumes several in turn, and every waiter eventually reads all it has', () => {
    const budget = new InFlightBudget(100);
    const readers = ['a', 'b', 'c', 'd'].map((name) => new Reader(name, budget, [30, 30, 30], log));
    readers.forEach((r) => r.read());
    // a takes 90, b 30 more: 120 ≥ 100, c and d wait (b waits too, with two left).
    expect(log).toEqual(['a:30', 'a:30', 'a:30', 'b:30']);
    let rounds = 0;
    while (readers.some((r) => r.held.length > 0)) {
      for (const r of readers) if (r.held.length > 0) r.ack();
      if (++rounds > 100) throw new Error('starved');
    }
    expect(readers.map((r) => r.queue.length)).toEqual([0, 0, 0, 0]);
    expect(budget.held).toBe(0);
    expect(budget.waiters).toBe(0);
  });

  it('a release from inside resume() (a handler that answers at once) continues the same round, no nested one', () => {
    const budget = new InFlightBudget(100);
    const holder = new Reader('holder', budget, [100], log);
    holder.read();
    let depth = 0;
    let deepest = 0;
    const instant: InFlightBudgetWaiter = {
      resume() {
        depth++;
        deepest = Math.max(deepest, depth);
        // Reads a NOTIFY whose handler answers before it returns.
        budget.take(50);
        log.push('instant');
        budget.release(50);
        depth--;
      },
    };
    const later = new Reader('later', budget, [10], log);
    budget.wait(instant);
    later.read();
    holder.ack();
    expect(log).toEqual(['holder:100', 'instant', 'later:10']);
    expect(deepest).toBe(1);
    expect(budget.waiters).toBe(0);
  });

  it('forgets a waiter that closed', () => {
    const budget = new InFlightBudget(100);
    const holder = new Reader('holder', budget, [100], log);
    const gone = new Reader('gone', budget, [10], log);
    holder.read();
    gone.read();
    budget.cancel(gone);
    holder.ack();
    expect(gone.resumed).toBe(0);
    expect(budget.waiters).toBe(0);
  });
});
