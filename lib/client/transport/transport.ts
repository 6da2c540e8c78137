/**
 * The client's socket seam: Client speaks to the broker through this small interface, whatever
 * carries the bytes (TCP or TLS on Bun.connect, tcp.ts; a WebSocket, ws.ts).
 */

/** A connection to the broker, as Client sees it. */
export interface ClientTransport {
  /** Writes `length` bytes from `offset`; returns how many were taken, the rest waits for `drain`. */
  write(bytes: Uint8Array, offset: number, length: number): number;
  /** Ends the connection once what was written has gone out. */
  end(): void;
  /** Closes the connection at once. */
  terminate(): void;
}

/** What a transport reports to Client. */
export interface TransportEvents {
  /** Bytes from the broker. */
  data(bytes: Uint8Array): void;
  /** The transport takes more after a partial write. */
  drain(): void;
  /** The connection is closed (once, whatever the cause). */
  close(): void;
  /** Why it is failing (reported before close). */
  error(e: Error): void;
}
