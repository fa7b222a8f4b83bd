import { SpopStatus, spopStatusReason } from './status';

/**
 * A violation of SPOP seen on the wire. Each subclass maps to the status code that the AGENT-DISCONNECT frame closing
 * the connection carries.
 */
export class SpopError extends Error {
  constructor(
    readonly status: SpopStatus,
    message: string = spopStatusReason(status),
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A frame longer than the negotiated (or configured) max-frame-size. Status 3. */
export class SpopFrameTooBigError extends SpopError {
  constructor(
    readonly frameSize: number,
    readonly maxFrameSize: number,
  ) {
    super(SpopStatus.FrameTooBig, `frame of ${frameSize} bytes exceeds max-frame-size ${maxFrameSize}`);
  }
}

/** Bytes that do not parse as the frame they claim to be. Status 4. */
export class SpopInvalidFrameError extends SpopError {
  constructor(message: string) {
    super(SpopStatus.InvalidFrame, message);
  }
}

/** A HAPROXY-HELLO the agent cannot accept (statuses 5 to 9). */
export class SpopHelloError extends SpopError {
  constructor(
    status:
      | SpopStatus.NoVersion
      | SpopStatus.NoMaxFrameSize
      | SpopStatus.NoCapabilities
      | SpopStatus.UnsupportedVersion
      | SpopStatus.BadFrameSize,
    message?: string,
  ) {
    super(status, message);
  }
}

/** A fragmented frame although fragmentation was not negotiated, or a reassembly over its limits. Status 10. */
export class SpopFragmentationError extends SpopError {
  constructor(message: string) {
    super(SpopStatus.FragmentationNotSupported, message);
  }
}

/** Fragments of one frame interleaved with another frame. Status 11. */
export class SpopInterlacedFramesError extends SpopError {
  constructor(message: string) {
    super(SpopStatus.InterlacedFrames, message);
  }
}

/** A continuation frame whose stream-id/frame-id matches no frame in progress. Status 12. */
export class SpopFrameIdNotFoundError extends SpopError {
  constructor(message: string) {
    super(SpopStatus.FrameIdNotFound, message);
  }
}

/**
 * A value that cannot be encoded as asked (an integer out of its wire type's range, a string longer than a frame…).
 * Raised at encode time so no wrong byte ever leaves; it is the caller's bug, not the peer's.
 */
export class SpoeEncodeError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'SpoeEncodeError';
  }
}
