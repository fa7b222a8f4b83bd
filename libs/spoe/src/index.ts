/**
 * nestjs-spoe: HAProxy SPOE agents as NestJS microservices — the API an application needs.
 *
 * Subpaths: 'nestjs-spoe/health' (terminus: SpoeHealthIndicator), 'nestjs-spoe/testing' (HAProxy's side of SPOP:
 * SpoeClient, for tests and probes), 'nestjs-spoe/protocol' (the SPOP 2.0 codec, for tools built on it).
 */

// The transport and its module.
export { SpoeServer, SpoeHandlerError } from './server/spoe.server';
export type { SpoeServerStats } from './server/spoe.server';
export { SpoeModule, SPOE_MODULE_OPTIONS } from './module/spoe.module';
export type { SpoeModuleExtras } from './module/spoe.module';

// Options, defaults and limits, status and events.
export { normalizeSpoeOptions, SpoeOptionsError } from './server/spoe.options';
export type { NormalizedSpoeOptions, SpoeErrorVariable, SpoeServerOptions } from './server/spoe.options';
export {
  HAPROXY_MAX_FRAME_SIZE,
  MAX_TIMEOUT_MS,
  SPOE_CLIENT_DEFAULTS,
  SPOE_DEFAULTS,
  SPOE_TRANSPORT,
} from './spoe.constants';
export { SpoeStatus } from './server/spoe.events';
export type { SpoeConnectionEvent, SpoeDisconnectEvent, SpoeEvents } from './server/spoe.events';
export { SpopStatus, spopStatusReason } from './protocol/status';
export { formatAddress } from './address';

// What a handler receives.
export { SpoeContext } from './server/spoe.context';
export type { SpoeConnectionInfo, SpoeContextArgs } from './server/spoe.context';
export type { SpoePayload } from './server/dispatcher';
export { SpoeArgument, SpoeMessage } from './protocol/notify';
export { SpoeIp } from './protocol/ip';
export { SpoeDataType, TypedData } from './protocol/typed-data';
export type { SpoeEncodable, SpoeValue } from './protocol/typed-data';
export type { AgentHello, SpopCapability } from './protocol/hello';
export type { SpopId } from './protocol/frame';
export { ParseSpoeIpPipe } from './pipes';
export type { ParseSpoeIpPipeOptions } from './pipes';

// What a handler returns.
export { isSpoeAction, isVariableName, SetVar, UnsetVar } from './actions';
export { ActionType, VarScope } from './protocol/ack';
export type { SpoeAction } from './protocol/ack';
export { SpoeFailure } from './server/dispatcher';

// Errors users catch: a value SetVar/TypedData cannot encode; the base class of protocol errors (with their status).
export { SpoeEncodeError, SpopError } from './protocol/errors';
