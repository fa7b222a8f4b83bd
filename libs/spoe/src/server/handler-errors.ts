/**
 * The error a handler threw, by what its exception filters made of it: Nest's filter answers an unknown error with a
 * new `{ status: 'error', message: 'Internal server error' }`, and a trace wants the original (its type, its stack).
 */
const causes = new WeakMap<object, unknown>();

/** Remembers that exception filters turned `cause` into `filtered` (the same error, when they let it through). */
export function rememberCause(filtered: unknown, cause: unknown): void {
  if (typeof filtered === 'object' && filtered !== null) causes.set(filtered, cause);
}

/** Whether `error` came out of a handler's exception filters: they are applied once. */
export function wasFiltered(error: unknown): boolean {
  return typeof error === 'object' && error !== null && causes.has(error);
}

/** What the handler threw that became `error`, or `error` itself. */
export function causeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null && causes.has(error) ? causes.get(error) : error;
}
