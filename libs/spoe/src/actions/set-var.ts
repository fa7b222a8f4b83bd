import { ActionType, SpoeAction, VarScope } from '../protocol/ack';
import { SpoeEncodeError } from '../protocol/errors';
import { inferDataType, SpoeEncodable } from '../protocol/typed-data';

/** HAProxy accepts letters, digits, '.' and '_' in variable names; anything else would be silently dropped. */
function checkVariableName(name: string): string {
  if (typeof name !== 'string' || !isVariableName(name)) {
    throw new SpoeEncodeError(
      `invalid HAProxy variable name ${JSON.stringify(name)}: use letters, digits, '.' and '_'`,
    );
  }
  return name;
}

/**
 * HAProxy's rule for variable names: letters, digits, '.' and '_', at least one. (A loop rather than
 * /^[A-Za-z0-9._]+$/: it runs for every action a handler builds.)
 */
export function isVariableName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x5f))
      return false;
  }
  return true;
}

/**
 * set-var: HAProxy sets `<scope>.<var-prefix>.<name>` to `value`. The wire type is inferred (see `inferDataType`) or
 * chosen with `TypedData`, and checked here, so a bad value fails inside the handler that built it.
 *
 * ```ts
 * return [SetVar.sess('ip_score', 42), SetVar.txn('reason', 'blocklist')];
 * ```
 */
export class SetVar implements SpoeAction {
  readonly type = ActionType.SetVar;

  constructor(
    readonly scope: VarScope,
    readonly name: string,
    readonly value: SpoeEncodable,
  ) {
    checkVariableName(name);
    inferDataType(value);
  }

  /** A variable of the `proc` scope (shared by the whole HAProxy process). */
  static proc(name: string, value: SpoeEncodable): SetVar {
    return new SetVar(VarScope.Process, name, value);
  }
  /** A variable of the `sess` scope (the client session). */
  static sess(name: string, value: SpoeEncodable): SetVar {
    return new SetVar(VarScope.Session, name, value);
  }
  /** A variable of the `txn` scope (the HTTP transaction). */
  static txn(name: string, value: SpoeEncodable): SetVar {
    return new SetVar(VarScope.Transaction, name, value);
  }
  /** A variable of the `req` scope (request processing only). */
  static req(name: string, value: SpoeEncodable): SetVar {
    return new SetVar(VarScope.Request, name, value);
  }
  /** A variable of the `res` scope (response processing only). */
  static res(name: string, value: SpoeEncodable): SetVar {
    return new SetVar(VarScope.Response, name, value);
  }
}

/** unset-var: HAProxy removes `<scope>.<var-prefix>.<name>`. */
export class UnsetVar implements SpoeAction {
  readonly type = ActionType.UnsetVar;

  constructor(
    readonly scope: VarScope,
    readonly name: string,
  ) {
    checkVariableName(name);
  }

  static proc(name: string): UnsetVar {
    return new UnsetVar(VarScope.Process, name);
  }
  static sess(name: string): UnsetVar {
    return new UnsetVar(VarScope.Session, name);
  }
  static txn(name: string): UnsetVar {
    return new UnsetVar(VarScope.Transaction, name);
  }
  static req(name: string): UnsetVar {
    return new UnsetVar(VarScope.Request, name);
  }
  static res(name: string): UnsetVar {
    return new UnsetVar(VarScope.Response, name);
  }
}

/** True for anything shaped like an action (built with SetVar/UnsetVar or by hand). */
export function isSpoeAction(value: unknown): value is SpoeAction {
  if (value instanceof SetVar || value instanceof UnsetVar) return true;
  if (typeof value !== 'object' || value === null) return false;
  const { type, scope, name } = value as Partial<SpoeAction>;
  return (
    (type === ActionType.SetVar || type === ActionType.UnsetVar) &&
    typeof scope === 'number' &&
    typeof name === 'string'
  );
}
