/**
 * The client's WebSocket transport (MQTT 5.0 section 6) on the standard WebSocket class: Bun's
 * built-in one, and a browser's. Nothing here uses a Bun-only API, but TLS options, which only
 * Bun's constructor takes, are passed when given (Client's nextTurn and timers keep to the
 * standard too, and the codec falls back from Bun.allocUnsafe and Buffer where there are none), so
 * Client runs in a browser: the broker's dashboard uses it.
 *
 * - It offers the subprotocol "mqtt" [MQTT-6.0.0-3]; MQTT travels in binary messages, and a text
 *   message from the broker closes the connection [MQTT-6.0.0-1]. Messages need not line up with
 *   packets [MQTT-6.0.0-2]: Client's Framer joins and splits them, as TCP chunks.
 * - A standard WebSocket has no partial writes and no drain event: it queues everything. So
 *   write() takes nothing while `bufferedAmount` is above HIGH_WATER, and a timer reports drain
 *   once it is below again; Client keeps the rest, exactly as with a TCP socket.
 */
import type { ClientTransport, TransportEvents } from "./transport";

/** Bytes the WebSocket may hold unsent before writes stop taking more. */
const HIGH_WATER = 512 * 1024;
/** How often a blocked transport checks whether the WebSocket's buffer has drained. */
const DRAIN_POLL_MS = 2;
/** Close code for a text message: 1003, unsupported data. */
const CLOSE_UNSUPPORTED_DATA = 1003;

/** TLS options Bun's WebSocket constructor takes (ignored by the standard one, which is never given them). */
type WebSocketTls = Record<string, unknown>;

class WsClientTransport implements ClientTransport {
  private drainTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly ws: WebSocket,
    private readonly events: TransportEvents,
  ) {}

  /** Sends the bytes as one binary message; takes none while the WebSocket holds HIGH_WATER unsent. */
  write(bytes: Uint8Array, offset: number, length: number): number {
    if (this.ws.readyState !== WebSocket.OPEN) return 0;
    if (this.ws.bufferedAmount > HIGH_WATER) {
      this.watchDrain();
      return 0;
    }
    this.ws.send(bytes.slice(offset, offset + length)); // a copy: the caller reuses its buffer
    return length;
  }

  private watchDrain(): void {
    if (this.drainTimer !== null) return;
    const poll = () => {
      this.drainTimer = null;
      if (this.ws.readyState !== WebSocket.OPEN) return;
      if (this.ws.bufferedAmount > HIGH_WATER) this.drainTimer = setTimeout(poll, DRAIN_POLL_MS);
      else this.events.drain();
    };
    this.drainTimer = setTimeout(poll, DRAIN_POLL_MS);
  }

  /** Closes with a Close frame. */
  end(): void {
    this.ws.close(1000);
  }

  /** Closes at once where the WebSocket can (Bun's terminate()), else with a Close frame. */
  terminate(): void {
    const ws = this.ws as WebSocket & { terminate?: () => void };
    if (typeof ws.terminate === "function") ws.terminate();
    else ws.close();
  }

  /** Forgets the drain timer once closed. */
  closed(): void {
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.drainTimer = null;
  }
}

/** Opens a WebSocket to `url` with subprotocol mqtt; resolves once it is open, rejects when it cannot be. */
export function connectWebSocket(url: string, tls: WebSocketTls | undefined, events: TransportEvents): Promise<ClientTransport> {
  const { promise, resolve, reject } = Promise.withResolvers<ClientTransport>();
  const protocols = ["mqtt"]; // [MQTT-6.0.0-3]
  let ws: WebSocket;
  try {
    ws = tls === undefined ? new WebSocket(url, protocols) : new WebSocket(url, { protocols, tls } as unknown as string[]);
  } catch (e) {
    return Promise.reject(e);
  }
  ws.binaryType = "arraybuffer";
  const transport = new WsClientTransport(ws, events);
  let opened = false;
  let failure: Error | null = null;
  ws.onopen = () => {
    opened = true;
    resolve(transport);
  };
  ws.onmessage = (event: MessageEvent) => {
    if (typeof event.data === "string") {
      events.error(new Error("the broker sent a WebSocket text message (MQTT travels in binary messages only)"));
      ws.close(CLOSE_UNSUPPORTED_DATA); // [MQTT-6.0.0-1]
      return;
    }
    events.data(new Uint8Array(event.data as ArrayBuffer));
  };
  ws.onerror = (event: Event) => {
    failure = new Error((event as ErrorEvent).message || `WebSocket error on ${url}`);
    if (opened) events.error(failure);
  };
  ws.onclose = (event: CloseEvent) => {
    transport.closed();
    if (opened) events.close();
    else reject(failure ?? new Error(`WebSocket to ${url} closed before it opened (${event.code}${event.reason ? ` ${event.reason}` : ""})`));
  };
  return promise;
}
