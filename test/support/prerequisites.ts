/**
 * Tests that need something a machine may lack (an HAProxy binary, redis-server, curl, the docker compose CLI…)
 * declare it with {@link describeIf} / {@link itIf}, the only conditional skips of the suite. Where a prerequisite is
 * missing, its tests are skipped with a warning naming it — except under `CI=true`, where scripts/test.sh provides
 * every prerequisite: there a missing one fails its tests, naming what is missing and why. A prerequisite that CI
 * cannot guarantee is declared with `optionalInCi` and the reason, and is skipped there too.
 */
import { spawnSync } from 'node:child_process';

/** Something tests need. */
export interface Prerequisite {
  /** What is needed: "redis-server", "HAProxy 3.2", "curl"… */
  readonly name: string;
  /** Why it is missing here; undefined when it is there. */
  readonly missing: string | undefined;
  /** Set when CI may lack it too (its tests are then skipped there as well): why scripts/test.sh cannot provide it. */
  readonly optionalInCi?: string;
  /**
   * Set when it should be there but getting it failed (an HAProxy that could not be provisioned): its tests fail
   * everywhere.
   */
  readonly broken?: true;
}

const IN_CI = process.env.CI === 'true';

/** A prerequisite met when `command ...args` runs and exits 0; `install` says how to get it. */
export function commandPrerequisite(
  name: string,
  command: readonly [string, ...string[]],
  install: string,
): Prerequisite {
  const [file, ...args] = command;
  const result = spawnSync(file, args, { stdio: 'ignore', timeout: 20_000 });
  const ran = result.error === undefined && result.status === 0;
  return { name, missing: ran ? undefined : `\`${command.join(' ')}\` does not run here (${install})` };
}

/** What to do about the first missing prerequisite: run (none missing), skip, or fail (under CI=true). */
function verdict(
  prerequisites: readonly Prerequisite[],
): { run: true } | { run: false; fail: boolean; because: string } {
  const missing = prerequisites.find((p) => p.missing !== undefined);
  if (!missing) return { run: true };
  const because = `${missing.name} is missing: ${missing.missing}`;
  if (missing.broken) return { run: false, fail: true, because };
  if (IN_CI && missing.optionalInCi === undefined)
    return { run: false, fail: true, because: `CI=true, and ${because} (scripts/test.sh provides it in CI)` };
  console.warn(
    `[e2e] skipped: ${because}${missing.optionalInCi ? ` (optional in CI too: ${missing.optionalInCi})` : ''}`,
  );
  return { run: false, fail: false, because };
}

/**
 * `describe` when every prerequisite is met. Otherwise the body is not run: a skipped suite with one test naming the
 * missing prerequisite, or under CI=true a suite with one test failing with it.
 */
export function describeIf(...prerequisites: readonly Prerequisite[]): (title: string, body: () => void) => void {
  const v = verdict(prerequisites);
  if (v.run) return describe;
  return (title) => {
    if (v.fail) {
      describe(title, () => {
        it('has its prerequisites', () => {
          throw new Error(v.because);
        });
      });
    } else {
      describe.skip(`${title} (skipped: ${v.because})`, () => {
        it('has its prerequisites', () => undefined);
      });
    }
  };
}

/** `it` (or `it.each(table)`) where every prerequisite is met. */
export type ItIf = ((title: string, fn: jest.ProvidesCallback, timeout?: number) => void) & {
  readonly each: jest.Each;
};

/**
 * `it` when every prerequisite is met. Otherwise one test in place of the test (or of every row of `.each`): skipped,
 * or under CI=true failing, naming the missing prerequisite.
 */
export function itIf(...prerequisites: readonly Prerequisite[]): ItIf {
  const v = verdict(prerequisites);
  if (v.run) return it;
  const instead = (title: string): void => {
    if (v.fail) {
      it(title, () => {
        throw new Error(v.because);
      });
    } else {
      it.skip(`${title} (skipped: ${v.because})`, () => undefined);
    }
  };
  const each = (() => (title: string) => instead(`${title} [every row]`)) as unknown as jest.Each;
  return Object.assign((title: string) => instead(title), { each });
}
