import { SpopFrameTooBigError, SpopInvalidFrameError } from './errors';
import { Frame, parseFrame } from './frame';

/** The smallest frame: type (1), flags (4), stream-id (1), frame-id (1). */
const MIN_FRAME_LENGTH = 7;

/**
 * Cuts a TCP byte stream into frames. Fed chunks of any size (one byte at a time included), it yields whole frames.
 * A frame's 4-byte length is checked against `maxFrameSize` before anything of it is buffered, so a lying length can
 * never make it allocate. A frame lying within one chunk is returned as a view on that chunk; only frames that
 * straddle chunks are copied (once, into a buffer of their exact size).
 */
export class FrameReader {
  private readonly chunks: Buffer[] = [];
  /** Read position in chunks[0]. */
  private offset = 0;
  private buffered = 0;

  /** The largest frame accepted (frame length, without its 4-byte prefix). Lowered after the HELLO handshake. */
  constructor(public maxFrameSize: number) {}

  /** Bytes received and not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /**
   * The next whole frame, or undefined until more bytes arrive. Throws {@link SpopFrameTooBigError} or
   * {@link SpopInvalidFrameError}; after a throw the stream is out of sync and the reader must not be used again.
   */
  next(): Frame | undefined {
    if (this.buffered < 4) return undefined;
    const length = this.peekLength();
    if (length > this.maxFrameSize) throw new SpopFrameTooBigError(length, this.maxFrameSize);
    if (length < MIN_FRAME_LENGTH)
      throw new SpopInvalidFrameError(`frame of ${length} bytes is shorter than its metadata`);
    if (this.buffered < 4 + length) return undefined;

    const head = this.chunks[0];
    if (head.length - this.offset >= 4 + length) {
      const start = this.offset + 4;
      this.consume(4 + length);
      return parseFrame(head, start, start + length);
    }
    this.consume(4);
    const frame = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const chunk = this.chunks[0];
      const n = Math.min(chunk.length - this.offset, length - filled);
      chunk.copy(frame, filled, this.offset, this.offset + n);
      filled += n;
      this.consume(n);
    }
    return parseFrame(frame, 0, length);
  }

  private peekLength(): number {
    const head = this.chunks[0];
    const offset = this.offset;
    if (head.length - offset >= 4)
      return head[offset] * 0x1000000 + ((head[offset + 1] << 16) | (head[offset + 2] << 8) | head[offset + 3]);
    let value = 0;
    let index = 0;
    let at = this.offset;
    for (let i = 0; i < 4; i++) {
      while (at >= this.chunks[index].length) {
        index++;
        at = 0;
      }
      value = value * 256 + this.chunks[index][at++];
    }
    return value;
  }

  private consume(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const left = this.chunks[0].length - this.offset;
      if (n < left) {
        this.offset += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.offset = 0;
    }
  }
}
