export { SetVar, UnsetVar, checkVariableName, isSpoeAction, isVariableName } from './set-var';
export { ActionType, VarScope, TypedData } from '../protocol';
export type { SpoeAction } from '../protocol';
