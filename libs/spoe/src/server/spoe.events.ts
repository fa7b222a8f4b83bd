/** Steps of the transport's life, pushed through `SpoeServer.status`. */
export enum SpoeStatus {
  Listening = 'listening',
  /** `close()` was called: no new connections; in-flight NOTIFY are finishing. */
  Draining = 'draining',
  Closed = 'closed',
}

/** A connection event's details. */
export interface SpoeConnectionEvent {
  readonly remoteAddress: string;
}

/** A connection that ended, and why. */
export interface SpoeDisconnectEvent extends SpoeConnectionEvent {
  /** The SPOP status of the AGENT-DISCONNECT sent, or undefined when the socket just closed. */
  readonly status: number | undefined;
  readonly reason: string;
}

/** Events of `SpoeServer.on(event, callback)`. */
export type SpoeEvents = {
  /** A socket error of the listening server (not of a connection). */
  error: (error: Error) => void;
  /** A HAProxy connection completed its HELLO. */
  connection: (event: SpoeConnectionEvent) => void;
  /** A connection closed. */
  disconnect: (event: SpoeDisconnectEvent) => void;
};
