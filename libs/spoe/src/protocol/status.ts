/**
 * SPOP status codes (SPOE.txt, "Errors & timeouts"). Carried by HAPROXY-DISCONNECT and AGENT-DISCONNECT frames and
 * by every protocol error this library raises.
 */
export enum SpopStatus {
  Normal = 0,
  IoError = 1,
  Timeout = 2,
  FrameTooBig = 3,
  InvalidFrame = 4,
  NoVersion = 5,
  NoMaxFrameSize = 6,
  NoCapabilities = 7,
  UnsupportedVersion = 8,
  BadFrameSize = 9,
  FragmentationNotSupported = 10,
  InterlacedFrames = 11,
  FrameIdNotFound = 12,
  ResourceAllocation = 13,
  Unknown = 99,
}

const REASONS: Readonly<Record<number, string>> = {
  [SpopStatus.Normal]: 'normal',
  [SpopStatus.IoError]: 'I/O error',
  [SpopStatus.Timeout]: 'a timeout occurred',
  [SpopStatus.FrameTooBig]: 'frame is too big',
  [SpopStatus.InvalidFrame]: 'invalid frame received',
  [SpopStatus.NoVersion]: 'version value not found',
  [SpopStatus.NoMaxFrameSize]: 'max-frame-size value not found',
  [SpopStatus.NoCapabilities]: 'capabilities value not found',
  [SpopStatus.UnsupportedVersion]: 'unsupported version',
  [SpopStatus.BadFrameSize]: 'max-frame-size too big or too small',
  [SpopStatus.FragmentationNotSupported]: 'payload fragmentation is not supported',
  [SpopStatus.InterlacedFrames]: 'invalid interlaced frames',
  [SpopStatus.FrameIdNotFound]: 'frame-id not found',
  [SpopStatus.ResourceAllocation]: 'resource allocation error',
  [SpopStatus.Unknown]: 'an unknown error occurred',
};

/** The spec's description of a status code; codes an agent defined itself read as "status N". */
export function spopStatusReason(status: number): string {
  return REASONS[status] ?? `status ${status}`;
}
