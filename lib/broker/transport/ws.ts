/**
 * A WebSocket (or, with TLS, wss) listener on Bun.serve, after MQTT 5.0 section 6. Each upgraded
 * WebSocket becomes a Connection through WsTransport, so everything after the transport (framing,
 * handlers, limits, auth, keep alive) is the TCP code unchanged.
 *
 * - The upgrade must offer the subprotocol "mqtt" (or "mqttv3.1", which older clients send);
 *   without it the answer is HTTP 400. The 101 names the one selected [MQTT-6.0.0-4]. A path other
 *   than the listener's (default "/mqtt"; "*" accepts any) gets 404.
 * - Only binary frames carry MQTT: a text frame closes the connection [MQTT-6.0.0-1]. Frames and
 *   packets need not line up [MQTT-6.0.0-2]: every frame goes to the connection's Framer, as a TCP
 *   chunk does.
 * - Backpressure. Bun's `send` returns the bytes it wrote, -1 when it had to keep (some of) them in
 *   its own buffer, 0 when it dropped them (its buffer was over `backpressureLimit`). Measured on
 *   Bun 1.4.5, what -1 returns for *is* sent later, so -1 counts as taken, and WsTransport then
 *   takes nothing more until `drain`: the rest stays in the connection's own buffer, bounded by
 *   maxOutputBytes as for TCP, and Bun's buffer holds at most what one flush wrote. 0 takes nothing.
 * - Admission is TCP's: the same socket count, per-listener connection-rate bucket and
 *   Overload.admit(); a refused WebSocket gets its CONNACK 0x97 through the same Refusal.
 * - No idle timeout or pings of Bun's own (the MQTT keep alive decides, as on TCP); no compression.
 * - A listener on the HTTP endpoint's host and port is served by the endpoint's Bun.serve (`shared`):
 *   its upgrades and the dashboard, /metrics and the health checks on one port.
 */
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import { Connection } from "../connection";
import type { Listener } from "../options";
import { TokenBucket } from "../overload/token-bucket";
import { Refusal } from "../overload/refusal";
import type { Overload } from "../overload/overload";
import { RestartableListener } from "./listener";
import type { TcpHost } from "./tcp";
import type { Transport } from "./transport";

/** The subprotocols accepted, in order of preference [MQTT-6.0.0-4]. */
export const MQTT_SUBPROTOCOLS = ["mqtt", "mqttv3.1"] as const;

/** Close code for a text frame: 1003, unsupported data (RFC 6455 section 7.4.1). */
const CLOSE_UNSUPPORTED_DATA = 1003;

/** What one upgraded WebSocket carries: its transport, and its connection or refusal once open. */
export interface WsData {
  transport: WsTransport | null;
  state: Connection | Refusal | null;
  /** The peer's address as logs show it (X-Forwarded-For with trustProxy). */
  remoteAddress: string;
  /** The subprotocol selected. */
  protocol: string;
}

/** A WebSocket as a Transport: binary messages out, backpressure as described at the top. */
export class WsTransport implements Transport {
  /** True after Bun kept (-1) or dropped (0) a send: nothing more is sent until drain. */
  private blocked = false;
  /** The close code end() sends. */
  closeCode = 1000;

  constructor(
    private readonly ws: ServerWebSocket<WsData>,
    /** The peer's address, for logs. */
    readonly remoteAddress: string,
  ) {}

  /** Sends the bytes as one binary message; see the top of the file for what it returns. */
  write(bytes: Uint8Array, offset = 0, length = bytes.length - offset): number {
    if (this.blocked || this.ws.readyState !== 1) return 0;
    const status = this.ws.sendBinary(offset === 0 && length === bytes.length ? bytes : bytes.subarray(offset, offset + length));
    if (status > 0) return length;
    this.blocked = true;
    return status === -1 ? length : 0; // -1: Bun keeps them and sends them; 0: dropped, still ours
  }

  /** Bun's buffer drained: sends may go on. */
  drained(): void {
    this.blocked = false;
  }

  /** Closes with a Close frame once what was sent has gone out. */
  end(): void {
    if (this.ws.readyState === 1) this.ws.close(this.closeCode);
  }

  /** A Close frame after what was sent; what the peer sends until it closes too is still read. */
  shutdown(): void {
    this.end();
  }

  /** Closes at once, without a Close frame. */
  terminate(): void {
    this.ws.terminate();
  }

  /** Stops reading the socket. */
  pause(): void {
    this.ws.pause();
  }

  /** Reads the socket again. */
  resume(): void {
    this.ws.resume();
  }

  /** 1 while open. */
  get readyState(): number {
    return this.ws.readyState;
  }

  /** Bytes Bun holds for this WebSocket, not yet taken by the kernel. */
  get buffered(): number {
    return this.ws.getBufferedAmount();
  }
}

/** The subprotocol to select from a Sec-WebSocket-Protocol header, or null when it offers no MQTT one. */
export function selectSubprotocol(header: string | null): string | null {
  if (header === null) return null;
  const offered = header.split(",").map((p) => p.trim());
  for (const p of MQTT_SUBPROTOCOLS) if (offered.includes(p)) return p;
  return null;
}

/** The address logs show for a request: the last X-Forwarded-For entry (the one our proxy added) with trustProxy, else the peer's. */
function remoteAddressOf(req: Request, server: Server<WsData>, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = req.headers.get("x-forwarded-for");
    const last = forwarded?.split(",").at(-1)?.trim();
    if (last) return last;
  }
  return server.requestIP(req)?.address ?? "?";
}

/** A WebSocket listener: one Bun.serve, with its connection-rate bucket. */
export class WsListener extends RestartableListener<Server<WsData>> {
  private readonly bucket: TokenBucket | null;
  /** The port bound (the chosen one when the address asked for 0); re-used on resume. */
  port: number;
  /** Whether upgrades are taken (shared: from listen() until pause() or close()). */
  private accepting: boolean;

  constructor(
    readonly address: Listener,
    maxConnectionRate: number,
    /** Largest packet accepted: a WebSocket message may be that large, and hold another besides. */
    private readonly maxPacketSize: number,
    /** Unsent bytes kept per connection: Bun's own buffer is bounded by a multiple of it. */
    private readonly maxOutputBytes: number,
    private readonly host: TcpHost,
    private readonly overload: Overload,
    /** Set when this listener is served by the HTTP endpoint's Bun.serve (same host and port): its bound port. */
    private readonly shared: { port(): number } | null = null,
  ) {
    super();
    this.port = address.port;
    this.accepting = shared === null;
    this.bucket = maxConnectionRate > 0 ? new TokenBucket(maxConnectionRate, maxConnectionRate) : null;
  }

  /** Starts listening; throws as Bun.serve does (address in use, ...). Shared: starts accepting upgrades on the HTTP endpoint's port. */
  listen(): number {
    if (this.shared !== null) {
      this.accepting = true;
      this.port = this.shared.port();
      return this.port;
    }
    this.server = Bun.serve<WsData>({ hostname: this.address.host, port: this.port, tls: this.address.tls, ...this.handlers() });
    this.port = this.server.port!;
    return this.port;
  }

  /** The upgrade (fetch) and WebSocket handlers, for a Bun.serve of this listener's own or the HTTP endpoint's. */
  handlers(): { fetch: (req: Request, server: Server<WsData>) => Response | undefined; websocket: WebSocketHandler<WsData> } {
    const { overload, host } = this;
    const { path, trustProxy } = this.address.websocket!;
    return {
      fetch: (req, server) => {
        if (path !== "*" && new URL(req.url).pathname !== path) return new Response("Not Found\n", { status: 404 });
        if (!this.accepting) return new Response("the broker is not accepting connections\n", { status: 503 });
        if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("MQTT over WebSocket: upgrade required\n", { status: 426, headers: { Upgrade: "websocket" } });
        const protocol = selectSubprotocol(req.headers.get("sec-websocket-protocol"));
        if (protocol === null) return new Response("the WebSocket subprotocol must be mqtt\n", { status: 400 });
        const data: WsData = { transport: null, state: null, remoteAddress: remoteAddressOf(req, server, trustProxy), protocol };
        // the one Sec-WebSocket-Protocol of the 101 [MQTT-6.0.0-4]
        if (server.upgrade(req, { data, headers: { "Sec-WebSocket-Protocol": protocol } })) return undefined;
        return new Response("WebSocket upgrade failed\n", { status: 400 });
      },
      websocket: {
        perMessageDeflate: false,
        idleTimeout: 0, // the MQTT keep alive decides
        sendPings: false,
        maxPayloadLength: Math.min(2 * this.maxPacketSize, 0xffffffff),
        // WsTransport stops sending at the first -1, so Bun holds at most one flush (maxOutputBytes
        // and a message): this bound is never reached in practice, and a drop (0) loses nothing
        backpressureLimit: Math.min(2 * this.maxOutputBytes + this.maxPacketSize, 0xffffffff),
        closeOnBackpressureLimit: false,
        open: (ws) => {
          overload.sockets++;
          const transport = new WsTransport(ws, ws.data.remoteAddress);
          ws.data.transport = transport;
          const refused = overload.admit(this.bucket === null || this.bucket.take());
          if (refused === null) {
            ws.data.state = host.opened(transport, this.address.tls === undefined ? "ws" : "wss");
            return;
          }
          if (!refused.answer) {
            ws.close();
            return;
          }
          overload.refusing++;
          ws.data.state = new Refusal(transport, refused.reason, () => overload.refusing--);
        },
        message: (ws, message) => {
          const s = ws.data.state;
          if (typeof message === "string") {
            // [MQTT-6.0.0-1] a data frame that is not binary closes the connection
            ws.data.transport!.closeCode = CLOSE_UNSUPPORTED_DATA;
            if (s instanceof Connection) s.close(null, "a WebSocket text frame (MQTT travels in binary frames only)");
            else ws.close(CLOSE_UNSUPPORTED_DATA);
            return;
          }
          if (s instanceof Connection) {
            s.receive(message); // [MQTT-6.0.0-2] frames need not line up with packets: the Framer joins and splits
            host.flushAll();
          } else s?.receive(message);
        },
        drain: (ws) => {
          ws.data.transport?.drained();
          const s = ws.data.state;
          if (s instanceof Connection) s.drained();
        },
        close: (ws) => {
          overload.sockets--;
          ws.data.state?.closed();
        },
        error: (error, ws) => {
          const s = ws.data.state;
          host.log("warning", `WebSocket error on ${s instanceof Connection ? s.describe() : "a refused connection"}: ${error.message}`);
        },
      },
    };
  }

  /** Closes the listening socket (shared: refuses upgrades); accepted connections go on. */
  override pause(): void {
    if (this.shared !== null) this.accepting = false;
    this.server?.stop(false);
    this.server = null;
  }

  /** Listens again on the same port; false when that fails now. */
  override resume(): boolean {
    if (this.shared !== null) return (this.accepting = true);
    return super.resume();
  }

  /** Closes the listening socket and every connection it accepted (shared: refuses upgrades; the endpoint's stop closes the rest). */
  override close(): void {
    this.accepting = false;
    this.server?.stop(true);
    this.server = null;
  }

  /** host:port and path, for logs. */
  describe(): string {
    return `${this.address.tls ? "wss" : "ws"}://${this.address.host}:${this.port}${this.address.websocket!.path === "*" ? "/*" : this.address.websocket!.path}`;
  }
}
