import fc from 'fast-check';
import {
  ActionType,
  decodeAck,
  decodeAgentHello,
  decodeDisconnect,
  decodeHaproxyHello,
  decodeNotify,
  encodeAck,
  encodeFrame,
  encodeNotify,
  Frame,
  FrameFlag,
  FrameReader,
  FrameType,
  INT64_MAX,
  INT64_MIN,
  negotiateHello,
  NotifyAssembler,
  SpoeIp,
  SpopError,
  TypedData,
  UINT64_MAX,
  VarScope,
  writeKvList,
} from '.';
import {
  corpus,
  MAX_FRAME_SIZE,
  mutate,
  mutation,
  randomPayloadFrame,
  streamOf,
  validStream,
} from '../../test/fuzz-frames';

/**
 * Whatever bytes arrive, the codec answers with values or SpopError subclasses (which become an AGENT-DISCONNECT with
 * their status). Any other exception would escape as a crash of the connection handler.
 */

const MAX_PAYLOAD = 64 * 1024;
const RUNS = 2000;
const TIME_LIMIT_MS = 20_000;

const anyValue = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((n) => TypedData.uint32(n)),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }).map((n) => TypedData.int64(n)),
  fc.bigInt({ min: 0n, max: UINT64_MAX }).map((n) => TypedData.uint64(n)),
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => SpoeIp.fromBytes(b)),
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => SpoeIp.fromBytes(b)),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }),
);

const itemName = fc.oneof(
  fc.constantFrom(
    'supported-versions',
    'max-frame-size',
    'capabilities',
    'healthcheck',
    'engine-id',
    'version',
    'status-code',
    'message',
  ),
  fc.string({ unit: 'binary', maxLength: 12 }),
);

/** Frames of every kind encoded from random values: well-formed, with every type in every place. */
const generatedFrame = fc.oneof(
  fc
    .record({
      type: fc.constantFrom(
        FrameType.HaproxyHello,
        FrameType.AgentHello,
        FrameType.HaproxyDisconnect,
        FrameType.AgentDisconnect,
      ),
      items: fc.uniqueArray(fc.tuple(itemName, anyValue), { maxLength: 8, selector: ([key]) => key }),
    })
    .map(({ type, items }) => encodeFrame(MAX_FRAME_SIZE, type, FrameFlag.Fin, 0, 0, writeKvList, items)),
  fc
    .record({
      ids: fc.tuple(fc.nat(), fc.nat()),
      messages: fc.array(
        fc.record({
          name: fc.string({ unit: 'binary', maxLength: 20 }),
          args: fc.array(fc.tuple(fc.string({ unit: 'binary', maxLength: 8 }), anyValue), { maxLength: 6 }),
        }),
        { maxLength: 4 },
      ),
    })
    .map(({ ids, messages }) => encodeNotify(MAX_FRAME_SIZE, ids[0], ids[1], messages)),
  fc
    .record({
      ids: fc.tuple(fc.nat(), fc.nat()),
      actions: fc.array(
        fc.record({
          type: fc.constantFrom(ActionType.SetVar, ActionType.UnsetVar),
          scope: fc.constantFrom(
            VarScope.Process,
            VarScope.Session,
            VarScope.Transaction,
            VarScope.Request,
            VarScope.Response,
          ),
          name: fc.string({ unit: 'binary', maxLength: 12 }),
          value: anyValue,
        }),
        { maxLength: 6 },
      ),
    })
    .map(({ ids, actions }) => encodeAck(MAX_FRAME_SIZE, ids[0], ids[1], actions)),
);

const chunkSizes = fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 2048 })), {
  minLength: 1,
  maxLength: 16,
});

function isSpopError(err: unknown): boolean {
  return err instanceof SpopError;
}

/** Reads every value a handler could read, so that lazy conversions run too. */
function touch(value: unknown): void {
  if (value instanceof SpoeIp) value.toString();
  else if (typeof value === 'bigint' || typeof value === 'number') value.toString();
}

function decode(frame: Frame, assembler: { current: NotifyAssembler }): void {
  switch (frame.type) {
    case FrameType.HaproxyHello: {
      const hello = decodeHaproxyHello(frame);
      negotiateHello(hello, { maxFrameSize: MAX_FRAME_SIZE, capabilities: ['pipelining', 'fragmentation'] });
      return;
    }
    case FrameType.AgentHello:
      decodeAgentHello(frame);
      return;
    case FrameType.HaproxyDisconnect:
    case FrameType.AgentDisconnect:
      decodeDisconnect(frame);
      return;
    case FrameType.Ack:
      for (const action of decodeAck(frame)) touch(action.value);
      return;
    case FrameType.Notify:
    case FrameType.Unset: {
      let notify: Frame | undefined;
      try {
        notify = assembler.current.accept(frame);
      } catch (err) {
        assembler.current = new NotifyAssembler(true, MAX_PAYLOAD);
        throw err;
      }
      if (!notify) return;
      for (const message of decodeNotify(notify)) {
        for (const arg of message.args) {
          touch(arg.value);
          void arg.bytes;
        }
      }
      return;
    }
  }
}

let largestAllocation = 0;
const allocUnsafe = Buffer.allocUnsafe;

beforeAll(() => {
  jest.spyOn(Buffer, 'allocUnsafe').mockImplementation((size) => {
    largestAllocation = Math.max(largestAllocation, size);
    return allocUnsafe(size);
  });
});

afterAll(() => {
  jest.restoreAllMocks();
});

/**
 * Feeds `input` in chunks of the given sizes (cycled) and decodes every frame. Returns normally when every failure was
 * a SpopError; rethrows anything else. Checks the reader's memory bounds on the way.
 */
function feed(input: Buffer, sizes: number[]): void {
  const reader = new FrameReader(MAX_FRAME_SIZE);
  const assembler = { current: new NotifyAssembler(true, MAX_PAYLOAD) };
  let pushed = 0;
  let consumed = 0;
  for (let i = 0; pushed < input.length; i++) {
    const chunk = input.subarray(pushed, pushed + sizes[i % sizes.length]);
    reader.push(chunk);
    pushed += chunk.length;
    for (;;) {
      const held = reader.bufferedBytes;
      expect(held).toBe(pushed - consumed);
      largestAllocation = 0;
      let frame: Frame | undefined;
      try {
        frame = reader.next();
      } catch (err) {
        if (!isSpopError(err)) throw err;
        return; // The stream is out of sync: the connection ends here.
      }
      // A lying length never makes the reader allocate more than what it was given.
      expect(largestAllocation).toBeLessThanOrEqual(held);
      if (!frame) break;
      const length = input.readUInt32BE(consumed);
      expect(
        frame.buffer
          .subarray(frame.end - length, frame.end)
          .equals(input.subarray(consumed + 4, consumed + 4 + length)),
      ).toBe(true);
      consumed += 4 + length;
      try {
        decode(frame, assembler);
      } catch (err) {
        if (!isSpopError(err)) throw err;
      }
    }
  }
}

describe('fuzzing the codec', () => {
  it(
    'survives random bytes',
    () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 2048 }), chunkSizes, (bytes, sizes) => feed(Buffer.from(bytes), sizes)),
        { numRuns: RUNS },
      );
    },
    TIME_LIMIT_MS,
  );

  it(
    'survives mutated valid frames (bit flips, truncation, corrupted lengths, inserted and deleted bytes)',
    () => {
      fc.assert(
        fc.property(
          validStream,
          fc.array(mutation, { minLength: 1, maxLength: 6 }),
          chunkSizes,
          (stream, mutations, sizes) => feed(mutate(stream, mutations), sizes),
        ),
        { numRuns: RUNS },
      );
    },
    TIME_LIMIT_MS,
  );

  it(
    'survives random payloads behind well-formed headers',
    () => {
      fc.assert(
        fc.property(fc.array(randomPayloadFrame, { minLength: 1, maxLength: 6 }), chunkSizes, (frames, sizes) =>
          feed(Buffer.concat(frames), sizes),
        ),
        { numRuns: RUNS },
      );
    },
    TIME_LIMIT_MS,
  );

  it(
    'survives mutated frames encoded from random values',
    () => {
      const streams = fc.array(generatedFrame, { minLength: 1, maxLength: 4 }).map(streamOf);
      fc.assert(
        fc.property(streams, fc.array(mutation, { maxLength: 3 }), chunkSizes, (stream, mutations, sizes) =>
          feed(mutate(stream, mutations), sizes),
        ),
        { numRuns: RUNS },
      );
    },
    TIME_LIMIT_MS,
  );

  it('decodes the unmutated corpus without any error', () => {
    const assembler = { current: new NotifyAssembler(true, MAX_PAYLOAD) };
    const reader = new FrameReader(MAX_FRAME_SIZE);
    reader.push(Buffer.concat(corpus));
    for (let frame = reader.next(); frame; frame = reader.next()) decode(frame, assembler);
    expect(reader.bufferedBytes).toBe(0);
  });
});
