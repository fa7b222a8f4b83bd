import { ByteReader } from './byte-reader';
import { ByteWriter } from './byte-writer';
import { SpopInvalidFrameError } from './errors';
import { readTypedData, SpoeDataType, SpoeEncodable, SpoeValue, TypedDataSlot, writeTypedData } from './typed-data';

/** One KV-LIST item as read: its value and the wire type it came with. */
export interface KvItem {
  readonly type: SpoeDataType;
  readonly value: SpoeValue;
}

/** Reads a KV-LIST up to the end of the reader. A repeated key is an invalid frame. */
export function readKvList(r: ByteReader, what: string): Map<string, KvItem> {
  const items = new Map<string, KvItem>();
  const slot: TypedDataSlot = { type: SpoeDataType.Null, start: 0, end: 0 };
  while (r.pos < r.end) {
    const key = r.string(`${what} key`);
    const value = readTypedData(r, slot);
    if (items.has(key)) throw new SpopInvalidFrameError(`${what}: duplicate item "${key}"`);
    items.set(key, { type: slot.type, value });
  }
  return items;
}

/** Writes a KV-LIST from [key, value] pairs; values are typed as {@link writeTypedData} does. */
export function writeKvList(w: ByteWriter, items: ReadonlyArray<readonly [string, SpoeEncodable]>): void {
  for (const [key, value] of items) {
    w.string(key);
    writeTypedData(w, value);
  }
}
