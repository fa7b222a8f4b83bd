import { ByteReader } from './byte-reader';
import { ByteWriter } from './byte-writer';
import { SpoeEncodeError } from './errors';
import { encodeFrame, Frame, FrameFlag, FrameType, SpopId, writeFrame } from './frame';
import { readTypedData, SpoeDataType, SpoeEncodable, SpoeValue, TypedData, TypedDataSlot, writeTypedData } from './typed-data';

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

/** One SPOE message of a NOTIFY frame: the `spoe-message` name and its arguments in order. */
export interface SpoeMessage {
  readonly name: string;
  readonly args: readonly SpoeArgument[];
}

/** Decodes the LIST-OF-MESSAGES of a NOTIFY frame. */
export function decodeNotify(frame: Frame): SpoeMessage[] {
  return decodeMessages(frame.buffer, frame.payloadOffset, frame.end);
}

// Decoding is synchronous and never re-entrant: one cursor and one scratch slot serve every NOTIFY.
const messagesReader = new ByteReader(Buffer.alloc(0), 0, 0);
const messagesSlot: TypedDataSlot = { type: SpoeDataType.Null, start: 0, end: 0 };

/** Decodes a LIST-OF-MESSAGES occupying `buffer[start, end)` (a NOTIFY payload, possibly reassembled). */
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
    const args = new Array<SpoeArgument>(count);
    for (let i = 0; i < count; i++) {
      const argName = r.string('argument name');
      const value = readTypedData(r, slot);
      args[i] =
        slot.type === SpoeDataType.String || slot.type === SpoeDataType.Binary
          ? new SpoeArgument(argName, slot.type, value, buffer, slot.start, slot.end)
          : new SpoeArgument(argName, slot.type, value);
    }
    messages.push({ name, args });
  }
  return messages;
}

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
