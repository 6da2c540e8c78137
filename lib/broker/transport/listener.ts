/**
 * What the TCP and WebSocket listeners share: a listening server that can be paused (its listening
 * socket closed, connections kept) and resumed on the same port, for overload protection.
 */
import type { PausableListener } from "../overload/overload";

/** A Bun server as a listener holds it: stop(false) keeps accepted connections, stop(true) ends them. */
interface StoppableServer {
  stop(closeActiveConnections?: boolean): unknown;
}

/** A listener whose listen() makes `server`; pause, resume and close are the same for every transport. */
export abstract class RestartableListener<S extends StoppableServer> implements PausableListener {
  protected server: S | null = null;

  /** Starts listening (on the port bound before, after a pause); returns the port. */
  abstract listen(): number;

  /** host:port (and path), for logs. */
  abstract describe(): string;

  /** Closes the listening socket; accepted connections go on. */
  pause(): void {
    this.server?.stop(false);
    this.server = null;
  }

  /** Listens again on the same port; false when that fails now. */
  resume(): boolean {
    if (this.server !== null) return true;
    try {
      this.listen();
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the listening socket and every connection it accepted. */
  close(): void {
    this.server?.stop(true);
    this.server = null;
  }
}
