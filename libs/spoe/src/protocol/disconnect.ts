import { ByteWriter } from './byte-writer';
import { encodeFrame, Frame, FrameFlag, FrameType, payloadReader, writeFrame } from './frame';
import { MIN_FRAME_SIZE } from './hello';
import { readKvList, writeKvList } from './kv-list';
import { SpopInvalidFrameError } from './errors';
import { SpoeDataType, SpoeEncodable, TypedData } from './typed-data';

/** The payload of HAPROXY-DISCONNECT and AGENT-DISCONNECT (SPOE.txt 3.2.8, 3.2.9). */
export interface Disconnect {
  readonly status: number;
  readonly message: string;
}

/** Long enough for any reason, short enough that a DISCONNECT always fits the 256-byte minimum frame size. */
const MAX_MESSAGE_BYTES = 200;

export function writeAgentDisconnect(w: ByteWriter, disconnect: Disconnect): void {
  writeFrame(w, FrameType.AgentDisconnect, FrameFlag.Fin, 0, 0, writeKvList, disconnectItems(disconnect));
}

export function encodeAgentDisconnect(disconnect: Disconnect): Buffer {
  return encodeFrame(
    MIN_FRAME_SIZE,
    FrameType.AgentDisconnect,
    FrameFlag.Fin,
    0,
    0,
    writeKvList,
    disconnectItems(disconnect),
  );
}

export function encodeHaproxyDisconnect(disconnect: Disconnect): Buffer {
  return encodeFrame(
    MIN_FRAME_SIZE,
    FrameType.HaproxyDisconnect,
    FrameFlag.Fin,
    0,
    0,
    writeKvList,
    disconnectItems(disconnect),
  );
}

/** Decodes either DISCONNECT frame. Both items are mandatory. */
export function decodeDisconnect(frame: Frame): Disconnect {
  const items = readKvList(payloadReader(frame), 'DISCONNECT');
  const status = items.get('status-code');
  const message = items.get('message');
  if (!status || status.type !== SpoeDataType.Uint32)
    throw new SpopInvalidFrameError('DISCONNECT: status-code (UINT32) not found');
  if (!message || message.type !== SpoeDataType.String)
    throw new SpopInvalidFrameError('DISCONNECT: message (STRING) not found');
  return { status: status.value as number, message: message.value as string };
}

function disconnectItems(disconnect: Disconnect): Array<[string, SpoeEncodable]> {
  let message = disconnect.message;
  if (Buffer.byteLength(message) > MAX_MESSAGE_BYTES) {
    message = Buffer.from(message)
      .subarray(0, MAX_MESSAGE_BYTES)
      .toString('utf8')
      .replace(/\uFFFD$/, '');
  }
  return [
    ['status-code', TypedData.uint32(disconnect.status)],
    ['message', message],
  ];
}
