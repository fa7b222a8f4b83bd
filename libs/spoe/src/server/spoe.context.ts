import { BaseRpcContext } from '@nestjs/microservices';
import type { PeerCertificate } from 'node:tls';
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
  /**
   * The certificate HAProxy presented, verified against the server's `tls.ca` (mutual TLS); undefined over plain TCP
   * and when HAProxy presented none.
   */
  readonly peerCertificate?: PeerCertificate;
}

/** What a context carries: the message, the STREAM-ID and FRAME-ID of its NOTIFY, and its connection. */
export type SpoeContextArgs = [message: SpoeMessage, streamId: SpopId, frameId: SpopId, connection: SpoeConnectionInfo];

/**
 * The `@Ctx()` of an SPOE handler: which NOTIFY the message came in, from which HAProxy, and every argument in order
 * (duplicate names and raw STRING bytes included).
 */
export class SpoeContext extends BaseRpcContext<SpoeContextArgs> {
  constructor(args: SpoeContextArgs) {
    super(args);
  }

  /** The `spoe-message` name. */
  getMessageName(): string {
    return this.args[0].name;
  }

  /** The message's arguments in wire order, with their types and raw bytes. */
  getArguments(): readonly SpoeArgument[] {
    return this.args[0].args;
  }

  /** STREAM-ID of the NOTIFY (HAProxy's stream id on 2.x; a per-connection SPOP stream on 3.1+). */
  getStreamId(): SpopId {
    return this.args[1];
  }

  /** FRAME-ID of the NOTIFY. */
  getFrameId(): SpopId {
    return this.args[2];
  }

  /** The engine-id of the HAProxy SPOE engine, when it sent one. */
  getEngineId(): string | undefined {
    return this.args[3].engineId;
  }

  /** `address:port` of HAProxy's end of the connection (or the Unix socket path). */
  getRemoteAddress(): string {
    return this.args[3].remoteAddress;
  }

  /** Version, max-frame-size and capabilities negotiated on this connection. */
  getSettings(): AgentHello {
    return this.args[3].settings;
  }

  /**
   * The verified client certificate of the HAProxy on this connection (mutual TLS: `tls.requestCert` with `tls.ca`),
   * e.g. `getPeerCertificate()?.subject.CN`; undefined over plain TCP or without one.
   */
  getPeerCertificate(): PeerCertificate | undefined {
    return this.args[3].peerCertificate;
  }
}
