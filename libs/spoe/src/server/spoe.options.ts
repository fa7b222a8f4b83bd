import { VarScope } from '../protocol/ack';
import { MIN_FRAME_SIZE, SpopCapability } from '../protocol/hello';
import { isVariableName } from '../actions/set-var';
import { MAX_TIMEOUT_MS, SPOE_DEFAULTS } from '../spoe.constants';
import { checkTlsOptions, SpoeTlsOptions } from './spoe.tls';

/** Where to report a handler failure to HAProxy: a variable set in the ACK of the NOTIFY that failed. */
export interface SpoeErrorVariable {
  /** Scope of the variable; HAProxy reads it as `var(<scope>.<var-prefix>.<name>)`. */
  readonly scope: VarScope;
  readonly name: string;
}

/**
 * Options of the SPOE transport. Every option is optional; defaults live in {@link SPOE_DEFAULTS}.
 */
export interface SpoeServerOptions {
  /** Address to listen on. Default `0.0.0.0`. Ignored when `path` is set. */
  host?: string;
  /** TCP port (0 picks a free one; see `SpoeServer.address`). Default 12345. */
  port?: number;
  /** Unix socket path; when set, the transport listens there instead of TCP. */
  path?: string;
  /** The agent's max-frame-size (≥ 256); the frame size used is the smaller of this and HAProxy's. Default 16380. */
  maxFrameSize?: number;
  /**
   * Connections open at once, those still in their HELLO and health checks included; beyond it a new connection gets
   * AGENT-DISCONNECT status 13 (resource allocation error) and is closed. Default 4096.
   */
  maxConnections?: number;
  /** NOTIFY frames handled at once per connection; beyond it the socket is not read until some finish. Default 64. */
  maxInFlightPerConnection?: number;
  /**
   * Bytes of NOTIFY (their payloads) whose handlers run, across all connections of the server; beyond it no connection
   * reads until ACKs bring it below. Default 32 MiB.
   */
  maxInFlightBytes?: number;
  /** Deadline of each message handler in ms; per message: `@MessagePattern(name, { deadline: ms })`. Default 1000. */
  handlerDeadlineMs?: number;
  /** Close connections that do not complete the HELLO within this many ms. Default 5000. */
  helloTimeoutMs?: number;
  /** Close connections idle (nothing in flight, no frame) for this many ms; 0 never. Default 300000. */
  idleTimeoutMs?: number;
  /** On `close()`, how long in-flight NOTIFY may still finish, in ms. Default 5000. */
  drainTimeoutMs?: number;
  /**
   * After sending AGENT-DISCONNECT, how long to wait for HAProxy to close before destroying the socket. Default 1000.
   */
  disconnectLingerMs?: number;
  /** Bound, in bytes, on a NOTIFY reassembled from fragments. Default 1 MiB. */
  maxFragmentedPayload?: number;
  /**
   * Bytes of ACKs queued unsent on a connection beyond which its NOTIFY are not read until the peer reads. Default 1
   * MiB.
   */
  maxPendingWriteBytes?: number;
  /** Announce `pipelining` (when HAProxy does). Default true. */
  pipelining?: boolean;
  /**
   * Announce `async` (when HAProxy 2.x does; ACKs still go back on the NOTIFY's own connection). Default false: with
   * async, a soft-stopping HAProxy 2.6 may disconnect while NOTIFY wait for their ACK and fail those streams.
   */
  async?: boolean;
  /** Announce `fragmentation` (when HAProxy does) and reassemble fragmented NOTIFY. Default true. */
  fragmentation?: boolean;
  /**
   * When a handler throws, errors or passes its deadline, its NOTIFY is acknowledged at once with the actions of the
   * messages that succeeded plus this variable, set to INT32 1 (failure) or 2 (deadline passed). Default: not set.
   */
  errorVariable?: SpoeErrorVariable;
  /**
   * Run each message's handlers in an AsyncLocalStorage store of its SpoeContext: `currentSpoeContext()` reads it
   * from injected services, `spoeLogFields()` puts it in log lines (with pino's `mixin` or SpoeConsoleLogger), and the
   * transport's own lines about a message carry it too. Default false: before Node 24, an AsyncLocalStorage in use
   * adds a promise hook to every Promise of the process.
   */
  messageContext?: boolean;
  /**
   * Serve SPOP over TLS (node:tls options: `cert` and `key`, `ca` with `requestCert: true` for mutual TLS, `minVersion`
   * …). The TLS handshake must end within `helloTimeoutMs`. Certificates reload without a restart:
   * `SpoeServer.reloadTls()`. Default: plain TCP.
   */
  tls?: SpoeTlsOptions;
}

/** Options with every default applied and every value checked. */
export interface NormalizedSpoeOptions {
  readonly host: string;
  readonly port: number;
  readonly path: string | undefined;
  readonly maxFrameSize: number;
  readonly maxConnections: number;
  readonly maxInFlightPerConnection: number;
  readonly maxInFlightBytes: number;
  readonly handlerDeadlineMs: number;
  readonly helloTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly drainTimeoutMs: number;
  readonly disconnectLingerMs: number;
  readonly maxFragmentedPayload: number;
  readonly maxPendingWriteBytes: number;
  readonly capabilities: readonly SpopCapability[];
  readonly errorVariable: SpoeErrorVariable | undefined;
  readonly messageContext: boolean;
  readonly tls: Readonly<SpoeTlsOptions> | undefined;
}

/** Thrown at construction for options that cannot work; the message names the option and what it accepts. */
export class SpoeOptionsError extends TypeError {
  constructor(message: string) {
    super(`nestjs-spoe: ${message}`);
    this.name = 'SpoeOptionsError';
  }
}

export function normalizeSpoeOptions(options: SpoeServerOptions = {}): NormalizedSpoeOptions {
  const int = (name: keyof SpoeServerOptions, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const value = options[name] ?? SPOE_DEFAULTS[name as keyof typeof SPOE_DEFAULTS];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new SpoeOptionsError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
    }
    return value;
  };
  const flag = (name: 'pipelining' | 'async' | 'fragmentation' | 'messageContext'): boolean => {
    const value = options[name] ?? SPOE_DEFAULTS[name];
    if (typeof value !== 'boolean') throw new SpoeOptionsError(`${name} must be a boolean, got ${String(value)}`);
    return value;
  };
  if (options.path !== undefined && (typeof options.path !== 'string' || options.path.length === 0)) {
    throw new SpoeOptionsError(`path must be a non-empty string, got ${String(options.path)}`);
  }
  const host = options.host ?? SPOE_DEFAULTS.host;
  if (typeof host !== 'string' || host.length === 0)
    throw new SpoeOptionsError(`host must be a non-empty string, got ${String(host)}`);
  const errorVariable = options.errorVariable;
  if (errorVariable !== undefined) {
    if (!(errorVariable.scope >= VarScope.Process && errorVariable.scope <= VarScope.Response)) {
      throw new SpoeOptionsError(`errorVariable.scope must be a VarScope, got ${String(errorVariable.scope)}`);
    }
    if (typeof errorVariable.name !== 'string' || !isVariableName(errorVariable.name)) {
      throw new SpoeOptionsError(
        `errorVariable.name must be a HAProxy variable name ([A-Za-z0-9._]+), got ${JSON.stringify(errorVariable.name)}`,
      );
    }
  }
  let tls: Readonly<SpoeTlsOptions> | undefined;
  try {
    tls = options.tls === undefined ? undefined : checkTlsOptions(options.tls, 'tls');
  } catch (error) {
    throw new SpoeOptionsError((error as Error).message);
  }
  const capabilities: SpopCapability[] = [];
  if (flag('pipelining')) capabilities.push('pipelining');
  if (flag('async')) capabilities.push('async');
  if (flag('fragmentation')) capabilities.push('fragmentation');
  return {
    host,
    port: int('port', 0, 65535),
    path: options.path,
    maxFrameSize: int('maxFrameSize', MIN_FRAME_SIZE, 0xffffffff),
    maxConnections: int('maxConnections', 1),
    maxInFlightPerConnection: int('maxInFlightPerConnection', 1),
    maxInFlightBytes: int('maxInFlightBytes', 1),
    handlerDeadlineMs: int('handlerDeadlineMs', 1, MAX_TIMEOUT_MS),
    helloTimeoutMs: int('helloTimeoutMs', 1, MAX_TIMEOUT_MS),
    idleTimeoutMs: int('idleTimeoutMs', 0, MAX_TIMEOUT_MS),
    drainTimeoutMs: int('drainTimeoutMs', 0, MAX_TIMEOUT_MS),
    disconnectLingerMs: int('disconnectLingerMs', 0, MAX_TIMEOUT_MS),
    maxFragmentedPayload: int('maxFragmentedPayload', MIN_FRAME_SIZE),
    maxPendingWriteBytes: int('maxPendingWriteBytes', MIN_FRAME_SIZE),
    capabilities,
    errorVariable,
    messageContext: flag('messageContext'),
    tls,
  };
}
