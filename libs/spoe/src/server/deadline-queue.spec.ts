import { DeadlineQueue, Expirable } from './deadline-queue';

class Job implements Expirable {
  settled = false;
  expired = false;
  expire(): void {
    this.expired = true;
    this.settled = true;
  }
}

describe('DeadlineQueue', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('expires an entry that is still pending at its deadline, not before', () => {
    const queue = new DeadlineQueue();
    const job = new Job();
    queue.add(100, job);
    jest.advanceTimersByTime(98);
    expect(job.expired).toBe(false);
    jest.advanceTimersByTime(3);
    expect(job.expired).toBe(true);
  });

  it('never expires an entry settled in time', () => {
    const queue = new DeadlineQueue();
    const job = new Job();
    queue.add(100, job);
    job.settled = true;
    jest.advanceTimersByTime(500);
    expect(job.expired).toBe(false);
  });

  it('keeps each duration in its own lane, in order', () => {
    const queue = new DeadlineQueue();
    const slow = new Job();
    const fast = new Job();
    queue.add(300, slow);
    queue.add(50, fast);
    jest.advanceTimersByTime(60);
    expect([fast.expired, slow.expired]).toEqual([true, false]);
    jest.advanceTimersByTime(250);
    expect(slow.expired).toBe(true);
  });

  it('expires a pending entry behind many settled ones (they are dropped as entries are added)', () => {
    const queue = new DeadlineQueue();
    for (let i = 0; i < 5000; i++) {
      const done = new Job();
      queue.add(100, done);
      done.settled = true;
    }
    const pending = new Job();
    queue.add(100, pending);
    jest.advanceTimersByTime(101);
    expect(pending.expired).toBe(true);
  });

  it('expireAll answers everything pending now (shutdown)', () => {
    const queue = new DeadlineQueue();
    const jobs = [new Job(), new Job(), new Job()];
    jobs[1].settled = true;
    jobs.forEach((job, i) => queue.add(1000 * (i + 1), job));
    queue.expireAll();
    expect(jobs.map((j) => j.expired)).toEqual([true, false, true]);
  });
});
