export { SetVar, UnsetVar, isSpoeAction, isVariableName } from './set-var';
