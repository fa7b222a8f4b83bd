/**
 * nestjs-spoe: HAProxy SPOE agents as NestJS microservices — the API an application needs.
 *
 * Subpaths: 'nestjs-spoe/health' (terminus: SpoeHealthIndicator), 'nestjs-spoe/testing' (HAProxy's side of SPOP:
 * SpoeClient, for tests and probes), 'nestjs-spoe/protocol' (the SPOP 2.0 codec, for tools built on it),
 * 'nestjs-spoe/metrics' (Prometheus, with prom-client) and 'nestjs-spoe/tracing' (OpenTelemetry, with
 * @opentelemetry/api).
 *
 * Names come from the modules that define them, never through a folder's index: run from source (swc's CommonJS, as
 * `npm start` and the benchmarks do), a module's exports are getters defined in alphabetical order, and V8 turns a
 * module's exports into a slow dictionary when another module defined the same first getter before it. This file
 * runs first, so an index re-exporting a module's first name, or a module whose first name is also this file's first
 * (ActionType was: it stays in 'nestjs-spoe/protocol'), costs a dictionary lookup on every frame. public-api.spec.ts
 * checks the modules a NOTIFY passes through.
 */

// The transport and its module.
export { SpoeServer, SpoeHandlerError } from './server/spoe.server';
export type { SpoeServerStats } from './server/spoe.server';
export { SpoeModule, SPOE_MODULE_OPTIONS } from './module/spoe.module';
export type { SpoeModuleExtras } from './module/spoe.module';

// Options, defaults and limits, status and events.
export { normalizeSpoeOptions, SpoeOptionsError } from './server/spoe.options';
export type { NormalizedSpoeOptions, SpoeErrorVariable, SpoeServerOptions } from './server/spoe.options';
export type { SpoeTlsFailure, SpoeTlsOptions } from './server/spoe.tls';
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
export type {
  SpoeHelloOutcome,
  SpoeMessageOutcome,
  SpoeMessageScope,
  SpoeObserver,
  SpoePauseCause,
} from './server/spoe.observer';
export { formatAddress } from './address';

// What a handler receives.
export { SpoeContext } from './server/spoe.context';
export type { SpoeConnectionInfo, SpoeContextArgs } from './server/spoe.context';
export type { SpoePayload } from './server/dispatcher';
export { currentSpoeContext, spoeLogFields } from './server/spoe.message-context';
export type { SpoeLogFields } from './server/spoe.message-context';
export { SpoeConsoleLogger } from './logging/spoe-console.logger';
export { SpoeArgument, SpoeMessage } from './protocol/notify';
export { SpoeIp } from './protocol/ip';
export { SpoeDataType, TypedData } from './protocol/typed-data';
export type { SpoeEncodable, SpoeValue } from './protocol/typed-data';
export type { AgentHello, SpopCapability } from './protocol/hello';
export type { SpopId } from './protocol/frame';
export { ParseSpoeIpPipe } from './pipes/parse-spoe-ip.pipe';
export type { ParseSpoeIpPipeOptions } from './pipes/parse-spoe-ip.pipe';

// What a handler returns.
export { isSpoeAction, isVariableName, SetVar, UnsetVar } from './actions/set-var';
export { VarScope } from './protocol/ack';
export type { SpoeAction } from './protocol/ack';
export { SpoeFailure } from './server/dispatcher';

// Errors users catch: a value SetVar/TypedData cannot encode; the base class of protocol errors (with their status).
export { SpoeEncodeError, SpopError } from './protocol/errors';
