import { BaseRpcContext } from '@nestjs/microservices';
import type { SpopId } from '../protocol/frame';
import type { AgentHello } from '../protocol/hello';
import type { SpoeArgument, SpoeMessage } from '../protocol/notify';

/** What a connection negotiated in its HELLO handshake. */
export interface SpoeConnectionInfo {
  /** `address:port` of HAProxy's end, or the Unix socket path. */
  readonly remoteAddress: string;
  /** The engine-id HAProxy announced (absent in health checks). */
  readonly engineId: string | undefined;
  /** Version, max-frame-size and capabilities agreed with HAProxy. */
  readonly settings: AgentHello;
}

/** Where one message sits: its NOTIFY frame and its connection. */
export interface SpoeMessageOrigin {
  readonly message: SpoeMessage;
  readonly streamId: SpopId;
  readonly frameId: SpopId;
  readonly connection: SpoeConnectionInfo;
}

/**
 * The `@Ctx()` of an SPOE handler: which NOTIFY the message came in, from which HAProxy, and every argument in order
 * (duplicate names and raw STRING bytes included).
 */
export class SpoeContext extends BaseRpcContext<[SpoeMessageOrigin]> {
  constructor(origin: SpoeMessageOrigin) {
    super([origin]);
  }

  /** The `spoe-message` name. */
  getMessageName(): string {
    return this.args[0].message.name;
  }

  /** The message's arguments in wire order, with their types and raw bytes. */
  getArguments(): readonly SpoeArgument[] {
    return this.args[0].message.args;
  }

  /** STREAM-ID of the NOTIFY (HAProxy's stream id on 2.x; a per-connection SPOP stream on 3.1+). */
  getStreamId(): SpopId {
    return this.args[0].streamId;
  }

  /** FRAME-ID of the NOTIFY. */
  getFrameId(): SpopId {
    return this.args[0].frameId;
  }

  /** The engine-id of the HAProxy SPOE engine, when it sent one. */
  getEngineId(): string | undefined {
    return this.args[0].connection.engineId;
  }

  /** `address:port` of HAProxy's end of the connection (or the Unix socket path). */
  getRemoteAddress(): string {
    return this.args[0].connection.remoteAddress;
  }

  /** Version, max-frame-size and capabilities negotiated on this connection. */
  getSettings(): AgentHello {
    return this.args[0].connection.settings;
  }
}
