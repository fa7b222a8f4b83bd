export * from './spoe-client';
// What SpoeClient's methods return, for users who name it.
export type { DecodedAction } from '../protocol/ack';
export type { AgentHello } from '../protocol/hello';
export type { Disconnect } from '../protocol/disconnect';
