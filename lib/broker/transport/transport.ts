/**
 * The seam between the broker and its listeners: every accepted connection (TCP, TLS, WebSocket)
 * reaches Connection through this small interface, so the protocol logic exists once. A Bun TCP
 * socket satisfies it as it is; a WebSocket gets an adapter (ws.ts).
 */

/** One accepted connection, as Connection sees it. */
export interface Transport {
  /** Writes `length` bytes from `offset` (default: all); returns how many were taken, the rest waits for the drain callback. */
  write(bytes: Uint8Array, offset?: number, length?: number): number;
  /** Ends the connection once what was written has gone out. */
  end(): void;
  /** Half-closes: no more output (TCP: FIN; WebSocket: a Close frame after what was queued); what the peer sends is still read. */
  shutdown(): void;
  /** Closes the connection at once. */
  terminate(): void;
  /** Stops reading from the peer (it sees backpressure). */
  pause(): void;
  /** Reads from the peer again after pause(). */
  resume(): void;
  /** The peer's address, for logs. */
  readonly remoteAddress: string;
  /** 1 while open (as Bun's sockets and WebSocket count). */
  readonly readyState: number;
}
