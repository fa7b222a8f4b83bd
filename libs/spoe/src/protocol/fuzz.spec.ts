import fc from 'fast-check';
import {
  ActionType,
  decodeAck,
  decodeAgentHello,
  decodeDisconnect,
  decodeHaproxyHello,
  decodeNotify,
  encodeAck,
  encodeAgentDisconnect,
  encodeAgentHello,
  encodeFrame,
  encodeHaproxyDisconnect,
  encodeHaproxyHello,
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

/**
 * Whatever bytes arrive, the codec answers with values or SpopError subclasses (which become an AGENT-DISCONNECT with
 * their status). Any other exception would escape as a crash of the connection handler.
 */

const MAX_FRAME_SIZE = 16380;
const MAX_PAYLOAD = 64 * 1024;
const RUNS = 2000;
const TIME_LIMIT_MS = 20_000;

const every10Types = [
  ['null', null],
  ['bool', true],
  ['int32', -5],
  ['uint32', TypedData.uint32(4_000_000_000)],
  ['int64', -(2n ** 40n)],
  ['uint64', UINT64_MAX],
  ['ipv4', SpoeIp.parse('10.0.0.1')],
  ['ipv6', SpoeIp.parse('2001:db8::1')],
  ['string', 'Mozilla/5.0 (X11; Linux x86_64)'],
  ['binary', Buffer.from([0, 1, 2, 0xff])],
] as const;

function rawFrame(type: FrameType, flags: number, streamId: number, frameId: number, payload: Buffer): Buffer {
  return encodeFrame(MAX_FRAME_SIZE, type, flags, streamId, frameId, (w, p: Buffer) => w.bytes(p), payload);
}

/** A NOTIFY payload cut in three: NOTIFY (FIN clear), UNSET, UNSET (FIN). */
function fragmentedNotify(streamId: number, frameId: number): Buffer[] {
  const whole = encodeNotify(MAX_FRAME_SIZE, streamId, frameId, [
    {
      name: 'fragmented',
      args: [
        ['s', 'abcdefghij'],
        ['n', 7],
      ],
    },
  ]);
  const payload = whole.subarray(4 + 7);
  return [
    rawFrame(FrameType.Notify, 0, streamId, frameId, payload.subarray(0, 5)),
    rawFrame(FrameType.Unset, 0, streamId, frameId, payload.subarray(5, 12)),
    rawFrame(FrameType.Unset, FrameFlag.Fin, streamId, frameId, payload.subarray(12)),
  ];
}

/** Valid frames of every kind, mutations of which make up most of the fuzz input. */
const corpus: Buffer[] = [
  encodeHaproxyHello({
    supportedVersions: '2.0',
    maxFrameSize: MAX_FRAME_SIZE,
    capabilities: ['pipelining', 'async'],
    healthcheck: false,
    engineId: 'a1b2',
  }),
  encodeHaproxyHello({
    supportedVersions: '2.0, 1.5',
    maxFrameSize: 256,
    capabilities: ['fragmentation'],
    healthcheck: true,
  }),
  encodeAgentHello({ version: '2.0', maxFrameSize: MAX_FRAME_SIZE, capabilities: ['pipelining'] }),
  encodeNotify(MAX_FRAME_SIZE, 1, 1, [{ name: 'check-client-ip', args: [['ip', SpoeIp.parse('192.168.0.1')]] }]),
  encodeNotify(MAX_FRAME_SIZE, 300, 2, [
    { name: 'all-types', args: every10Types },
    { name: 'unnamed', args: [['', 'x']] },
  ]),
  encodeNotify(MAX_FRAME_SIZE, UINT64_MAX, 2n ** 53n, [{ name: 'big-ids', args: [] }]),
  ...fragmentedNotify(5, 1),
  rawFrame(FrameType.Notify, 0, 6, 1, Buffer.from('0161', 'hex')),
  rawFrame(FrameType.Unset, FrameFlag.Fin | FrameFlag.Abort, 6, 1, Buffer.alloc(0)),
  encodeAck(MAX_FRAME_SIZE, 1, 1, [{ type: ActionType.SetVar, scope: VarScope.Session, name: 'ip_score', value: 42 }]),
  encodeAck(MAX_FRAME_SIZE, 300, 2, [
    ...every10Types.map(([name, value], i) => ({ type: ActionType.SetVar, scope: (i % 5) as VarScope, name, value })),
    { type: ActionType.UnsetVar, scope: VarScope.Response, name: 'gone' },
  ]),
  encodeAgentDisconnect({ status: 3, message: 'frame is too big' }),
  encodeHaproxyDisconnect({ status: 0, message: 'normal' }),
];

/** A stream of corpus frames, with where each frame starts (to aim length-field corruption). */
const validStream = fc
  .array(fc.integer({ min: 0, max: corpus.length - 1 }), { minLength: 1, maxLength: 8 })
  .map((picks) => {
    const starts: number[] = [];
    let at = 0;
    for (const i of picks) {
      starts.push(at);
      at += corpus[i].length;
    }
    return { bytes: Buffer.concat(picks.map((i) => corpus[i])), starts };
  });

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'length'; frame: number; value: number };

const position = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });

// Local damage (a flipped bit, a changed byte) weighs more: it keeps the stream in sync, so the payload decoders see
// it.
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('set' as const),
      at: position,
      byte: fc.oneof(fc.constantFrom(0x00, 0x7f, 0x80, 0xef, 0xf0, 0xff), fc.integer({ min: 0, max: 255 })),
    }),
  },
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: position,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: position, count: fc.integer({ min: 1, max: 16 }) }),
  fc.record({
    kind: fc.constant('length' as const),
    frame: fc.nat(),
    value: fc.oneof(
      fc.constantFrom(0, 1, 6, 7, 8, 255, 256, MAX_FRAME_SIZE, MAX_FRAME_SIZE + 1, 0x7fffffff, 0x80000000, 0xffffffff),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 300 }),
    ),
  }),
);

function mutate(stream: { bytes: Buffer; starts: number[] }, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(stream.bytes);
  for (const m of mutations) {
    const at = 'at' in m ? Math.floor(m.at * bytes.length) : 0;
    switch (m.kind) {
      case 'flip':
        if (bytes.length > 0) bytes[at] ^= 1 << m.bit;
        break;
      case 'set':
        if (bytes.length > 0) bytes[at] = m.byte;
        break;
      case 'truncate':
        bytes = bytes.subarray(0, at);
        break;
      case 'insert':
        bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
        break;
      case 'delete':
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.count)]);
        break;
      case 'length': {
        const start = stream.starts[m.frame % stream.starts.length];
        if (start + 4 <= bytes.length) bytes.writeUInt32BE(m.value, start);
        break;
      }
    }
  }
  return bytes;
}

/** A well-formed header (any type, flags and ids) around random bytes: reaches deep into the payload decoders. */
const randomPayloadFrame = fc
  .record({
    type: fc.constantFrom(
      FrameType.Unset,
      FrameType.HaproxyHello,
      FrameType.HaproxyDisconnect,
      FrameType.Notify,
      FrameType.AgentHello,
      FrameType.AgentDisconnect,
      FrameType.Ack,
      4,
      200,
    ),
    flags: fc.oneof(
      fc.constantFrom(0, FrameFlag.Fin, FrameFlag.Abort, FrameFlag.Fin | FrameFlag.Abort),
      fc.integer({ min: 0, max: 0xffffffff }),
    ),
    streamId: fc.oneof(fc.constantFrom(0, 1), fc.bigInt({ min: 0n, max: UINT64_MAX })),
    frameId: fc.oneof(fc.constantFrom(0, 1), fc.bigInt({ min: 0n, max: UINT64_MAX })),
    payload: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 600 })),
  })
  .map(({ type, flags, streamId, frameId, payload }) =>
    encodeFrame(MAX_FRAME_SIZE, type, flags, streamId, frameId, (w, p: Uint8Array) => w.bytes(p), payload),
  );

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
      const streams = fc.array(generatedFrame, { minLength: 1, maxLength: 4 }).map((frames) => {
        const starts: number[] = [];
        let at = 0;
        for (const f of frames) {
          starts.push(at);
          at += f.length;
        }
        return { bytes: Buffer.concat(frames), starts };
      });
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
