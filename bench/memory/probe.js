'use strict';
/* global PerformanceObserver, performance, setTimeout */
/**
 * The memory probe of `npm run bench:memory`, preloaded into an agent it measures:
 *
 *   node --expose-gc --require bench/memory/probe.js dist/main.js     (spawned with an IPC channel)
 *
 * It answers the bench over the IPC channel Node sets up for `stdio: [..., 'ipc']`, and does nothing else: no
 * timers, no listeners on the agent's objects, no module the agent does not already load (globals only, so that
 * nothing is required into the agent's heap). Without an IPC channel it does nothing at all.
 *
 * Request  { probe: 'stats', id, forceGc }   forceGc runs global.gc() twice first (needs --expose-gc): the second
 *                                            collection frees what the first one's weak callbacks released.
 * Answer   { probe: 'stats', id, at, memory: { rss, heapUsed, heapTotal, external, arrayBuffers }, gcEvents, gcExposed
 * }
 *          gcEvents: the GC events observed since the previous answer (each handed over once), forced ones tagged.
 *
 * A forced GC is tagged twice over, because the bench must not count it as a pause of the agent: V8 sets the
 * "forced" flag on it, and any event that started within a forced-GC window of this probe is tagged as well (the
 * observer delivers entries later, asynchronously, so the windows are kept a while).
 *
 * The only other effect: when the IPC channel goes away (the bench exited or was killed), the agent is sent SIGTERM,
 * then SIGKILL after 5 s, so that an agent is never left running behind a dead bench.
 */

const GC_FLAGS_FORCED = 4; // perf_hooks.constants.NODE_PERFORMANCE_GC_FLAGS_FORCED (a global-only probe cannot require it)
const WINDOW_KEEP_MS = 60_000;

/** Events observed and not yet handed over: { at (epoch ms), kind, flags, durationMs, forced }. */
let pending = [];
/** Forced-GC windows, [start, end] in performance.now() ms. */
let forcedWindows = [];

function inForcedWindow(startTime) {
  return forcedWindows.some(([start, end]) => startTime >= start && startTime <= end);
}

function onGcEntries(list) {
  for (const entry of list.getEntries()) {
    const detail = entry.detail || {};
    const flags = detail.flags || 0;
    pending.push({
      at: performance.timeOrigin + entry.startTime,
      kind: detail.kind || 0,
      flags,
      durationMs: entry.duration,
      forced: (flags & GC_FLAGS_FORCED) !== 0 || inForcedWindow(entry.startTime),
    });
  }
}

function forceGc() {
  const start = performance.now();
  globalThis.gc();
  globalThis.gc();
  const now = performance.now();
  forcedWindows.push([start, now]);
  forcedWindows = forcedWindows.filter(([, end]) => now - end < WINDOW_KEEP_MS);
}

function memory() {
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
  return { rss, heapUsed, heapTotal, external, arrayBuffers };
}

function onMessage(message) {
  if (!message || message.probe !== 'stats') return;
  const gcExposed = typeof globalThis.gc === 'function';
  if (message.forceGc && gcExposed) forceGc();
  const gcEvents = pending;
  pending = [];
  process.send({ probe: 'stats', id: message.id, at: Date.now(), memory: memory(), gcEvents, gcExposed });
}

function onDisconnect() {
  process.kill(process.pid, 'SIGTERM');
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 5000).unref();
}

if (typeof process.send === 'function') {
  new PerformanceObserver(onGcEntries).observe({ entryTypes: ['gc'] });
  process.on('message', onMessage);
  process.once('disconnect', onDisconnect);
  // A 'message' listener keeps the process alive through the channel; the agent must exit exactly as it would
  // without the probe, so the channel does not count.
  process.channel.unref();
}
