import fc from 'fast-check';
import {
  ActionType,
  decodeNotify,
  encodeAck,
  encodeAgentDisconnect,
  encodeFrame,
  encodeHaproxyHello,
  encodeNotify,
  Frame,
  FrameFlag,
  framePayload,
  FrameReader,
  FrameType,
  NotifyAssembler,
  NotifyMessage,
  parseFrame,
  SpoeIp,
  SpoeMessage,
  SpopError,
  SpopFragmentationError,
  SpopFrameIdNotFoundError,
  SpopFrameTooBigError,
  SpopId,
  SpopInterlacedFramesError,
  SpopInvalidFrameError,
  SpopStatus,
  UINT64_MAX,
  VarScope,
} from '.';
import { thrown } from '../../test/thrown';

const MAX_FRAME_SIZE = 16380;

/** What identifies a frame read from the wire, for comparisons. */
function summary(frame: Frame) {
  return {
    type: frame.type,
    flags: frame.flags,
    streamId: frame.streamId,
    frameId: frame.frameId,
    payload: framePayload(frame).toString('hex'),
  };
}

const messages: NotifyMessage[] = [
  {
    name: 'check-client-ip',
    args: [
      ['ip', SpoeIp.parse('10.1.2.3')],
      ['ua', 'Mozilla/5.0'],
      ['n', 7],
    ],
  },
  { name: 'log', args: [['body', Buffer.alloc(600, 0x5a)]] },
];

/** A stream as HAProxy and an agent would exchange it, with frames of all kinds and sizes. */
const frames: Buffer[] = [
  encodeHaproxyHello({
    supportedVersions: '2.0',
    maxFrameSize: MAX_FRAME_SIZE,
    capabilities: ['pipelining'],
    healthcheck: false,
    engineId: 'engine',
  }),
  encodeNotify(MAX_FRAME_SIZE, 1, 1, messages),
  encodeAck(MAX_FRAME_SIZE, 1, 1, [{ type: ActionType.SetVar, scope: VarScope.Session, name: 'score', value: 3 }]),
  encodeNotify(MAX_FRAME_SIZE, UINT64_MAX, 2n ** 53n, [{ name: 'big', args: [['blob', Buffer.alloc(12000, 1)]] }]),
  encodeAck(MAX_FRAME_SIZE, 2, 9, []),
  encodeNotify(MAX_FRAME_SIZE, 3, 1, messages, 0),
  encodeAgentDisconnect({ status: 0, message: 'normal' }),
];
const stream = Buffer.concat(frames);
const expected = frames.map((f) => summary(parseFrame(f, 4, f.length)));

/** Pushes `chunks` in order, reading every frame that becomes whole after each push. */
function readAll(chunks: Buffer[], maxFrameSize = MAX_FRAME_SIZE): Frame[] {
  const reader = new FrameReader(maxFrameSize);
  const out: Frame[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (let frame = reader.next(); frame; frame = reader.next()) out.push(frame);
  }
  expect(reader.bufferedBytes).toBe(0);
  return out;
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [0, ...[...new Set(cuts)].sort((a, b) => a - b), buf.length];
  const chunks: Buffer[] = [];
  for (let i = 1; i < points.length; i++) chunks.push(buf.subarray(points[i - 1], points[i]));
  return chunks;
}

/** Messages as a handler sees them (arguments' public fields), for comparisons. */
function view(decoded: SpoeMessage[]) {
  return decoded.map((m) => ({
    name: m.name,
    args: m.args.map((a) => ({ name: a.name, type: a.type, value: a.value, bytes: a.bytes })),
  }));
}

function bytesOf(...values: number[]): Buffer {
  return Buffer.from(values);
}

/** Runs `fn` and fails if it allocated a Buffer of `limit` bytes or more. */
function withoutAllocatingAtLeast(limit: number, fn: () => void): void {
  const spies = [jest.spyOn(Buffer, 'alloc'), jest.spyOn(Buffer, 'allocUnsafe'), jest.spyOn(Buffer, 'allocUnsafeSlow')];
  try {
    fn();
    for (const spy of spies) {
      for (const [size] of spy.mock.calls) expect(size).toBeLessThan(limit);
    }
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

describe('FrameReader', () => {
  describe('cutting a byte stream into frames', () => {
    it('reads many frames from one chunk', () => {
      expect(readAll([stream]).map(summary)).toEqual(expected);
    });

    it('reads frames fed one byte at a time', () => {
      const chunks = Array.from(stream, (b) => bytesOf(b));
      expect(readAll(chunks).map(summary)).toEqual(expected);
    });

    it('reads the same frames whatever the chunk boundaries', () => {
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 60 }), (cuts) => {
          expect(readAll(splitAt(stream, cuts)).map(summary)).toEqual(expected);
        }),
        { numRuns: 300 },
      );
    });

    it('reads the same frames when several chunks arrive before reading', () => {
      fc.assert(
        fc.property(
          fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 30 }),
          fc.integer({ min: 1, max: 5 }),
          (cuts, every) => {
            const reader = new FrameReader(MAX_FRAME_SIZE);
            const out: Frame[] = [];
            splitAt(stream, cuts).forEach((chunk, i) => {
              reader.push(chunk);
              if (i % every === 0) for (let frame = reader.next(); frame; frame = reader.next()) out.push(frame);
            });
            for (let frame = reader.next(); frame; frame = reader.next()) out.push(frame);
            expect(out.map(summary)).toEqual(expected);
          },
        ),
        { numRuns: 200 },
      );
    });

    it('ignores empty chunks', () => {
      expect(
        readAll([Buffer.alloc(0), stream.subarray(0, 3), Buffer.alloc(0), stream.subarray(3)]).map(summary),
      ).toEqual(expected);
    });

    it('returns nothing until the frame is whole, and counts the bytes it holds', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      const frame = frames[2];
      reader.push(frame.subarray(0, frame.length - 1));
      expect(reader.next()).toBeUndefined();
      expect(reader.bufferedBytes).toBe(frame.length - 1);
      reader.push(frame.subarray(frame.length - 1));
      expect(reader.next()).toBeDefined();
      expect(reader.bufferedBytes).toBe(0);
      expect(reader.next()).toBeUndefined();
    });

    it('reads the smallest frame (7 bytes)', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      reader.push(bytesOf(0, 0, 0, 7, FrameType.Ack, 0, 0, 0, 1, 5, 6));
      expect(reader.next()).toMatchObject({ type: FrameType.Ack, flags: FrameFlag.Fin, streamId: 5, frameId: 6 });
    });
  });

  describe('copies', () => {
    it('returns a frame lying in one chunk as a view on that very chunk', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      const chunk = Buffer.concat(frames);
      reader.push(chunk);
      for (let frame = reader.next(); frame; frame = reader.next()) expect(frame.buffer).toBe(chunk);
    });

    it('returns a view on its chunk for a frame that follows a straddling one', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      const [a, b] = frames;
      const second = Buffer.concat([a.subarray(10), b]);
      reader.push(a.subarray(0, 10));
      reader.push(second);
      expect(reader.next()?.buffer).not.toBe(second);
      expect(reader.next()?.buffer).toBe(second);
    });

    it('copies a frame that straddles chunks once, into a buffer of its exact size', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      const frame = frames[1];
      reader.push(frame.subarray(0, 20));
      reader.push(frame.subarray(20));
      const read = reader.next();
      expect(read?.buffer).toHaveLength(frame.length - 4);
      expect(read && summary(read)).toEqual(expected[1]);
    });
  });

  describe('frame length', () => {
    it('refuses a length above maxFrameSize as soon as the 4 length bytes are in', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      reader.push(bytesOf(0xff, 0xff, 0xff));
      expect(reader.next()).toBeUndefined();
      reader.push(bytesOf(0xff));
      const err = thrown(() => reader.next());
      expect(err).toBeInstanceOf(SpopFrameTooBigError);
      expect(err).toMatchObject({
        status: SpopStatus.FrameTooBig,
        frameSize: 0xffffffff,
        maxFrameSize: MAX_FRAME_SIZE,
      });
    });

    it('refuses a lying length without allocating for it', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      withoutAllocatingAtLeast(MAX_FRAME_SIZE, () => {
        for (const b of [0xff, 0xff, 0xff, 0xff]) {
          reader.push(bytesOf(b));
          if (reader.bufferedBytes < 4) expect(reader.next()).toBeUndefined();
        }
        expect(() => reader.next()).toThrow(SpopFrameTooBigError);
      });
      expect(reader.bufferedBytes).toBe(4);
    });

    it('refuses maxFrameSize + 1', () => {
      const reader = new FrameReader(256);
      reader.push(bytesOf(0, 0, 1, 1));
      expect(() => reader.next()).toThrow(SpopFrameTooBigError);
    });

    it('accepts exactly maxFrameSize', () => {
      const wire = encodeAck(256, 1, 1, [
        { type: ActionType.UnsetVar, scope: VarScope.Session, name: 'x'.repeat(244) },
      ]);
      expect(wire.readUInt32BE(0)).toBe(256);
      expect(readAll([wire], 256)).toHaveLength(1);
    });

    it('applies a lowered maxFrameSize to the next frame (after the HELLO)', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      reader.push(Buffer.concat([frames[2], frames[3]]));
      expect(reader.next()).toBeDefined();
      reader.maxFrameSize = 1024;
      expect(() => reader.next()).toThrow(SpopFrameTooBigError);
    });

    it.each([0, 1, 6])('refuses a length of %i (shorter than the metadata) as an invalid frame', (length) => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      reader.push(Buffer.concat([bytesOf(0, 0, 0, length), Buffer.alloc(16)]));
      expect(() => reader.next()).toThrow(SpopInvalidFrameError);
    });

    it('refuses a frame whose metadata overruns its length', () => {
      const reader = new FrameReader(MAX_FRAME_SIZE);
      reader.push(bytesOf(0, 0, 0, 7, FrameType.Ack, 0, 0, 0, 1, 0xf0, 0xf0, 0x00, 0x00));
      expect(() => reader.next()).toThrow(SpopInvalidFrameError);
    });
  });
});

describe('NotifyAssembler', () => {
  const MAX_PAYLOAD = 64 * 1024;
  const whole = encodeNotify(MAX_FRAME_SIZE, 7, 3, messages);
  const payload = framePayload(parseFrame(whole, 4, whole.length));

  function fragment(type: FrameType, part: Buffer, flags: number, streamId: SpopId = 7, frameId: SpopId = 3): Frame {
    const wire = encodeFrame(MAX_FRAME_SIZE, type, flags, streamId, frameId, (w, p: Buffer) => w.bytes(p), part);
    return parseFrame(wire, 4, wire.length);
  }

  /** NOTIFY (FIN clear), then UNSET frames, the last with FIN: the payload cut at `cuts`. */
  function fragments(cuts: number[], streamId: SpopId = 7, frameId: SpopId = 3): Frame[] {
    const parts = splitAt(payload, cuts);
    return parts.map((part, i) =>
      fragment(
        i === 0 ? FrameType.Notify : FrameType.Unset,
        part,
        i === parts.length - 1 ? FrameFlag.Fin : 0,
        streamId,
        frameId,
      ),
    );
  }

  function status(fn: () => unknown): number | undefined {
    const err = thrown(fn);
    return err instanceof SpopError ? err.status : undefined;
  }

  it('returns an unfragmented NOTIFY as it is', () => {
    const frame = parseFrame(whole, 4, whole.length);
    expect(new NotifyAssembler(false, MAX_PAYLOAD).accept(frame)).toBe(frame);
  });

  it('reassembles NOTIFY (FIN clear) + UNSET… + UNSET (FIN) into one NOTIFY', () => {
    const assembler = new NotifyAssembler(true, MAX_PAYLOAD);
    const [first, middle, last] = fragments([40, 300]);
    expect(assembler.accept(first)).toBeUndefined();
    expect(assembler.inProgress).toBe(true);
    expect(assembler.accept(middle)).toBeUndefined();
    const notify = assembler.accept(last);
    expect(assembler.inProgress).toBe(false);
    expect(notify).toMatchObject({ type: FrameType.Notify, flags: FrameFlag.Fin, streamId: 7, frameId: 3 });
    expect(notify && view(decodeNotify(notify))).toEqual(view(decodeNotify(parseFrame(whole, 4, whole.length))));
  });

  it('reassembles the same payload wherever it is cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: payload.length - 1 }), { minLength: 1, maxLength: 20 }),
        (cuts) => {
          const assembler = new NotifyAssembler(true, MAX_PAYLOAD);
          const results = fragments(cuts).map((f) => assembler.accept(f));
          const notify = results.pop();
          expect(results.every((r) => r === undefined)).toBe(true);
          expect(notify && framePayload(notify).equals(payload)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('matches 64-bit ids by value', () => {
    const assembler = new NotifyAssembler(true, MAX_PAYLOAD);
    const [first, last] = fragments([10], UINT64_MAX, 2n ** 60n);
    assembler.accept(first);
    expect(assembler.accept(last)).toMatchObject({ streamId: UINT64_MAX, frameId: 2n ** 60n });
  });

  it('drops the payload on ABORT, then accepts a new NOTIFY', () => {
    const assembler = new NotifyAssembler(true, MAX_PAYLOAD);
    const [first] = fragments([10]);
    assembler.accept(first);
    expect(
      assembler.accept(fragment(FrameType.Unset, Buffer.alloc(0), FrameFlag.Fin | FrameFlag.Abort)),
    ).toBeUndefined();
    expect(assembler.inProgress).toBe(false);
    const frame = parseFrame(whole, 4, whole.length);
    expect(assembler.accept(frame)).toBe(frame);
  });

  it('ignores ABORT on an unfragmented NOTIFY', () => {
    const frame = fragment(FrameType.Notify, payload, FrameFlag.Fin | FrameFlag.Abort);
    expect(new NotifyAssembler(true, MAX_PAYLOAD).accept(frame)).toBe(frame);
  });

  it('refuses a fragment when fragmentation was not negotiated (status 10)', () => {
    const [first] = fragments([10]);
    const assembler = new NotifyAssembler(false, MAX_PAYLOAD);
    expect(() => assembler.accept(first)).toThrow(SpopFragmentationError);
    expect(status(() => new NotifyAssembler(false, MAX_PAYLOAD).accept(first))).toBe(
      SpopStatus.FragmentationNotSupported,
    );
  });

  it('refuses an UNSET frame with nothing pending (status 12)', () => {
    const unset = fragment(FrameType.Unset, payload, FrameFlag.Fin);
    expect(() => new NotifyAssembler(true, MAX_PAYLOAD).accept(unset)).toThrow(SpopFrameIdNotFoundError);
    expect(status(() => new NotifyAssembler(true, MAX_PAYLOAD).accept(unset))).toBe(SpopStatus.FrameIdNotFound);
  });

  it('refuses a NOTIFY interlaced with pending fragments (status 11)', () => {
    const assembler = new NotifyAssembler(true, MAX_PAYLOAD);
    assembler.accept(fragments([10])[0]);
    const other = fragment(FrameType.Notify, payload, FrameFlag.Fin, 8, 1);
    expect(status(() => assembler.accept(other))).toBe(SpopStatus.InterlacedFrames);
  });

  it.each<[string, SpopId, SpopId]>([
    ['stream-id', 8, 3],
    ['frame-id', 7, 4],
  ])('refuses an UNSET whose %s differs from the pending NOTIFY (status 11)', (_, streamId, frameId) => {
    const assembler = new NotifyAssembler(true, MAX_PAYLOAD);
    assembler.accept(fragments([10])[0]);
    const err = thrown(() => assembler.accept(fragment(FrameType.Unset, payload, FrameFlag.Fin, streamId, frameId)));
    expect(err).toBeInstanceOf(SpopInterlacedFramesError);
    expect(err).toHaveProperty('status', SpopStatus.InterlacedFrames);
  });

  it.each<[string, FrameType]>([
    ['NOTIFY', FrameType.Notify],
    ['UNSET', FrameType.Unset],
  ])('refuses ABORT without FIN on %s (status 4)', (_, type) => {
    const assembler = new NotifyAssembler(true, MAX_PAYLOAD);
    if (type === FrameType.Unset) assembler.accept(fragments([10])[0]);
    const err = thrown(() => assembler.accept(fragment(type, payload, FrameFlag.Abort)));
    expect(err).toBeInstanceOf(SpopInvalidFrameError);
    expect(err).toHaveProperty('status', SpopStatus.InvalidFrame);
  });

  it('refuses a reassembled payload above its bound (status 3) and forgets it', () => {
    const assembler = new NotifyAssembler(true, 100);
    assembler.accept(fragment(FrameType.Notify, Buffer.alloc(60), 0));
    const err = thrown(() => assembler.accept(fragment(FrameType.Unset, Buffer.alloc(41), FrameFlag.Fin)));
    expect(err).toBeInstanceOf(SpopFrameTooBigError);
    expect(err).toHaveProperty('status', SpopStatus.FrameTooBig);
    expect(assembler.inProgress).toBe(false);
  });

  it('accepts a reassembled payload of exactly its bound', () => {
    const assembler = new NotifyAssembler(true, 100);
    assembler.accept(fragment(FrameType.Notify, Buffer.alloc(60), 0));
    expect(assembler.accept(fragment(FrameType.Unset, Buffer.alloc(40), FrameFlag.Fin))?.end).toBe(100);
  });

  it('refuses a first fragment already above the bound', () => {
    expect(status(() => new NotifyAssembler(true, 100).accept(fragment(FrameType.Notify, Buffer.alloc(101), 0)))).toBe(
      SpopStatus.FrameTooBig,
    );
  });
});
