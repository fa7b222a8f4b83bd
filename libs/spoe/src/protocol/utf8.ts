/**
 * Decodes UTF-8 (invalid sequences become U+FFFD). Buffer#utf8Slice is what Buffer#toString('utf8', …) ends in; calling
 * it directly skips argument normalisation that costs as much as decoding a 50-byte header value.
 */
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice?: (this: Buffer, start: number, end: number) => string })
  .utf8Slice;
export function utf8(buf: Buffer, start: number, end: number): string {
  return utf8Slice ? utf8Slice.call(buf, start, end) : buf.toString('utf8', start, end);
}
