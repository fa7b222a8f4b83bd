import { ByteReader } from './byte-reader';
import { ByteWriter, WriterOverflow } from './byte-writer';
import { SpoeEncodeError, SpopInvalidFrameError } from './errors';

/** FRAME-TYPE values (SPOE.txt 3.2.2). */
export enum FrameType {
  /** Continuation fragment of a fragmented payload. */
  Unset = 0,
  HaproxyHello = 1,
  HaproxyDisconnect = 2,
  Notify = 3,
  AgentHello = 101,
  AgentDisconnect = 102,
  Ack = 103,
}

/** Frame FLAGS bits (SPOE.txt 3.2). */
export enum FrameFlag {
  /** Final fragment of a payload; set on every unfragmented frame. */
  Fin = 0x1,
  /** The fragmented payload is abandoned; FIN must be set too. */
  Abort = 0x2,
}

/** STREAM-ID and FRAME-ID: 64-bit unsigned varints; a number when safe, else a bigint. */
export type SpopId = number | bigint;

/** Bytes before the payload at most: length 4, type 1, flags 4, two 10-byte varints. */
export const FRAME_HEADER_MAX_SIZE = 4 + 1 + 4 + 10 + 10;

/** A whole frame as read from the wire. The payload is a region of `buffer`, not a copy. */
export interface Frame {
  readonly type: FrameType;
  readonly flags: number;
  readonly streamId: SpopId;
  readonly frameId: SpopId;
  readonly buffer: Buffer;
  readonly payloadOffset: number;
  readonly end: number;
}

// Parsing is synchronous and never re-entrant: one cursor serves every frame.
const metadataReader = new ByteReader(Buffer.alloc(0), 0, 0);

/** Parses the metadata of the frame occupying `buffer[start, end)` (after its 4-byte length). */
export function parseFrame(buffer: Buffer, start: number, end: number): Frame {
  const r = metadataReader;
  r.buf = buffer;
  r.pos = start;
  r.end = end;
  const type = r.u8('frame type');
  const flags = r.u32('frame flags');
  const streamId = r.varint('stream-id');
  const frameId = r.varint('frame-id');
  return { type, flags, streamId, frameId, buffer, payloadOffset: r.pos, end };
}

/** A cursor over a frame's payload. */
export function payloadReader(frame: Frame): ByteReader {
  return new ByteReader(frame.buffer, frame.payloadOffset, frame.end);
}

/** The frame's payload as a view (no copy). */
export function framePayload(frame: Frame): Buffer {
  return frame.buffer.subarray(frame.payloadOffset, frame.end);
}

/** Raises an invalid-frame error unless the whole payload was consumed. */
export function expectEnd(r: ByteReader, what: string): void {
  if (r.pos !== r.end) throw new SpopInvalidFrameError(`${what}: ${r.end - r.pos} unexpected trailing bytes`);
}

/**
 * Encodes one frame, length prefix included, at `w.pos`. `w.limit` must be `w.pos + 4 + maxFrameSize`: a frame that
 * does not fit throws {@link SpoeEncodeError} and leaves `w.pos` where it was.
 */
export function writeFrame<T>(
  w: ByteWriter,
  type: FrameType,
  flags: number,
  streamId: SpopId,
  frameId: SpopId,
  writePayload: (w: ByteWriter, arg: T) => void,
  arg: T,
): void {
  const start = w.pos;
  try {
    w.u32(0);
    w.u8(type);
    w.u32(flags);
    w.varint(streamId);
    w.varint(frameId);
    writePayload(w, arg);
  } catch (err) {
    w.pos = start;
    if (err instanceof WriterOverflow) {
      throw new SpoeEncodeError(`${FrameType[type]} frame exceeds max-frame-size ${w.limit - start - 4}`);
    }
    throw err;
  }
  w.putU32(w.pos - start - 4, start);
}

/** Encodes one frame into a Buffer of its own (for tests, clients and rare frames; the hot path uses FrameWriter). */
export function encodeFrame<T>(
  maxFrameSize: number,
  type: FrameType,
  flags: number,
  streamId: SpopId,
  frameId: SpopId,
  writePayload: (w: ByteWriter, arg: T) => void,
  arg: T,
): Buffer {
  const w = new ByteWriter(Buffer.allocUnsafe(4 + maxFrameSize), 0, 4 + maxFrameSize);
  writeFrame(w, type, flags, streamId, frameId, writePayload, arg);
  return Buffer.from(w.buf.subarray(0, w.pos));
}
