import { ByteReader } from './byte-reader';
import { ByteWriter } from './byte-writer';
import { SpoeEncodeError } from './errors';
import { encodeFrame, Frame, FrameFlag, FrameType, SpopId, writeFrame } from './frame';
import { scanTypedData, SpoeDataType, SpoeEncodable, SpoeValue, TypedData, TypedDataSlot, typedValue, writeTypedData } from './typed-data';

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

/**
 * One SPOE message of a NOTIFY frame: the `spoe-message` name and its arguments in order. The frame was checked whole
 * when it was read; argument values are decoded when first read (a handler that reads one argument of four pays for
 * one), then kept.
 */
export class SpoeMessage {
  /** Values decoded so far, by index; undefined where not yet (no SpoeValue is undefined). */
  private decoded: Array<SpoeValue | undefined> | undefined;
  private argumentList: readonly SpoeArgument[] | undefined;

  /** @internal Built by {@link decodeMessages}: `layout` holds type, start and end of each argument's value. */
  constructor(
    /** The `spoe-message` name. */
    readonly name: string,
    private readonly buffer: Buffer,
    private readonly names: readonly string[],
    private readonly layout: readonly number[],
  ) {}

  /** How many arguments the message carries. */
  get size(): number {
    return this.names.length;
  }

  /** The arguments in wire order, with their types and raw bytes (duplicate names included). */
  get args(): readonly SpoeArgument[] {
    if (this.argumentList) return this.argumentList;
    const list = new Array<SpoeArgument>(this.names.length);
    for (let i = 0; i < list.length; i++) {
      const type = this.layout[3 * i] as SpoeDataType;
      const value = this.valueAt(i);
      list[i] =
        type === SpoeDataType.String || type === SpoeDataType.Binary
          ? new SpoeArgument(this.names[i], type, value, this.buffer, this.layout[3 * i + 1], this.layout[3 * i + 2])
          : new SpoeArgument(this.names[i], type, value);
    }
    return (this.argumentList = list);
  }

  /** The value of the first argument called `name`; undefined when the message has none. */
  get(name: string): SpoeValue | undefined {
    const names = this.names;
    for (let i = 0; i < names.length; i++) if (names[i] === name) return this.valueAt(i);
    return undefined;
  }

  /** The name of argument `index` (wire order). */
  nameAt(index: number): string {
    return this.names[index];
  }

  /** The value of argument `index` (wire order). */
  valueAt(index: number): SpoeValue {
    const decoded = (this.decoded ??= new Array<SpoeValue | undefined>(this.names.length));
    let value = decoded[index];
    if (value === undefined) {
      const at = 3 * index;
      value = decoded[index] = typedValue(this.buffer, this.layout[at] as SpoeDataType, this.layout[at + 1], this.layout[at + 2]);
    }
    return value;
  }
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
 * is checked here, so a malformed frame fails at once; values are decoded later, when read (see {@link SpoeMessage}).
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
    const names = new Array<string>(count);
    const layout = new Array<number>(3 * count);
    for (let i = 0; i < count; i++) {
      names[i] = r.string('argument name');
      scanTypedData(r, slot);
      layout[3 * i] = slot.type;
      layout[3 * i + 1] = slot.start;
      layout[3 * i + 2] = slot.end;
    }
    messages.push(new SpoeMessage(name, buffer, names, layout));
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
export function writeNotify(w: ByteWriter, streamId: SpopId, frameId: SpopId, messages: readonly NotifyMessage[], flags: number = FrameFlag.Fin): void {
  writeFrame(w, FrameType.Notify, flags, streamId, frameId, writeMessages, messages);
}

export function encodeNotify(maxFrameSize: number, streamId: SpopId, frameId: SpopId, messages: readonly NotifyMessage[], flags: number = FrameFlag.Fin): Buffer {
  return encodeFrame(maxFrameSize, FrameType.Notify, flags, streamId, frameId, writeMessages, messages);
}

/** Writes a LIST-OF-MESSAGES (a NOTIFY payload). */
export function writeMessages(w: ByteWriter, messages: readonly NotifyMessage[]): void {
  for (const message of messages) {
    if (message.args.length > 255) throw new SpoeEncodeError(`message "${message.name}" has ${message.args.length} arguments; NB-ARGS is one byte`);
    w.string(message.name);
    w.u8(message.args.length);
    for (const [name, value] of message.args) {
      w.string(name);
      writeTypedData(w, value);
    }
  }
}
