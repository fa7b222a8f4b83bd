// The public API of nestjs-spoe. The HAProxy-side test client is in 'nestjs-spoe/testing'.
export * from './protocol';
export { SetVar, UnsetVar, isSpoeAction, isVariableName } from './actions';
export { SpoeServer, SpoeHandlerError } from './server/spoe.server';
export type { SpoeServerStats } from './server/spoe.server';
export { SpoeContext } from './server/spoe.context';
export type { SpoeConnectionInfo, SpoeContextArgs } from './server/spoe.context';
export { SpoeStatus } from './server/spoe.events';
export type { SpoeEvents, SpoeConnectionEvent, SpoeDisconnectEvent } from './server/spoe.events';
export { SpoeOptionsError, normalizeSpoeOptions } from './server/spoe.options';
export type { SpoeServerOptions, SpoeErrorVariable, NormalizedSpoeOptions } from './server/spoe.options';
export { SPOE_DEFAULTS, SPOE_CLIENT_DEFAULTS, SPOE_DEADLINE_EXTRA, SPOE_TRANSPORT, HAPROXY_MAX_FRAME_SIZE, MAX_TIMEOUT_MS } from './spoe.constants';
export { formatAddress } from './address';
export { SpoeFailure } from './server/dispatcher';
export type { SpoePayload } from './server/dispatcher';
export { SpoeModule, SPOE_MODULE_OPTIONS } from './module/spoe.module';
export { ParseSpoeIpPipe } from './pipes';
export type { ParseSpoeIpPipeOptions } from './pipes';
