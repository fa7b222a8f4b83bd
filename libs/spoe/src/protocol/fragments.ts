import {
  SpopFragmentationError,
  SpopFrameIdNotFoundError,
  SpopFrameTooBigError,
  SpopInterlacedFramesError,
  SpopInvalidFrameError,
} from './errors';
import { Frame, FrameFlag, FrameType, SpopId } from './frame';

/**
 * Reassembles fragmented NOTIFY frames (HAProxy 2.x, when fragmentation was negotiated): a NOTIFY with FIN clear,
 * then UNSET frames with the same stream-id and frame-id, the last with FIN set. One payload is in progress at a time;
 * anything else in between is an interlaced frame (status 11). ABORT (with FIN) drops the payload.
 */
export class NotifyAssembler {
  private current: { streamId: SpopId; frameId: SpopId; parts: Buffer[]; size: number } | undefined;

  constructor(
    /** Whether fragmentation was negotiated; without it a fragment is an error (status 10). */
    private readonly fragmentation: boolean,
    /** Bound on a reassembled payload. */
    private readonly maxPayloadSize: number,
  ) {}

  get inProgress(): boolean {
    return this.current !== undefined;
  }

  /**
   * Feeds a NOTIFY or UNSET frame. Returns the whole NOTIFY (the frame itself when unfragmented) once complete;
   * undefined while fragments are pending or when the payload was aborted.
   */
  accept(frame: Frame): Frame | undefined {
    const fin = (frame.flags & FrameFlag.Fin) !== 0;
    const abort = (frame.flags & FrameFlag.Abort) !== 0;
    if (abort && !fin) throw new SpopInvalidFrameError('ABORT flag without FIN');
    const current = this.current;

    if (frame.type === FrameType.Notify) {
      if (current) {
        throw new SpopInterlacedFramesError(
          `NOTIFY ${describeIds(frame)} while fragments of ${describeIds(current)} are pending`,
        );
      }
      if (fin) return frame;
      if (!this.fragmentation)
        throw new SpopFragmentationError(
          `fragmented NOTIFY ${describeIds(frame)} but fragmentation was not negotiated`,
        );
      this.current = { streamId: frame.streamId, frameId: frame.frameId, parts: [], size: 0 };
      this.append(frame);
      return undefined;
    }

    if (!current) throw new SpopFrameIdNotFoundError(`fragment ${describeIds(frame)} continues no frame`);
    if (current.streamId !== frame.streamId || current.frameId !== frame.frameId) {
      throw new SpopInterlacedFramesError(
        `fragment ${describeIds(frame)} while fragments of ${describeIds(current)} are pending`,
      );
    }
    if (abort) {
      this.current = undefined;
      return undefined;
    }
    this.append(frame);
    if (!fin) return undefined;
    this.current = undefined;
    const payload = Buffer.concat(current.parts, current.size);
    return {
      type: FrameType.Notify,
      flags: FrameFlag.Fin,
      streamId: current.streamId,
      frameId: current.frameId,
      buffer: payload,
      payloadOffset: 0,
      end: payload.length,
    };
  }

  private append(frame: Frame): void {
    const current = this.current!;
    const size = frame.end - frame.payloadOffset;
    if (current.size + size > this.maxPayloadSize) {
      this.current = undefined;
      throw new SpopFrameTooBigError(current.size + size, this.maxPayloadSize);
    }
    current.parts.push(frame.buffer.subarray(frame.payloadOffset, frame.end));
    current.size += size;
  }
}

function describeIds(ids: { streamId: SpopId; frameId: SpopId }): string {
  return `(stream-id ${ids.streamId}, frame-id ${ids.frameId})`;
}
