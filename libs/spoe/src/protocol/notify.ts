import { ByteReader, decodeName } from './byte-reader';
import { ByteWriter } from './byte-writer';
import { SpoeEncodeError } from './errors';
import { encodeFrame, Frame, FrameFlag, FrameType, SpopId, writeFrame } from './frame';
import {
  scanTypedData,
  SpoeDataType,
  SpoeEncodable,
  SpoeValue,
  TypedData,
  TypedDataSlot,
  typedValue,
  writeTypedData,
} from './typed-data';

/** One argument of a message (a KV-LIST item of LIST-OF-MESSAGES). */
export class SpoeArgument {
  constructor(
    /** As configured in `spoe-message … args name=sample`; empty for unnamed arguments. */
    readonly name: string,
    /** The wire type HAProxy sent. */
    readonly type: SpoeDataType,
    readonly value: SpoeValue,
    private readonly source?: Buffer,
    private readonly start = 0,
    private readonly end = 0,
  ) {}

  /**
   * The raw bytes of a STRING or BINARY value, as a view on the frame (HAProxy does not promise that a STRING is
   * valid UTF-8); undefined for other types.
   */
  get bytes(): Buffer | undefined {
    return this.source?.subarray(this.start, this.end);
  }

  /** The value with the wire type it came with (a STRING keeps its exact bytes): to send back what HAProxy sent. */
  typed(): TypedData {
    return this.type === SpoeDataType.String ? TypedData.stringBytes(this.bytes!) : TypedData.of(this.type, this.value);
  }
}

/** Bytes `[start, end)` of `buffer`: see {@link SpoeMessage.stringBytesAt}. */
export interface ByteSpan {
  buffer: Buffer;
  start: number;
  end: number;
}

/** Numbers kept per argument in a message's layout: name start and end, type, value start and end. */
const STRIDE = 5;

/**
 * One SPOE message of a NOTIFY frame: the `spoe-message` name and its arguments in order. The frame was checked whole
 * when it was read; argument names and values are decoded when first read (a handler that reads one argument of four
 * pays for one), then kept.
 */
export class SpoeMessage {
  /** Names and values decoded so far, by index; undefined where not yet (no SpoeValue is undefined). */
  private names: Array<string | undefined> | undefined;
  private decoded: Array<SpoeValue | undefined> | undefined;
  private argumentList: readonly SpoeArgument[] | undefined;

  /** @internal Built by {@link decodeMessages}: `layout` holds, per argument, where its name and value lie. */
  constructor(
    /** The `spoe-message` name. */
    readonly name: string,
    private readonly buffer: Buffer,
    private readonly layout: readonly number[],
    /** Bytes of the longest argument name (-1 without arguments): names longer than that are none of them. */
    private readonly longestName: number,
  ) {}

  /** How many arguments the message carries. */
  get size(): number {
    return this.layout.length / STRIDE;
  }

  /** The arguments in wire order, with their types and raw bytes (duplicate names included). */
  get args(): readonly SpoeArgument[] {
    if (this.argumentList) return this.argumentList;
    const layout = this.layout;
    const list = new Array<SpoeArgument>(this.size);
    for (let i = 0; i < list.length; i++) {
      const type = layout[STRIDE * i + 2] as SpoeDataType;
      const value = this.valueAt(i);
      list[i] =
        type === SpoeDataType.String || type === SpoeDataType.Binary
          ? new SpoeArgument(this.nameAt(i), type, value, this.buffer, layout[STRIDE * i + 3], layout[STRIDE * i + 4])
          : new SpoeArgument(this.nameAt(i), type, value);
    }
    return (this.argumentList = list);
  }

  /** The value of the first argument called `name`; undefined when the message has none. */
  get(name: string): SpoeValue | undefined {
    const index = this.indexOf(name);
    return index < 0 ? undefined : this.valueAt(index);
  }

  /**
   * The index of the first argument called `name`, -1 when there is none. Compared on the wire bytes when `name` is
   * ASCII (argument names come from HAProxy's configuration and nearly always are): no string is decoded to answer.
   */
  indexOf(name: string): number {
    const length = name.length;
    // UTF-8 takes at least one byte per UTF-16 unit (see below): longer than every name's bytes, none of them.
    if (length > this.longestName) return -1;
    const layout = this.layout;
    const names = this.names;
    let ascii: boolean | undefined;
    for (let i = 0, at = 0; at < layout.length; i++, at += STRIDE) {
      const known = names === undefined ? undefined : names[i];
      if (known !== undefined) {
        if (known === name) return i;
        continue;
      }
      const start = layout[at];
      const bytes = layout[at + 1] - start;
      // UTF-8 decodes to at most one UTF-16 unit per byte (U+FFFD for an invalid one): fewer bytes, another name.
      if (bytes < length) continue;
      if (bytes === length && this.bytesSpell(start, name)) return i;
      // Nor does it decode non-ASCII bytes to ASCII characters: bytes that do not spell an ASCII name are another
      // name. Any other name is compared decoded.
      if (!(ascii ??= isAscii(name, 0)) && this.nameAt(i) === name) return i;
    }
    return -1;
  }

  /**
   * @internal Whether an argument is called one of `names`, as {@link indexOf} compares; `shortest`: the length of the
   * shortest of them (the caller's, computed once). A message whose argument names are all shorter (their longest was
   * noted as they were decoded) answers at once: tracing's check for its propagator's fields, on every message.
   */
  hasAnyOf(names: readonly string[], shortest: number): boolean {
    if (this.longestName < shortest) return false;
    for (let j = 0; j < names.length; j++) if (this.indexOf(names[j]) >= 0) return true;
    return false;
  }

  /** The name of argument `index` (wire order). */
  nameAt(index: number): string {
    const names = (this.names ??= new Array<string | undefined>(this.size));
    return (names[index] ??= decodeName(this.buffer, this.layout[STRIDE * index], this.layout[STRIDE * index + 1]));
  }

  /** The value of argument `index` (wire order). */
  valueAt(index: number): SpoeValue {
    const decoded = (this.decoded ??= new Array<SpoeValue | undefined>(this.size));
    let value = decoded[index];
    if (value === undefined) {
      const at = STRIDE * index + 2;
      value = decoded[index] = typedValue(
        this.buffer,
        this.layout[at] as SpoeDataType,
        this.layout[at + 1],
        this.layout[at + 2],
      );
    }
    return value;
  }

  /**
   * @internal Where the bytes of argument `index`'s value lie when it is a STRING: `span` is set to them (a view on the
   * frame, valid while the message is dispatched) and true returned; false for any other type. Reads them without
   * decoding a string or allocating: tracing's check of a `traceparent` on every message.
   */
  stringBytesAt(index: number, span: ByteSpan): boolean {
    const at = STRIDE * index + 2;
    if (this.layout[at] !== SpoeDataType.String) return false;
    span.buffer = this.buffer;
    span.start = this.layout[at + 1];
    span.end = this.layout[at + 2];
    return true;
  }

  /** Whether the bytes at `start` are the ASCII characters of `name`. */
  private bytesSpell(start: number, name: string): boolean {
    const buf = this.buffer;
    for (let i = 0; i < name.length; i++) {
      const code = name.charCodeAt(i);
      if (code >= 0x80 || buf[start + i] !== code) return false;
    }
    return true;
  }
}

function isAscii(text: string, from: number): boolean {
  for (let i = from; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** Decodes the LIST-OF-MESSAGES of a NOTIFY frame. */
export function decodeNotify(frame: Frame): SpoeMessage[] {
  return decodeMessages(frame.buffer, frame.payloadOffset, frame.end);
}

// Decoding is synchronous and never re-entrant: one cursor and one scratch slot serve every NOTIFY.
const messagesReader = new ByteReader(Buffer.alloc(0), 0, 0);
const messagesSlot: TypedDataSlot = { type: SpoeDataType.Null, start: 0, end: 0 };

/**
 * Decodes a LIST-OF-MESSAGES occupying `buffer[start, end)` (a NOTIFY payload, possibly reassembled). The whole list
 * is checked here, so a malformed frame fails at once; names and values are decoded later, when read (see
 * {@link SpoeMessage}).
 */
export function decodeMessages(buffer: Buffer, start: number, end: number): SpoeMessage[] {
  const r = messagesReader;
  r.buf = buffer;
  r.pos = start;
  r.end = end;
  const slot = messagesSlot;
  const messages: SpoeMessage[] = [];
  while (r.pos < r.end) {
    const name = r.string('message name');
    const count = r.u8('message nb-args');
    const layout = new Array<number>(STRIDE * count);
    let longestName = -1;
    for (let i = 0, at = 0; i < count; i++, at += STRIDE) {
      const nameLength = r.length('argument name');
      if (nameLength > longestName) longestName = nameLength;
      layout[at] = r.pos;
      r.pos += nameLength;
      layout[at + 1] = r.pos;
      scanTypedData(r, slot);
      layout[at + 2] = slot.type;
      layout[at + 3] = slot.start;
      layout[at + 4] = slot.end;
    }
    messages.push(new SpoeMessage(name, buffer, layout, longestName));
  }
  r.buf = EMPTY;
  return messages;
}

const EMPTY = Buffer.alloc(0);

/** A message to send in a NOTIFY (HAProxy's side): arguments in order, values typed as {@link writeTypedData}. */
export interface NotifyMessage {
  readonly name: string;
  readonly args: ReadonlyArray<readonly [string, SpoeEncodable]>;
}

/** Writes a whole NOTIFY frame. */
export function writeNotify(
  w: ByteWriter,
  streamId: SpopId,
  frameId: SpopId,
  messages: readonly NotifyMessage[],
  flags: number = FrameFlag.Fin,
): void {
  writeFrame(w, FrameType.Notify, flags, streamId, frameId, writeMessages, messages);
}

export function encodeNotify(
  maxFrameSize: number,
  streamId: SpopId,
  frameId: SpopId,
  messages: readonly NotifyMessage[],
  flags: number = FrameFlag.Fin,
): Buffer {
  return encodeFrame(maxFrameSize, FrameType.Notify, flags, streamId, frameId, writeMessages, messages);
}

/** Writes a LIST-OF-MESSAGES (a NOTIFY payload). */
export function writeMessages(w: ByteWriter, messages: readonly NotifyMessage[]): void {
  for (const message of messages) {
    if (message.args.length > 255)
      throw new SpoeEncodeError(`message "${message.name}" has ${message.args.length} arguments; NB-ARGS is one byte`);
    w.string(message.name);
    w.u8(message.args.length);
    for (const [name, value] of message.args) {
      w.string(name);
      writeTypedData(w, value);
    }
  }
}
