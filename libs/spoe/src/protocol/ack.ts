import { ByteReader } from './byte-reader';
import { ByteWriter } from './byte-writer';
import { SpoeEncodeError, SpopInvalidFrameError } from './errors';
import { encodeFrame, Frame, FrameFlag, FrameType, payloadReader, SpopId, writeFrame } from './frame';
import { readTypedData, SpoeDataType, SpoeEncodable, SpoeValue, TypedDataSlot, writeTypedData } from './typed-data';

/** ACTION-TYPE values (SPOE.txt 3.4). */
export enum ActionType {
  SetVar = 1,
  UnsetVar = 2,
}

/** VAR-SCOPE values (SPOE.txt 3.4): HAProxy's proc, sess, txn, req and res variable scopes. */
export enum VarScope {
  Process = 0,
  Session = 1,
  Transaction = 2,
  Request = 3,
  Response = 4,
}

/** One action of an ACK frame. HAProxy prefixes `name` with the agent's `var-prefix`. */
export interface SpoeAction {
  readonly type: ActionType;
  readonly scope: VarScope;
  readonly name: string;
  /** The value of a set-var (typed as {@link writeTypedData} does); absent for unset-var. */
  readonly value?: SpoeEncodable;
}

/** An action as decoded from an ACK (by a HAProxy-side client). */
export interface DecodedAction {
  readonly type: ActionType;
  readonly scope: VarScope;
  readonly name: string;
  readonly value?: SpoeValue;
  /** The wire type of `value` (set-var only). */
  readonly dataType?: SpoeDataType;
}

/** Writes a whole ACK frame answering NOTIFY `streamId`/`frameId`. */
export function writeAck(
  w: ByteWriter,
  streamId: SpopId,
  frameId: SpopId,
  actions: readonly SpoeAction[],
  flags: number = FrameFlag.Fin,
): void {
  writeFrame(w, FrameType.Ack, flags, streamId, frameId, writeActions, actions);
}

export function encodeAck(
  maxFrameSize: number,
  streamId: SpopId,
  frameId: SpopId,
  actions: readonly SpoeAction[],
  flags: number = FrameFlag.Fin,
): Buffer {
  return encodeFrame(maxFrameSize, FrameType.Ack, flags, streamId, frameId, writeActions, actions);
}

/** Writes a LIST-OF-ACTIONS. */
export function writeActions(w: ByteWriter, actions: readonly SpoeAction[]): void {
  for (let i = 0; i < actions.length; i++) {
    const action = actions[i];
    if (!(action.scope >= VarScope.Process && action.scope <= VarScope.Response)) {
      throw new SpoeEncodeError(`action "${action.name}": unknown variable scope ${String(action.scope)}`);
    }
    if (action.type === ActionType.SetVar) {
      w.u8(ActionType.SetVar);
      w.u8(3);
      w.u8(action.scope);
      w.string(action.name);
      writeTypedData(w, action.value);
    } else if (action.type === ActionType.UnsetVar) {
      w.u8(ActionType.UnsetVar);
      w.u8(2);
      w.u8(action.scope);
      w.string(action.name);
    } else {
      throw new SpoeEncodeError(`action "${action.name}": unknown action type ${String(action.type)}`);
    }
  }
}

/** Decodes the LIST-OF-ACTIONS of an ACK frame. */
export function decodeAck(frame: Frame): DecodedAction[] {
  const r: ByteReader = payloadReader(frame);
  const slot: TypedDataSlot = { type: SpoeDataType.Null, start: 0, end: 0 };
  const actions: DecodedAction[] = [];
  while (r.pos < r.end) {
    const at = r.pos;
    const type = r.u8('action type');
    const nbArgs = r.u8('action nb-args');
    const scope = r.u8('variable scope');
    if (scope > VarScope.Response)
      throw new SpopInvalidFrameError(`action: unknown variable scope ${scope} at offset ${at}`);
    const name = r.string('variable name');
    if (type === ActionType.SetVar && nbArgs === 3) {
      const value = readTypedData(r, slot);
      actions.push({ type, scope, name, value, dataType: slot.type });
    } else if (type === ActionType.UnsetVar && nbArgs === 2) {
      actions.push({ type, scope, name });
    } else {
      throw new SpopInvalidFrameError(`action: type ${type} with ${nbArgs} arguments at offset ${at}`);
    }
  }
  return actions;
}
