/**
 * Test helpers for MQTT over WebSocket: a raw WebSocket client on a Bun TCP socket that writes the
 * upgrade request and every frame by hand (RFC 6455: client frames masked), so tests choose
 * exactly how packets fall into frames, send text or broken frames, and stop reading.
 */
import type { Socket } from "bun";
import { Framer } from "../../lib/codec/framer";
import { decodePacket, encodePacket, type Packet } from "../../lib/codec/packet";
import type { ProtocolVersion } from "../../lib/codec/constants";

/** WebSocket opcodes (RFC 6455 section 5.2). */
export const Opcode = { Continuation: 0x0, Text: 0x1, Binary: 0x2, Close: 0x8, Ping: 0x9, Pong: 0xa } as const;

/** The HTTP answer to an upgrade request: status line, headers (lower-case names, repeats kept) and body so far. */
export interface UpgradeAnswer {
  status: number;
  headers: [string, string][];
  body: string;
}

/** Options of an upgrade request. */
export interface UpgradeOptions {
  path?: string;
  /** The Sec-WebSocket-Protocol header; null: none. */
  protocols?: string | null;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

/** Encodes one client frame: FIN as given, masked with a fixed key (any key will do). */
export function clientFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const n = payload.length;
  const len = n < 126 ? 1 : n < 65536 ? 3 : 9;
  const out = new Uint8Array(1 + len + 4 + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  let i = 1;
  if (n < 126) out[i++] = 0x80 | n;
  else if (n < 65536) {
    out[i++] = 0x80 | 126;
    out[i++] = n >> 8;
    out[i++] = n & 0xff;
  } else {
    out[i++] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(i, BigInt(n));
    i += 8;
  }
  const mask = [0x12, 0x34, 0x56, 0x78];
  out.set(mask, i);
  i += 4;
  for (let j = 0; j < n; j++) out[i + j] = payload[j]! ^ mask[j & 3]!;
  return out;
}

/** A raw WebSocket connection to the broker: frames by hand, MQTT packets decoded from binary messages. */
export class WsRawClient {
  readonly received: Packet[] = [];
  readonly closed = Promise.withResolvers<void>();
  isClosed = false;
  /** The close code of the broker's Close frame, if one came. */
  closeCode: number | null = null;
  /** Opcodes of the data frames received (to check they are binary). */
  readonly opcodes: number[] = [];
  /** The 101 answer. */
  answer!: UpgradeAnswer;
  private buf = new Uint8Array(0);
  private upgraded = false;
  private upgradeWaiter = Promise.withResolvers<UpgradeAnswer>();
  private framer = new Framer();
  private waiters: { predicate: (p: Packet) => boolean; resolve: (p: Packet) => void }[] = [];
  private socket!: Socket<undefined>;

  private constructor(public version: ProtocolVersion) {}

  /** Sends an upgrade request; resolves with the connected client (101) or the HTTP answer (anything else, the socket then closed). */
  static async upgrade(port: number, options: UpgradeOptions = {}, version: ProtocolVersion = 5): Promise<WsRawClient | UpgradeAnswer> {
    const c = new WsRawClient(version);
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: { data: (_s, d) => c.onData(d), close: () => c.onClose(), error: () => c.onClose() },
    });
    const { path = "/mqtt", protocols = "mqtt", headers = {} } = options;
    const lines = [
      `GET ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, "Upgrade: websocket", "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
      ...(protocols === null ? [] : [`Sec-WebSocket-Protocol: ${protocols}`]),
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    c.socket.write(lines.join("\r\n") + "\r\n\r\n");
    const answer = await c.upgradeWaiter.promise;
    if (answer.status !== 101) {
      c.socket.end();
      return answer;
    }
    c.answer = answer;
    return c;
  }

  /** Upgrades, and fails unless the answer is 101. */
  static async open(port: number, options: UpgradeOptions = {}, version: ProtocolVersion = 5): Promise<WsRawClient> {
    const c = await WsRawClient.upgrade(port, options, version);
    if (!(c instanceof WsRawClient)) throw new Error(`upgrade refused: ${c.status} ${c.body}`);
    return c;
  }

  private onData(d: Uint8Array): void {
    const joined = new Uint8Array(this.buf.length + d.length);
    joined.set(this.buf);
    joined.set(d, this.buf.length);
    this.buf = joined;
    if (!this.upgraded) {
      const text = new TextDecoder().decode(this.buf);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return;
      const [statusLine, ...rest] = text.slice(0, end).split("\r\n");
      const headers = rest.map((l) => [l.slice(0, l.indexOf(":")).trim().toLowerCase(), l.slice(l.indexOf(":") + 1).trim()] as [string, string]);
      const status = Number(statusLine!.split(" ")[1]);
      this.upgraded = true;
      this.buf = this.buf.subarray(new TextEncoder().encode(text.slice(0, end + 4)).length);
      this.upgradeWaiter.resolve({ status, headers, body: new TextDecoder().decode(this.buf) });
      if (status !== 101) return;
    }
    this.parseFrames();
  }

  private parseFrames(): void {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      let len = b[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = (b[2]! << 8) | b[3]!;
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0));
        at = 10;
      }
      if (b.length < at + len) return;
      const opcode = b[0]! & 0x0f;
      const payload = b.slice(at, at + len);
      this.buf = b.subarray(at + len);
      if (opcode === Opcode.Close) {
        this.closeCode = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005;
        continue;
      }
      if (opcode === Opcode.Ping || opcode === Opcode.Pong) continue;
      this.opcodes.push(opcode);
      this.framer.push(payload);
      for (let f = this.framer.next(); f !== null; f = this.framer.next()) {
        const p = decodePacket(f.slice(), this.version);
        const i = this.waiters.findIndex((w) => w.predicate(p));
        if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(p);
        else this.received.push(p);
      }
    }
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.upgradeWaiter.resolve({ status: 0, headers: [], body: "" });
    this.closed.resolve();
  }

  /** Sends one frame as given (`bytes` unmasked; the mask is applied here). */
  frame(opcode: number, bytes: Uint8Array, fin = true): void {
    this.socket.write(clientFrame(opcode, bytes, fin));
  }

  /** Writes raw bytes on the socket, frames or not. */
  raw(bytes: Uint8Array): number {
    return this.socket.write(bytes);
  }

  /** Sends a packet (or bytes) in one binary frame. */
  send(data: Packet | Uint8Array): void {
    this.frame(Opcode.Binary, data instanceof Uint8Array ? data : encodePacket(data, this.version));
  }

  /** The next packet received (of `type`, when given), waiting for it; others are kept. */
  next(type?: number, predicate: (p: Packet) => boolean = () => true): Promise<Packet> {
    const match = (p: Packet) => (type === undefined || p.type === type) && predicate(p);
    const i = this.received.findIndex(match);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0]!);
    const { promise, resolve } = Promise.withResolvers<Packet>();
    this.waiters.push({ predicate: match, resolve });
    return promise;
  }

  /** Stops reading the socket (a slow consumer). */
  pause(): void {
    this.socket.pause();
  }

  /** Closes the socket without a Close frame. */
  end(): void {
    if (!this.isClosed) this.socket.end();
  }
}
