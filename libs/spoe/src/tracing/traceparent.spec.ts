import { TraceFlags } from '@opentelemetry/api';
import { parseTraceParent } from '@opentelemetry/core';
import fc from 'fast-check';
import { Traceparent, traceparentSampled } from './traceparent';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const read = (text: string): Traceparent => {
  // Somewhere inside a larger buffer, as in a frame.
  const bytes = Buffer.from(`xx${text}yy`, 'latin1');
  return traceparentSampled(bytes, 2, bytes.length - 2);
};

describe('traceparentSampled: the sampled bit of a W3C traceparent, read from its bytes', () => {
  it('reads the sampled bit of the trace-flags, whatever their other bits', () => {
    expect(read(`00-${TRACE_ID}-${PARENT_ID}-01`)).toBe(Traceparent.Sampled);
    expect(read(`00-${TRACE_ID}-${PARENT_ID}-00`)).toBe(Traceparent.NotSampled);
    expect(read(`00-${TRACE_ID}-${PARENT_ID}-02`)).toBe(Traceparent.NotSampled);
    expect(read(`00-${TRACE_ID}-${PARENT_ID}-ff`)).toBe(Traceparent.Sampled);
    expect(read(`00-${TRACE_ID}-${PARENT_ID}-fe`)).toBe(Traceparent.NotSampled);
  });

  it('leaves to the propagator what is not a canonical version-00 traceparent', () => {
    for (const text of [
      `01-${TRACE_ID}-${PARENT_ID}-00`, // another version: the propagator knows its rules
      `00-${TRACE_ID}-${PARENT_ID}-00-extra`,
      ` 00-${TRACE_ID}-${PARENT_ID}-00`,
      `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-00`,
      `00-${'0'.repeat(32)}-${PARENT_ID}-00`,
      `00-${TRACE_ID}-${'0'.repeat(16)}-00`,
      `00-${TRACE_ID}-${PARENT_ID}-0g`,
      `00_${TRACE_ID}-${PARENT_ID}-00`,
      '',
    ]) {
      expect([text, read(text)]).toEqual([text, Traceparent.Unknown]);
    }
  });

  it('never disagrees with the W3C propagator of @opentelemetry/core', () => {
    const hex = '0123456789abcdefABx-';
    const valid = `00-${TRACE_ID}-${PARENT_ID}-00`;
    // A valid traceparent with a few bytes changed (to hex digits, other bytes, dashes, zeros) or cut.
    const mutated = fc
      .tuple(
        fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.constantFrom(...hex, '0')), { maxLength: 4 }),
        fc.nat({ max: 3 }),
      )
      .map(([changes, cut]) => {
        const chars = [...valid];
        for (const [at, char] of changes) chars[at] = char;
        return chars.join('').slice(0, valid.length - (cut === 3 ? 1 : 0));
      });
    fc.assert(
      fc.property(fc.oneof(mutated, fc.string({ maxLength: 60 })), (text) => {
        const ours = read(text);
        if (ours === Traceparent.Unknown) return;
        const theirs = parseTraceParent(text);
        expect(theirs).not.toBeNull();
        expect((theirs!.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED).toBe(ours === Traceparent.Sampled);
      }),
      { numRuns: 2000 },
    );
  });
});
