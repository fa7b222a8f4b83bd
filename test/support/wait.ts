/**
 * The one way tests wait for something that happens on its own time (a handler started, a process serves, a log line
 * came): poll a condition until it holds, and fail naming what was awaited.
 */

/** Thrown by a {@link waitFor} check to stop waiting at once (e.g. the awaited process exited). */
export class WaitAborted extends Error {}

/** The first polls come this soon: a condition that holds within a few milliseconds is seen within a few. */
const FIRST_INTERVAL_MS = 2;

/**
 * Polls `check` until it returns a value other than `undefined`/`false`, and resolves with that value; throws after
 * `timeoutMs` (generous by default: a slow, shared machine must not fail a correct test) with an error naming `what`
 * was awaited. Polls start at 2 ms apart and back off to `intervalMs`, so that a quick condition is seen at once and a
 * slow one (an HTTP round trip, a stats socket) is not hammered. A check that throws is retried (its error is reported
 * on timeout), except for {@link WaitAborted}, rethrown at once.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let interval = Math.min(FIRST_INTERVAL_MS, intervalMs);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      if (error instanceof WaitAborted) throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`,
        { cause: lastError },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
    interval = Math.min(interval * 2, intervalMs);
  }
}
