import { SpoeDataType } from 'nestjs-spoe';
import { ByteReader, FrameType, readTypedData, TypedDataSlot } from 'nestjs-spoe/protocol';

/**
 * Annotates one frame (length prefix included) byte by byte: each field's bytes in hex beside what they mean, as
 * SPOE.txt names it. For test logs and docs; it decodes with the library's own reader.
 */
export function dumpFrame(frame: Buffer): string {
  const lines: string[] = [];
  const r = new ByteReader(frame, 0, frame.length);
  const field = (start: number, meaning: string): void => {
    const hex = [...frame.subarray(start, r.pos)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    lines.push(`${hex.padEnd(48)} ${meaning}`);
  };
  let at = r.pos;
  const length = r.u32('length');
  field(at, `FRAME-LENGTH ${length}`);
  at = r.pos;
  const type = r.u8('type');
  field(at, `FRAME-TYPE ${type} (${FrameType[type]})`);
  at = r.pos;
  const flags = r.u32('flags');
  field(at, `FLAGS 0x${flags.toString(16)}${flags & 1 ? ' FIN' : ''}${flags & 2 ? ' ABORT' : ''}`);
  at = r.pos;
  field(at, `STREAM-ID ${r.varint('stream-id')}`);
  at = r.pos;
  field(at, `FRAME-ID ${r.varint('frame-id')}`);
  const slot: TypedDataSlot = { type: SpoeDataType.Null, start: 0, end: 0 };
  const typed = (label: string): void => {
    at = r.pos;
    const value = readTypedData(r, slot);
    field(
      at,
      `  ${label} ${SpoeDataType[slot.type].toUpperCase()} ${typeof value === 'bigint' ? `${value}n` : JSON.stringify(value)}`,
    );
  };
  const name = (label: string): string => {
    at = r.pos;
    const n = r.string(label);
    field(at, `${label} "${n}"`);
    return n;
  };
  while (r.pos < r.end) {
    if (type === FrameType.Notify) {
      name('MESSAGE-NAME');
      at = r.pos;
      const count = r.u8('nb-args');
      field(at, `NB-ARGS ${count}`);
      for (let i = 0; i < count; i++) typed(`arg "${name('  KV-NAME')}" =`);
    } else if (type === FrameType.Ack) {
      at = r.pos;
      const action = r.u8('action');
      const nb = r.u8('nb-args');
      const scope = r.u8('scope');
      field(
        at,
        `ACTION ${action === 1 ? 'SET-VAR' : 'UNSET-VAR'}, NB-ARGS ${nb}, VAR-SCOPE ${['proc', 'sess', 'txn', 'req', 'res'][scope]}`,
      );
      name('  VAR-NAME');
      if (action === 1) typed('VAR-VALUE');
    } else {
      typed(`item "${name('KV-NAME')}" =`);
    }
  }
  return lines.join('\n');
}
