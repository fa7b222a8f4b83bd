import { AsyncLocalStorage } from 'node:async_hooks';
import type { SpopId } from '../protocol/frame';
import { SpoeContext } from './spoe.context';
import type { SpoeObserver } from './spoe.observer';

/** Holds the SpoeContext of the message whose handlers run (created unused: it costs nothing until the first run). */
const storage = new AsyncLocalStorage<SpoeContext>();

/**
 * The SpoeContext of the SPOE message being handled, anywhere its handlers reach (injected services, guards,
 * interceptors, loggers, across `await`), when the server runs with `messageContext: true`; undefined elsewhere.
 */
export function currentSpoeContext(): SpoeContext | undefined {
  return storage.getStore();
}

/** What a log line about an SPOE message says of it: {@link spoeLogFields}. */
export interface SpoeLogFields {
  /** The `spoe-message` name. */
  readonly spoeMessage: string;
  /** STREAM-ID and FRAME-ID of its NOTIFY (a string beyond 2^53, so that JSON can carry it). */
  readonly streamId: number | string;
  readonly frameId: number | string;
  /** `address:port` of HAProxy's end of the connection. */
  readonly peer: string;
  /** The engine-id of the HAProxy SPOE engine, when it sent one. */
  readonly engineId?: string;
}

/**
 * The fields that identify a message in a log line, of `context` or else of the message being handled (undefined
 * outside one): pino's `mixin` adds them to every line (see the README), SpoeConsoleLogger to Nest's.
 */
export function spoeLogFields(context: SpoeContext | undefined = storage.getStore()): SpoeLogFields | undefined {
  if (!context) return undefined;
  const engineId = context.getEngineId();
  const fields = {
    spoeMessage: context.getMessageName(),
    streamId: jsonId(context.getStreamId()),
    frameId: jsonId(context.getFrameId()),
    peer: context.getRemoteAddress(),
  };
  return engineId === undefined ? fields : { ...fields, engineId };
}

function jsonId(id: SpopId): number | string {
  return typeof id === 'bigint' ? id.toString() : id;
}

/** @internal The observer that `messageContext: true` adds: each message's handlers run in a store of its context. */
export const MESSAGE_CONTEXT_OBSERVER: SpoeObserver = {
  messageScope: (...args) => {
    const context = new SpoeContext(args);
    return { run: (fn) => storage.run(context, fn) };
  },
};
