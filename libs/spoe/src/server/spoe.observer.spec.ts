import { combineObservers, SpoeMessageScope, SpoeObserver } from './spoe.observer';
import type { SpoeContextArgs } from './spoe.context';

describe('combineObservers', () => {
  const args = [undefined, 1, 2, undefined] as unknown as SpoeContextArgs;

  it('is undefined for none and the observer itself for one', () => {
    const only: SpoeObserver = { notify: () => undefined };
    expect(combineObservers([])).toBeUndefined();
    expect(combineObservers([only])).toBe(only);
  });

  it('tells each event to every observer that has it, in order, and leaves out events none has', () => {
    const seen: string[] = [];
    const a: SpoeObserver = {
      notify: (n) => seen.push(`a.notify ${n}`),
      message: (name, outcome, seconds) => seen.push(`a.message ${name} ${outcome} ${seconds}`),
    };
    const b: SpoeObserver = { notify: (n) => seen.push(`b.notify ${n}`), ack: (bytes) => seen.push(`b.ack ${bytes}`) };
    const c: SpoeObserver = {};
    const all = combineObservers([a, b, c])!;
    all.notify?.(2);
    all.message?.('m', 'ok', 0.5);
    all.ack?.(30);
    expect(seen).toEqual(['a.notify 2', 'b.notify 2', 'a.message m ok 0.5', 'b.ack 30']);
    expect(all.hello).toBeUndefined();
    expect(all.messageScope).toBeUndefined();
  });

  it("calls an observer's methods with the observer as `this`", () => {
    class Counting implements SpoeObserver {
      count = 0;
      notify(): void {
        this.count++;
      }
    }
    const counting = new Counting();
    combineObservers([counting, {}])!.notify?.(1);
    expect(counting.count).toBe(1);
  });

  it("nests the observers' scopes, the first one outermost, and ends each", () => {
    const seen: string[] = [];
    const scoping = (label: string): SpoeObserver => ({
      messageScope: (): SpoeMessageScope => ({
        run: (fn) => {
          seen.push(`${label} in`);
          try {
            return fn();
          } finally {
            seen.push(`${label} out`);
          }
        },
        end: (outcome) => seen.push(`${label} end ${outcome}`),
      }),
    });
    const scope = combineObservers([scoping('a'), {}, scoping('b')])!.messageScope!(...args)!;
    expect(scope.run(() => (seen.push('handler'), 42))).toBe(42);
    scope.end?.('ok', undefined);
    expect(seen).toEqual(['a in', 'b in', 'handler', 'b out', 'a out', 'a end ok', 'b end ok']);
  });

  it('gives one scoping observer its own scope, and no scope when it opens none', () => {
    const scope: SpoeMessageScope = { run: (fn) => fn() };
    let open = true;
    const all = combineObservers([{ messageScope: () => (open ? scope : undefined) }, { notify: () => undefined }])!;
    expect(all.messageScope!(...args)).toBe(scope);
    open = false;
    expect(all.messageScope!(...args)).toBeUndefined();
  });
});
