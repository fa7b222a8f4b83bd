import fc from 'fast-check';
import { SpopStatus } from 'nestjs-spoe';
import { decodeDisconnect, DecodedAction, encodeNotify, FrameType } from 'nestjs-spoe/protocol';
import { SpoeClient } from 'nestjs-spoe/testing';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  corpus,
  MAX_FRAME_SIZE,
  mutate,
  mutation,
  randomPayloadFrame,
  streamOf,
} from '../../libs/spoe/test/fuzz-frames';
import { cleanupAll } from '../support/cleanup';
import { AgentProbe, forkAgent, ForkedAgent } from '../support/forked-agent';
import { haproxyHello, RawPeer } from '../support/raw-peer';
import { waitFor } from '../support/wait';
import { ERROR_VARIABLE, NEVER_DEADLINE_MS } from './abuse-agent';

// Abuse beside real traffic: one agent, in a process of its own (its heap and handles measured there, apart from
// Jest's), takes each abuse while valid NOTIFY flow on other connections, every one of which must get its own ACK.
// Counts are bounded so that the file stays well within the suite's time budget on a small shared machine; no
// assertion is about speed, and the time bounds are the issue's, far above what is measured.

/** Valid traffic: connections, NOTIFY in flight on each, and a pause between two NOTIFY of one sender. */
const TRAFFIC_CONNECTIONS = 4;
const TRAFFIC_WINDOW = 2;
const TRAFFIC_PAUSE_MS = 2;

const AT_ONCE = 500;
const SHORT_CONNECTIONS = 10_000;
const SHORT_PARALLEL = 50;
/** Connections before a baseline is taken: what an agent allocates once (compiled code, caches) is not growth. */
const WARM_UP_CONNECTIONS = 300;
const FUZZ_SEED = 0x5b0e;
const FUZZ_CASES = 600;
const FUZZ_PARALLEL = 8;
/** The issue's bound: every bad connection is answered with its status or closed within a second. */
const FUZZ_CLOSE_DEADLINE_MS = 1000;
const MAX_SIZE_FRAMES = 20_000;
const MAX_SIZE_CONNECTIONS = 4;
/** The agent's maxInFlightPerConnection (default 64): the in-flight window of each connection. */
const IN_FLIGHT_WINDOW = 64;
const NEVER_CALLS = 1000;
const NEVER_CONNECTIONS = 8;
/** Padding of each NOTIFY that never settles: a transport keeping its frame after the deadline would show at once. */
const NEVER_PAD_BYTES = 4096;

/**
 * Heap (V8's, after full collections) and buffer memory a warm agent may gain over a test without it being growth:
 * measured within ±0.2 MiB; a leak of 400 bytes per connection of the 10,000 would cross it.
 */
const HEAP_GROWTH_BOUND = 4 * 1024 * 1024;
const BUFFER_GROWTH_BOUND = 2 * 1024 * 1024;
/**
 * Heap a NOTIFY whose handler never settles may keep after its deadline: the handler's own Promise and resolve function
 * (or Observable and subscriber), and the small objects the transport hung on them, emptied at the deadline; not its
 * frame (its pad alone is 4 KiB), nor its connection.
 */
const NEVER_HEAP_BOUND = 1536;
/** Buffer bytes it may keep: none of its frame. */
const NEVER_BUFFER_BOUND = 64;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;

let agent: ForkedAgent;
/** Each test's measured outcome, printed at the end of the file. */
const outcomes: string[] = [];

beforeAll(async () => {
  agent = await forkAgent('test/transport/abuse-agent.ts');
}, 90_000);
afterAll(async () => {
  if (outcomes.length > 0) console.log(`abuse beside real traffic, measured:\n${outcomes.join('\n')}`);
  await cleanupAll();
});
afterEach(() => {
  // A crash of the agent fails the test that caused it.
  expect(agent.exitStatus).toBeUndefined();
});

/** Checks an ACK of `echo` with `v`; a description of what is wrong, undefined when it is right. */
function wrongEcho(actions: DecodedAction[], v: number): string | undefined {
  if (actions.length === 1 && actions[0].name === 'echo' && actions[0].value === v) return undefined;
  return `echo ${v} got ${JSON.stringify(actions.map((a) => [a.name, a.value]))}`;
}

/** Valid NOTIFY on connections of their own, flowing until stopped: each must get its ACK, with its own value. */
class ValidTraffic {
  private running = true;
  private next = 0;
  private answered = 0;
  private readonly failures: string[] = [];
  private readonly loops: Promise<void>[];

  private constructor(private readonly clients: SpoeClient[]) {
    this.loops = clients.flatMap((client) => range(TRAFFIC_WINDOW).map(() => this.loop(client)));
  }

  static async start(port: number): Promise<ValidTraffic> {
    return new ValidTraffic(await Promise.all(range(TRAFFIC_CONNECTIONS).map(() => SpoeClient.connect({ port }))));
  }

  async stop(): Promise<{ answered: number; failures: string[] }> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((client) => client.close()));
    return { answered: this.answered, failures: this.failures };
  }

  private async loop(client: SpoeClient): Promise<void> {
    while (this.running) {
      const v = this.next++;
      try {
        const wrong = wrongEcho(await client.notify('echo', { v }), v);
        if (wrong) this.failures.push(wrong);
        else this.answered++;
      } catch (error) {
        this.failures.push(`echo ${v}: ${(error as Error).message}`);
      }
      await sleep(TRAFFIC_PAUSE_MS);
    }
  }
}

/** Runs `abuse` while valid traffic flows, then expects every valid NOTIFY to have got its correct ACK. */
async function besideValidTraffic<T>(name: string, abuse: () => Promise<T>): Promise<T> {
  const traffic = await ValidTraffic.start(agent.port);
  let result: T;
  try {
    result = await abuse();
  } finally {
    const { answered, failures } = await traffic.stop();
    outcomes.push(`  ${name}: ${answered} valid NOTIFY answered meanwhile, ${failures.length} failed`);
    expect(failures).toEqual([]);
    expect(answered).toBeGreaterThan(0);
  }
  return result;
}

/** Runs `task(0 … count-1)`, `parallel` at a time. */
async function inParallel(count: number, parallel: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    range(parallel).map(async () => {
      while (next < count) await task(next++);
    }),
  );
}

/** One short connection: HELLO, a NOTIFY and its ACK, then a HAPROXY-DISCONNECT or (`abrupt`) a reset. */
async function shortConnection(v: number, abrupt: boolean): Promise<void> {
  const client = await SpoeClient.connect({ port: agent.port });
  try {
    const wrong = wrongEcho(await client.notify('echo', { v }), v);
    if (wrong) throw new Error(wrong);
  } finally {
    if (abrupt) client.destroy();
    else await client.close();
  }
}

/** The agent once every connection is gone and nothing is in flight, after full collections. */
async function quietProbe(): Promise<AgentProbe> {
  await waitFor('the agent to have no connection and nothing in flight', async () => {
    const probe = await agent.probe(false);
    return probe.connections === 0 && probe.inFlight === 0 && probe.inFlightBytes === 0;
  });
  return agent.probe(true);
}

/** A warm agent's figures with no connection: what {@link expectNoGrowth} compares with. */
async function baseline(): Promise<AgentProbe> {
  await inParallel(WARM_UP_CONNECTIONS, SHORT_PARALLEL, (i) => shortConnection(i, i % 2 === 1));
  return quietProbe();
}

/** Expects the agent back to `before` once its connections are gone: the same handles, no heap or buffer growth. */
async function expectNoGrowth(name: string, before: AgentProbe): Promise<void> {
  const after = await quietProbe();
  const heap = after.heapUsed - before.heapUsed;
  const buffers = after.arrayBuffers - before.arrayBuffers;
  outcomes.push(
    `  ${name}: heap ${mib(before.heapUsed)} → ${mib(after.heapUsed)}, buffers ${mib(before.arrayBuffers)} → ` +
      `${mib(after.arrayBuffers)}, handles ${JSON.stringify(before.resources)} → ${JSON.stringify(after.resources)}`,
  );
  expect(after.resources).toEqual(before.resources);
  expect(heap).toBeLessThan(HEAP_GROWTH_BOUND);
  expect(buffers).toBeLessThan(BUFFER_GROWTH_BOUND);
}

/** Sends `count` NOTIFY whose handler never settles, as fast as the in-flight windows allow; the wrong ACKs. */
async function neverSettling(count: number): Promise<string[]> {
  const pad = Buffer.alloc(NEVER_PAD_BYTES, 0x61);
  const wrong: string[] = [];
  await besideValidTraffic(`${count} NOTIFY never settled`, async () => {
    const clients = await Promise.all(range(NEVER_CONNECTIONS).map(() => SpoeClient.connect({ port: agent.port })));
    try {
      let next = 0;
      await Promise.all(
        clients.flatMap((client) =>
          range(IN_FLIGHT_WINDOW).map(async () => {
            while (next < count) {
              const name = next++ % 2 === 0 ? 'never-promise' : 'never-observable';
              const actions = await client.notify(name, { pad });
              if (actions.length !== 1 || actions[0].value !== 2) wrong.push(`${name}: ${JSON.stringify(actions)}`);
            }
          }),
        ),
      );
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  });
  return wrong;
}

describe('abuse beside real traffic: valid NOTIFY on other connections never fail', () => {
  it(`${AT_ONCE} connections opening at once each complete their HELLO and get the ACK of their NOTIFY`, async () => {
    const settled = await besideValidTraffic(`${AT_ONCE} connections at once`, async () => {
      const connecting = await Promise.allSettled(range(AT_ONCE).map(() => SpoeClient.connect({ port: agent.port })));
      const clients = connecting.flatMap((c) => (c.status === 'fulfilled' ? [c.value] : []));
      try {
        const open = await agent.probe(false);
        const acks = await Promise.allSettled(clients.map((client, i) => client.notify('echo', { v: i })));
        return { connecting, open, acks };
      } finally {
        await Promise.all(clients.map((client) => client.close()));
      }
    });
    const refused = settled.connecting.flatMap((c) => (c.status === 'rejected' ? [String(c.reason)] : []));
    const wrong = settled.acks.flatMap((ack, i) =>
      ack.status === 'rejected' ? [String(ack.reason)] : (wrongEcho(ack.value, i) ?? []),
    );
    outcomes.push(
      `  ${AT_ONCE} at once: ${AT_ONCE - refused.length} connected, ${settled.open.connections} open at the agent, ` +
        `${settled.acks.length - wrong.length} NOTIFY answered correctly`,
    );
    expect(refused).toEqual([]);
    expect(settled.open.connections).toBe(AT_ONCE + TRAFFIC_CONNECTIONS);
    expect(wrong).toEqual([]);
    await quietProbe();
  }, 60_000);

  it(`${SHORT_CONNECTIONS} short connections (half of them reset) leave no open handle and no heap growth behind`, async () => {
    const before = await baseline();
    const failures: string[] = [];
    await besideValidTraffic(`${SHORT_CONNECTIONS} short connections`, () =>
      inParallel(SHORT_CONNECTIONS, SHORT_PARALLEL, (i) =>
        shortConnection(i, i % 2 === 1).catch((error: unknown) => void failures.push((error as Error).message)),
      ),
    );
    outcomes.push(`  ${SHORT_CONNECTIONS} short connections: ${SHORT_CONNECTIONS - failures.length} served`);
    expect(failures).toEqual([]);
    await expectNoGrowth(`${SHORT_CONNECTIONS} short connections`, before);
  }, 120_000);

  it('seeded fuzz frames from several connections are each answered with a status or closed within a second', async () => {
    const before = await baseline();
    const cases = fc.sample(fuzzCase, { seed: FUZZ_SEED, numRuns: FUZZ_CASES });
    const results = await besideValidTraffic('fuzz', async () => {
      const results: FuzzResult[] = [];
      await inParallel(cases.length, FUZZ_PARALLEL, async (i) => void results.push(await runFuzzCase(cases[i])));
      return results;
    });
    const outcomesByKind = new Map<string, number>();
    for (const result of results) outcomesByKind.set(result.outcome, (outcomesByKind.get(result.outcome) ?? 0) + 1);
    const slowest = Math.max(...results.map((result) => result.closedAfterMs));
    outcomes.push(
      `  fuzz (seed ${FUZZ_SEED}): ${results.length} connections, ${[...outcomesByKind]
        .sort()
        .map(([kind, n]) => `${n} ${kind}`)
        .join(', ')}; slowest close ${slowest.toFixed(1)} ms after its last byte`,
    );
    // Every case ends in a protocol error at the latest (see runFuzzCase); none is an internal error of the agent.
    expect(results.filter((result) => result.outcome === 'still open')).toEqual([]);
    expect(results.filter((result) => result.outcome === `status ${SpopStatus.Unknown}`)).toEqual([]);
    await expectNoGrowth('fuzz', before);
  }, 120_000);

  it(`${MAX_SIZE_FRAMES} NOTIFY of exactly the negotiated max-frame-size, as fast as the in-flight window allows, are all answered`, async () => {
    const before = await baseline();
    const blob = maxSizeBlob();
    const wrong: string[] = [];
    const started = performance.now();
    await besideValidTraffic('max-size frames', async () => {
      const clients = await Promise.all(
        range(MAX_SIZE_CONNECTIONS).map(() => SpoeClient.connect({ port: agent.port })),
      );
      try {
        for (const client of clients) expect(client.settings.maxFrameSize).toBe(MAX_FRAME_SIZE);
        let next = 0;
        await Promise.all(
          clients.flatMap((client) =>
            range(IN_FLIGHT_WINDOW).map(async () => {
              while (next < MAX_SIZE_FRAMES) {
                const seq = next++;
                blob.writeUInt32BE(seq, 0);
                // The frame is encoded (the blob copied) before notifyMessages returns: the next seq may reuse it.
                const actions = await client.notifyMessages([{ name: 'blob', args: { b: blob } }], {
                  streamId: MAX_SIZE_FIRST_STREAM_ID + seq,
                  frameId: 1,
                });
                const got = actions.map((a) => [a.name, a.value]);
                if (
                  JSON.stringify(got) !==
                  JSON.stringify([
                    ['len', blob.length],
                    ['seq', seq],
                  ])
                )
                  wrong.push(`blob ${seq} got ${JSON.stringify(got)}`);
              }
            }),
          ),
        );
      } finally {
        await Promise.all(clients.map((client) => client.close()));
      }
    });
    const seconds = (performance.now() - started) / 1000;
    outcomes.push(
      `  max-size frames: ${MAX_SIZE_FRAMES} NOTIFY of ${MAX_FRAME_SIZE} bytes on ${MAX_SIZE_CONNECTIONS} ` +
        `connections in ${seconds.toFixed(1)} s (${Math.round(MAX_SIZE_FRAMES / seconds)}/s), ${wrong.length} wrong ACKs`,
    );
    expect(wrong).toEqual([]);
    await expectNoGrowth('max-size frames', before);
  }, 120_000);

  it('a handler that never settles is acknowledged at its deadline, its connection serving meanwhile and after, and keeps nothing of its NOTIFY', async () => {
    await besideValidTraffic('never-settling handlers', async () => {
      const client = await SpoeClient.connect({ port: agent.port });
      try {
        for (const name of ['never-promise', 'never-observable']) {
          const sent = performance.now();
          let acknowledgedAfterMs: number | undefined;
          const stuck = client.notify(name).then((actions) => {
            acknowledgedAfterMs = performance.now() - sent;
            return actions;
          });
          // Meanwhile, the same connection answers other NOTIFY (the deadline is far above a few round trips).
          const answeredBefore = await client.notify('echo', { v: 1 });
          const pendingWhileAnswered = acknowledgedAfterMs === undefined;
          expect(await stuck).toEqual([expect.objectContaining({ name: ERROR_VARIABLE.name, value: 2 })]);
          expect(wrongEcho(answeredBefore, 1)).toBeUndefined();
          expect(pendingWhileAnswered).toBe(true);
          // Not before its deadline (timers may fire a millisecond early by performance.now()'s reckoning).
          expect(acknowledgedAfterMs).toBeGreaterThanOrEqual(NEVER_DEADLINE_MS - 1);
          expect(wrongEcho(await client.notify('echo', { v: 2 }), 2)).toBeUndefined();
          outcomes.push(
            `  ${name}: ACK after ${acknowledgedAfterMs!.toFixed(1)} ms (deadline ${NEVER_DEADLINE_MS} ms), ` +
              `the connection answering meanwhile and after`,
          );
        }
      } finally {
        await client.close();
      }
    });

    // Many of them: what they wait for holds on to each of them forever; the transport must keep nothing more. A first
    // round warms the agent up (what it allocates once is not kept per call); the second is measured.
    expect(await neverSettling(NEVER_CALLS)).toEqual([]);
    const before = await quietProbe();
    const wrong = await neverSettling(NEVER_CALLS);
    const after = await quietProbe();
    expect(wrong).toEqual([]);
    expect(after.counters.stuck - before.counters.stuck).toBe(NEVER_CALLS);
    const heap = (after.heapUsed - before.heapUsed) / NEVER_CALLS;
    const buffers = (after.arrayBuffers - before.arrayBuffers) / NEVER_CALLS;
    outcomes.push(
      `  ${NEVER_CALLS} NOTIFY never settled (${NEVER_PAD_BYTES}-byte pad each), after their deadline: ` +
        `${Math.round(heap)} bytes of heap and ${Math.round(buffers)} of buffers kept per call`,
    );
    expect(buffers).toBeLessThan(NEVER_BUFFER_BOUND);
    expect(heap).toBeLessThan(NEVER_HEAP_BOUND);
    expect(after.resources).toEqual(before.resources);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------------------------
// Fuzz
// ---------------------------------------------------------------------------------------------------------------

/** What a fuzz connection sends: after a valid HELLO of its own (`hello`), or from its first byte. */
interface FuzzCase {
  readonly hello: boolean;
  readonly bytes: Buffer;
}

interface FuzzResult {
  /** `status N` (the AGENT-DISCONNECT it got), `closed` (without one), `still open` (a failure). */
  readonly outcome: string;
  /** From its last byte sent to its close. */
  readonly closedAfterMs: number;
}

/** NOTIFY of the agent's own messages, beside the corpus: mutations of them reach its handlers. */
const agentFrames = [
  encodeNotify(MAX_FRAME_SIZE, 1, 1, [{ name: 'echo', args: [['v', 7]] }]),
  encodeNotify(MAX_FRAME_SIZE, 3, 1, [{ name: 'blob', args: [['b', Buffer.from('0000000a', 'hex')]] }]),
  encodeNotify(MAX_FRAME_SIZE, 5, 1, [
    { name: 'echo', args: [['v', 8]] },
    { name: 'blob', args: [['b', Buffer.alloc(64)]] },
  ]),
];
const frames = fc.array(fc.constantFrom(...corpus, ...agentFrames), { minLength: 1, maxLength: 6 });
const mutations = fc.array(mutation, { minLength: 1, maxLength: 6 });

const fuzzCase: fc.Arbitrary<FuzzCase> = fc.oneof(
  // After the HELLO: frames of every kind, mutated (bit flips, truncations, bad lengths, bad types, bad varints).
  fc.record({
    hello: fc.constant(true),
    bytes: fc.tuple(frames, mutations).map(([picked, m]) => mutate(streamOf(picked), m)),
  }),
  // After the HELLO: well-formed headers (any type, flags and ids) around random payloads.
  fc.record({
    hello: fc.constant(true),
    bytes: fc.array(randomPayloadFrame, { minLength: 1, maxLength: 6 }).map((f) => Buffer.concat(f)),
  }),
  // From the first byte: a HELLO and frames, all of it mutated.
  fc.record({
    hello: fc.constant(false),
    bytes: fc.tuple(frames, mutations).map(([picked, m]) => mutate(streamOf([haproxyHello(), ...picked]), m)),
  }),
  // Random bytes, from the first byte or after the HELLO.
  fc.record({ hello: fc.boolean(), bytes: fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)) }),
);

/**
 * Zeros after the fuzz bytes end every case in a protocol error: they complete a frame left incomplete (its length is
 * at most the agent's max-frame-size), then read as a frame of length 0, shorter than any frame. So each case is a bad
 * connection, which must be answered with its status or closed; none may just wait.
 */
const FUZZ_END = Buffer.alloc(4 + MAX_FRAME_SIZE + 16);

async function runFuzzCase(fuzz: FuzzCase): Promise<FuzzResult> {
  const peer = fuzz.hello
    ? (await RawPeer.hello({ port: agent.port })).peer
    : await RawPeer.connect({ port: agent.port });
  try {
    peer.send(fuzz.bytes);
    peer.send(FUZZ_END);
    const sent = performance.now();
    try {
      await peer.expectClosed(FUZZ_CLOSE_DEADLINE_MS);
    } catch {
      return { outcome: 'still open', closedAfterMs: performance.now() - sent };
    }
    const closedAfterMs = performance.now() - sent;
    const disconnect = peer.pendingFrames.find((frame) => frame.type === FrameType.AgentDisconnect);
    return { outcome: disconnect ? `status ${decodeDisconnect(disconnect).status}` : 'closed', closedAfterMs };
  } finally {
    peer.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Max-size frames
// ---------------------------------------------------------------------------------------------------------------

/** Stream-ids of the max-size NOTIFY: all of them 3-byte varints (2288 ≤ id < 264432), so every frame has one size. */
const MAX_SIZE_FIRST_STREAM_ID = 2288;

/** A `blob` argument making a NOTIFY of exactly MAX_FRAME_SIZE bytes (without its 4-byte length). */
function maxSizeBlob(): Buffer {
  const frameLength = (size: number): number =>
    encodeNotify(1 << 20, MAX_SIZE_FIRST_STREAM_ID, 1, [
      { name: 'blob', args: [['b', Buffer.alloc(size)]] },
    ]).readUInt32BE(0);
  // From 2288 bytes on, a binary's length takes 3 bytes: the overhead is the same for every size used here.
  const blob = Buffer.alloc(MAX_FRAME_SIZE - (frameLength(8000) - 8000), 0x62);
  expect(frameLength(blob.length)).toBe(MAX_FRAME_SIZE);
  expect(
    encodeNotify(1 << 20, MAX_SIZE_FIRST_STREAM_ID + MAX_SIZE_FRAMES, 1, [
      { name: 'blob', args: [['b', blob]] },
    ]).readUInt32BE(0),
  ).toBe(MAX_FRAME_SIZE);
  return blob;
}
