/**
 * Fuzz input for SPOP decoders: a corpus of valid frames of every kind, mutations of them (bit flips, truncations,
 * corrupted lengths, inserted and deleted bytes) and random payloads behind well-formed headers. The codec's fuzz test
 * (src/protocol/fuzz.spec.ts) feeds them to the decoders; the abuse e2e test (test/transport/abuse.e2e-spec.ts) sends
 * them to a live agent.
 */
import fc from 'fast-check';
import {
  ActionType,
  encodeAck,
  encodeAgentDisconnect,
  encodeAgentHello,
  encodeFrame,
  encodeHaproxyDisconnect,
  encodeHaproxyHello,
  encodeNotify,
  FrameFlag,
  FrameType,
  SpoeIp,
  TypedData,
  UINT64_MAX,
  VarScope,
} from '../src/protocol';

/** The max-frame-size the fuzz frames are encoded with (HAProxy's). */
export const MAX_FRAME_SIZE = 16380;

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
export const corpus: Buffer[] = [
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

/** Frames one after the other, with where each starts (to aim length-field corruption). */
export interface FrameStream {
  readonly bytes: Buffer;
  readonly starts: readonly number[];
}

export function streamOf(frames: readonly Buffer[]): FrameStream {
  const starts: number[] = [];
  let at = 0;
  for (const frame of frames) {
    starts.push(at);
    at += frame.length;
  }
  return { bytes: Buffer.concat(frames), starts };
}

/** A stream of corpus frames. */
export const validStream: fc.Arbitrary<FrameStream> = fc
  .array(fc.integer({ min: 0, max: corpus.length - 1 }), { minLength: 1, maxLength: 8 })
  .map((picks) => streamOf(picks.map((i) => corpus[i])));

export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'length'; frame: number; value: number };

const position = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });

// Local damage (a flipped bit, a changed byte) weighs more: it keeps the stream in sync, so the payload decoders see
// it.
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
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

export function mutate(stream: FrameStream, mutations: readonly Mutation[]): Buffer {
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
export const randomPayloadFrame = fc
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
