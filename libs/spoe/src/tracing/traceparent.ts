/** The W3C Trace Context header a message's trace arrives in, as HAProxy's `args traceparent=req.hdr(traceparent)`. */
export const TRACEPARENT = 'traceparent';

/** What {@link traceparentSampled} found. */
export enum Traceparent {
  /** Not a canonical version-00 `traceparent`: left to the propagator to read (or reject). */
  Unknown = -1,
  /** A valid one whose trace-flags do not have the sampled bit: its request is not traced. */
  NotSampled = 0,
  /** A valid one whose trace-flags have the sampled bit. */
  Sampled = 1,
}

const DASH = 0x2d;
/** `version-traceid-parentid-flags` of version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2. */
const LENGTH = 55;

/** Per byte: its value as a lowercase hex digit, 16 for any other byte. */
const HEX = new Uint8Array(256).fill(16);
for (let digit = 0; digit < 16; digit++) HEX[digit.toString(16).charCodeAt(0)] = digit;

/**
 * Reads the sampled bit of the `traceparent` in `bytes[start, end)` without decoding a string: the check every message
 * that carries one pays. Only the canonical form counts (version `00`, lowercase hex, trace-id and parent-id not all
 * zeros: what the W3C propagator of `@opentelemetry/core` accepts, with nothing around it); anything else is
 * {@link Traceparent.Unknown}, and goes through the propagator as before.
 */
export function traceparentSampled(bytes: Buffer, start: number, end: number): Traceparent {
  if (end - start !== LENGTH || bytes[start] !== 0x30 || bytes[start + 1] !== 0x30) return Traceparent.Unknown;
  if (bytes[start + 2] !== DASH || bytes[start + 35] !== DASH || bytes[start + 52] !== DASH) return Traceparent.Unknown;
  // Digit values OR-ed: 16 or more when a byte is not a lowercase hex digit; 0 when all of an id are zeros.
  let traceId = 0;
  for (let i = start + 3; i < start + 35; i++) traceId |= HEX[bytes[i]];
  let parentId = 0;
  for (let i = start + 36; i < start + 52; i++) parentId |= HEX[bytes[i]];
  const flags = HEX[bytes[start + 54]];
  if (traceId === 0 || traceId > 15 || parentId === 0 || parentId > 15 || (HEX[bytes[start + 53]] | flags) > 15) {
    return Traceparent.Unknown;
  }
  return flags & 1 ? Traceparent.Sampled : Traceparent.NotSampled;
}
