/**
 * A TCP (or TLS) listener on Bun.listen. It counts sockets for overload protection, admits or
 * refuses each new one (its own connection-rate bucket, then Overload.admit), and hands admitted
 * sockets to the broker. It can be paused (listening socket closed) and resumed on the same port.
 */
import type { TCPSocketListener } from "bun";
import { Connection } from "../connection";
import type { Listener } from "../options";
import { TokenBucket } from "../overload/token-bucket";
import { Refusal } from "../overload/refusal";
import type { Overload } from "../overload/overload";
import { RestartableListener } from "./listener";
import type { Transport } from "./transport";

/** What a listener's socket carries: its connection, or the refusal that is ending it. */
type SocketState = Connection | Refusal;

/** What the listener needs from the broker. */
export interface TcpHost {
  /** Makes the Connection of an admitted transport; `kind` (tcp, tls, ws, wss) labels it in /metrics. */
  opened(transport: Transport, kind: string): Connection;
  /** Called after a connection handled incoming bytes: flush what it caused. */
  flushAll(): void;
  /** Writes a log line. */
  log(level: "warning", line: string): void;
}

/** One listening address, with its connection-rate bucket. */
export class TcpListener extends RestartableListener<TCPSocketListener<SocketState>> {
  private readonly bucket: TokenBucket | null;
  /** The port bound (the chosen one when the address asked for 0); re-used on resume. */
  port: number;

  constructor(
    readonly address: Listener,
    maxConnectionRate: number,
    private readonly host: TcpHost,
    private readonly overload: Overload,
    /** Share the port with other processes (SO_REUSEPORT): cluster nodes on one host, one per core. */
    private readonly reusePort = false,
  ) {
    super();
    this.port = address.port;
    this.bucket = maxConnectionRate > 0 ? new TokenBucket(maxConnectionRate, maxConnectionRate) : null;
  }

  /** Starts listening; throws as Bun.listen does (address in use, ...). */
  listen(): number {
    const overload = this.overload;
    const host = this.host;
    this.server = Bun.listen<SocketState>({
      hostname: this.address.host,
      port: this.port,
      tls: this.address.tls,
      ...{ reusePort: this.reusePort }, // Bun.listen takes it (SO_REUSEPORT on Linux); its types do not list it yet
      socket: {
        open: (socket) => {
          overload.sockets++;
          const refused = overload.admit(this.bucket === null || this.bucket.take());
          if (refused === null) {
            socket.data = host.opened(socket, this.address.tls === undefined ? "tcp" : "tls"); // a Bun socket is a Transport as it is
            return;
          }
          if (!refused.answer) {
            socket.end(); // closed at once
            return;
          }
          overload.refusing++;
          socket.data = new Refusal(socket, refused.reason, () => overload.refusing--);
        },
        data: (socket, data) => {
          const s = socket.data;
          if (s instanceof Connection) {
            s.receive(data);
            host.flushAll();
          } else s?.receive(data);
        },
        drain: (socket) => {
          const s = socket.data;
          if (s instanceof Connection) s.drained();
        },
        close: (socket) => {
          overload.sockets--;
          socket.data?.closed();
        },
        error: (socket, error) => {
          const s = socket.data;
          host.log("warning", `socket error on ${s instanceof Connection ? s.describe() : "a refused connection"}: ${error.message}`);
        },
      },
    });
    this.port = this.server.port;
    return this.port;
  }

  /** host:port, for logs. */
  describe(): string {
    return `${this.address.host}:${this.port}`;
  }
}
