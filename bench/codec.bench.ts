/**
 * Codec micro-benchmark: the hot path of an agent, without sockets.
 *
 *   decode  FrameReader.push + next + decodeNotify of a realistic NOTIFY (message check-client-ip: an IPV4 `ip` and
 *           three STRING arguments of about 50 bytes), 64 frames per chunk as a busy socket delivers them, reading
 *           what a `@Payload('ip')` handler reads (values are decoded when read);
 *   decode-all  the same, reading every argument (a handler taking the whole payload);
 *   encode  FrameWriter.begin + writeAck + commit of its ACK (set-var sess.ip_score, an INT32), flushed every 64
 *           frames as the end of an event-loop turn would;
 *   total   both, interleaved frame by frame as an agent runs them.
 *
 * Run: npm run bench:codec (node -r @swc-node/register bench/codec.bench.ts). Target: total ≤ 1 µs/frame.
 */
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as spop from '../libs/spoe/src/protocol';
import type { Frame, SpoeAction } from '../libs/spoe/src/protocol';

// Bound once: under a CommonJS transpiler every `spop.x` read through the barrel is a getter call (an `export *`
// binding), which would be measured along with the codec.
const { ActionType, decodeNotify, encodeNotify, FrameReader, FrameWriter, SpoeIp, VarScope, writeAck } = spop;
type FrameWriter = spop.FrameWriter;

const MAX_FRAME_SIZE = 16380;
const FRAMES_PER_CHUNK = 64;
const WARMUP_FRAMES = 200_000;
const MEASURED_FRAMES = 200_000;
const ROUNDS = 9;
const ALLOCATION_FRAMES = 5_000;

const notify = (frameId: number): Buffer =>
  encodeNotify(MAX_FRAME_SIZE, 1000 + frameId, frameId, [
    {
      name: 'check-client-ip',
      args: [
        ['ip', SpoeIp.parse('203.0.113.42')],
        ['user-agent', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20'],
        ['host', 'www.example.com:443 (edge-frontend-03.eu-west-1a)'],
        ['path', '/api/v2/accounts/8f14e45f/sessions?expand=devices'],
      ],
    },
  ]);

/**
 * What the socket would deliver: FRAMES_PER_CHUNK NOTIFY frames back to back (socket buffers are not ours to count).
 */
const chunk = Buffer.concat(Array.from({ length: FRAMES_PER_CHUNK }, (_, i) => notify(i + 1)));
const frameSize = chunk.length / FRAMES_PER_CHUNK;

let sinkBytes = 0;
let checksum = 0;

function scoreOf(frame: Frame): number {
  const message = decodeNotify(frame)[0];
  // Read what a handler reads, so that nothing is optimised away.
  const ip = message.get('ip');
  checksum += ip instanceof SpoeIp ? ip.bytes[3] : 0;
  return checksum & 0xff;
}

function readEverything(frame: Frame): void {
  const message = decodeNotify(frame)[0];
  for (let i = 0; i < message.size; i++) checksum += String(message.valueAt(i)).length + message.nameAt(i).length;
}

function ackOf(score: number): SpoeAction[] {
  return [{ type: ActionType.SetVar, scope: VarScope.Session, name: 'ip_score', value: score }];
}

function decodeOnly(frames: number, read: (frame: Frame) => unknown = scoreOf): void {
  const reader = new FrameReader(MAX_FRAME_SIZE);
  for (let done = 0; done < frames; done += FRAMES_PER_CHUNK) {
    reader.push(chunk);
    for (let frame = reader.next(); frame; frame = reader.next()) read(frame);
  }
}

function encodeOnly(frames: number, writer: FrameWriter): void {
  for (let i = 1; i <= frames; i++) {
    writeAck(writer.begin(), 1000 + i, i, ackOf(i & 0xff));
    writer.commit();
    if (i % FRAMES_PER_CHUNK === 0) writer.flush();
  }
  writer.flush();
}

function both(frames: number, writer: FrameWriter): void {
  const reader = new FrameReader(MAX_FRAME_SIZE);
  for (let done = 0; done < frames; done += FRAMES_PER_CHUNK) {
    reader.push(chunk);
    for (let frame = reader.next(); frame; frame = reader.next()) {
      writeAck(writer.begin(), frame.streamId, frame.frameId, ackOf(scoreOf(frame)));
      writer.commit();
    }
    writer.flush();
  }
}

/** Timings of ROUNDS runs of `frames` frames: the best (least disturbed by other processes) and the median. */
function nsPerFrame(frames: number, run: () => void): { best: number; median: number } {
  const rounds: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const start = process.hrtime.bigint();
    run();
    rounds.push(Number(process.hrtime.bigint() - start) / frames);
  }
  rounds.sort((a, b) => a - b);
  return { best: rounds[0], median: rounds[ROUNDS >> 1] };
}

/** `gc()` from --expose-gc, or obtained at run time when node was started without it. */
function gcFunction(): () => void {
  if (globalThis.gc) return globalThis.gc;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * Bytes allocated per frame. Method: collect garbage, read heapUsed + arrayBuffers (JS heap objects plus Buffer
 * backing stores, the FrameWriter slab among them), run ALLOCATION_FRAMES frames, read them again. The delta is
 * everything allocated in between only if no GC ran meanwhile, so a PerformanceObserver watches for GC entries and
 * the measure is retried with half the frames until a window passes without one (ALLOCATION_FRAMES frames allocate a
 * few MB, within V8's default young generation, so the first try normally succeeds).
 */
async function bytesPerFrame(run: (frames: number) => void): Promise<number> {
  const gc = gcFunction();
  const gcStarts: number[] = [];
  const observer = new PerformanceObserver((list) => gcStarts.push(...list.getEntries().map((e) => e.startTime)));
  observer.observe({ entryTypes: ['gc'] });
  try {
    for (let frames = ALLOCATION_FRAMES; frames >= FRAMES_PER_CHUNK; frames = Math.floor(frames / 2)) {
      gc();
      const start = performance.now();
      const before = process.memoryUsage();
      run(frames);
      const after = process.memoryUsage();
      const end = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 10)); // GC entries are reported asynchronously
      if (!gcStarts.some((t) => t >= start && t <= end)) {
        return (after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers) / frames;
      }
    }
    return NaN;
  } finally {
    observer.disconnect();
  }
}

async function main(): Promise<void> {
  const writer = new FrameWriter((data) => (sinkBytes += data.length), MAX_FRAME_SIZE);

  decodeOnly(WARMUP_FRAMES);
  decodeOnly(WARMUP_FRAMES, readEverything);
  encodeOnly(WARMUP_FRAMES, writer);
  both(WARMUP_FRAMES, writer);

  const decode = nsPerFrame(MEASURED_FRAMES, () => decodeOnly(MEASURED_FRAMES));
  const decodeAll = nsPerFrame(MEASURED_FRAMES, () => decodeOnly(MEASURED_FRAMES, readEverything));
  const encode = nsPerFrame(MEASURED_FRAMES, () => encodeOnly(MEASURED_FRAMES, writer));
  const total = nsPerFrame(MEASURED_FRAMES, () => both(MEASURED_FRAMES, writer));
  const decodeBytes = await bytesPerFrame((frames) => decodeOnly(frames));
  const decodeAllBytes = await bytesPerFrame((frames) => decodeOnly(frames, readEverything));
  const encodeBytes = await bytesPerFrame((frames) => encodeOnly(frames, writer));
  const totalBytes = await bytesPerFrame((frames) => both(frames, writer));

  const row = (name: string, ns: { best: number; median: number }, bytes: number): string =>
    `${name.padEnd(11)}${ns.best.toFixed(0).padStart(6)} ns/frame (median ${ns.median.toFixed(0).padStart(5)})${bytes.toFixed(0).padStart(7)} B/frame`;
  console.log(
    `node ${process.version}, NOTIFY of ${frameSize} bytes, best and median of ${ROUNDS} rounds of ${MEASURED_FRAMES} frames`,
  );
  console.log(row('decode', decode, decodeBytes));
  console.log(row('decode-all', decodeAll, decodeAllBytes));
  console.log(row('encode', encode, encodeBytes));
  console.log(row('total', total, totalBytes));
  console.log(
    `target: total ≤ 1000 ns/frame: ${total.best <= 1000 ? 'met' : 'NOT met'} (sink ${sinkBytes} bytes, checksum ${checksum & 0xffff})`,
  );
}

void main();
