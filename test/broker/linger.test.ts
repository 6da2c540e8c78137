/**
 * Graceful close after an error: the broker sends DISCONNECT with the reason code, shuts its side
 * down (FIN) and reads and discards what the client still sends (lingerMs) before it closes, so
 * that a client that is still writing reads the reason code instead of a reset. The clients here
 * are node:net sockets that keep writing, so that a reset would show as ECONNRESET or EPIPE.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import type { Broker } from "../../lib/broker/broker";
import { Framer } from "../../lib/codec/framer";
import { decodePacket, encodePacket, type Packet } from "../../lib/codec/packet";
import { PacketType } from "../../lib/codec/constants";
import { ReasonCode } from "../../lib/codec/reason-codes";
import { connectPacket, publishPacket, startBroker, waitUntil } from "./helpers";

const started: { stop: () => Promise<void> }[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const b of started.splice(0)) await b.stop();
});

async function broker(options: Parameters<typeof startBroker>[0]): Promise<{ broker: Broker; port: number }> {
  const b = await startBroker(options);
  started.push(b);
  return b;
}

/**
 * A client on a kernel socket: decodes what arrives, answers PUBREC with PUBREL, and records the
 * DISCONNECT, the FIN ('end') and the close, and any socket error (a reset, a broken pipe).
 */
class Writer {
  readonly socket: Socket;
  disconnect: number | null = null;
  error: string | null = null;
  ended = false;
  readonly closed = Promise.withResolvers<void>();
  isClosed = false;
  readonly connack = Promise.withResolvers<void>();
  private framer = new Framer();

  constructor(port: number, allowHalfOpen: boolean) {
    this.socket = connect({ port, host: "127.0.0.1", allowHalfOpen });
    sockets.push(this.socket);
    this.socket.on("data", (d: Buffer) => {
      this.framer.push(new Uint8Array(d));
      for (let f = this.framer.next(); f !== null; f = this.framer.next()) this.packet(decodePacket(f, 5));
    });
    this.socket.on("end", () => (this.ended = true));
    this.socket.on("error", (e: NodeJS.ErrnoException) => (this.error ??= e.code ?? e.message));
    this.socket.on("close", () => {
      this.isClosed = true;
      this.closed.resolve();
    });
  }

  private packet(p: Packet): void {
    if (p.type === PacketType.CONNACK) this.connack.resolve();
    if (p.type === PacketType.PUBREC) this.send({ type: PacketType.PUBREL, packetId: p.packetId, reasonCode: 0, properties: {} });
    if (p.type === PacketType.DISCONNECT) this.disconnect = p.reasonCode;
  }

  /** True while the client may still write. */
  get writable(): boolean {
    return !this.socket.destroyed && !this.socket.writableEnded;
  }

  send(p: Packet): boolean {
    return this.writable && this.socket.write(encodePacket(p, 5));
  }

  /** Writes `next()` packets until it returns null or the socket cannot take more; waits for drain, yields between writes. */
  async keepWriting(next: () => Packet | null): Promise<void> {
    for (let p = next(); p !== null && this.writable; p = next()) {
      if (!this.send(p)) await new Promise((resolve) => { this.socket.once("drain", resolve); this.socket.once("close", resolve); });
      else await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

describe("graceful close after an error DISCONNECT", () => {
  test("receiveMaximum 20: a client pipelining 65 536 QoS 2 PUBLISHes (each PUBREC answered with PUBREL) reads DISCONNECT 0x93, then a clean close, no reset [MQTT-3.3.4-9]", async () => {
    const { broker: b, port } = await broker({ receiveMaximum: 20 });
    const c = new Writer(port, false);
    c.send(connectPacket({ clientId: "flood" }));
    await c.connack.promise;
    const payload = new Uint8Array(10);
    let i = 0;
    // one packet at a time is too slow to overrun 20 unreleased messages: write them in batches of 64
    const batch = () => {
      if (i >= 65536) return null;
      const bytes: Uint8Array[] = [];
      for (let k = 0; k < 64 && i < 65536; k++, i++) bytes.push(encodePacket(publishPacket("flood/t", payload, { qos: 2, packetId: (i % 65535) + 1 }), 5));
      return Buffer.concat(bytes);
    };
    for (let bytes = batch(); bytes !== null && c.writable; bytes = batch()) {
      if (!c.socket.write(bytes)) await new Promise((resolve) => { c.socket.once("drain", resolve); c.socket.once("close", resolve); });
    }
    await c.closed.promise;
    expect(c.error).toBeNull();
    expect(c.disconnect).toBe(ReasonCode.ReceiveMaximumExceeded);
    expect(c.ended).toBe(true); // the broker's FIN
    await waitUntil(() => b.lingering === 0, "the linger ended");
  });

  test("a client that keeps writing after the DISCONNECT gets FIN at once and is read until lingerMs pass; then the broker closes", async () => {
    const { broker: b, port } = await broker({ lingerMs: 300 });
    const c = new Writer(port, true); // half-open allowed: it does not close when the broker's FIN comes
    c.send(connectPacket({ clientId: "writer" }));
    await c.connack.promise;
    c.socket.write(new Uint8Array([0x36, 0x00])); // PUBLISH QoS 3: malformed
    const writing = c.keepWriting(() => ({ type: PacketType.PINGREQ }));
    await waitUntil(() => c.ended, "the broker's FIN");
    expect(c.disconnect).toBe(ReasonCode.MalformedPacket);
    expect(c.error).toBeNull();
    expect(b.lingering).toBe(1);
    expect(b.overload.sockets).toBe(1); // its socket is open, and read
    await waitUntil(() => b.overload.sockets === 0, "the broker closed the socket after lingerMs");
    expect(b.lingering).toBe(0);
    c.socket.destroy();
    await writing;
  });

  test("lingerMs 0: no linger, the socket is closed at once", async () => {
    const { broker: b, port } = await broker({ lingerMs: 0 });
    const c = new Writer(port, true);
    c.send(connectPacket({ clientId: "writer" }));
    await c.connack.promise;
    c.socket.write(new Uint8Array([0x36, 0x00]));
    await waitUntil(() => b.overload.sockets === 0, "the broker closed the socket");
    expect(b.lingering).toBe(0);
  });

  test("at most maxLingering connections linger; past the bound the socket is closed at once", async () => {
    const { broker: b, port } = await broker({ maxLingering: 1, lingerMs: 60_000 });
    const first = new Writer(port, true);
    const second = new Writer(port, true);
    first.send(connectPacket({ clientId: "first" }));
    second.send(connectPacket({ clientId: "second" }));
    await Promise.all([first.connack.promise, second.connack.promise]);
    first.socket.write(new Uint8Array([0x36, 0x00]));
    await waitUntil(() => first.ended, "the first one's FIN");
    expect(b.lingering).toBe(1);
    second.socket.write(new Uint8Array([0x36, 0x00]));
    await waitUntil(() => second.ended && b.overload.sockets === 1, "the second one closed at once");
    expect(second.disconnect).toBe(ReasonCode.MalformedPacket);
    expect(b.lingering).toBe(1); // the first one still lingers, until its client closes
    first.socket.end();
    await first.closed.promise;
    expect(first.error).toBeNull();
    await waitUntil(() => b.lingering === 0 && b.overload.sockets === 0, "the linger ended");
  });

  test("a publisher held back by flow control (its socket paused) and then taken over still reads DISCONNECT 0x8E, no reset", async () => {
    // a long linger: it ends only if the broker reads the paused socket up to the client's FIN
    const { broker: b, port } = await broker({ maxQueuedMessages: 2, maxInflight: 1, slowConsumerPolicy: "backpressure", lingerMs: 60_000 });
    // a subscriber that never acknowledges: its queue fills and holds the publisher back
    const sub = new Writer(port, false);
    sub.send(connectPacket({ clientId: "sub" }));
    await sub.connack.promise;
    sub.send({ type: PacketType.SUBSCRIBE, packetId: 1, properties: {}, subscriptions: [{ topicFilter: "held/t", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }] });
    await waitUntil(() => b.sessions.get("sub")?.subscriptions.size === 1, "subscribed");
    const pub = new Writer(port, false);
    pub.send(connectPacket({ clientId: "pub" }));
    await pub.connack.promise;
    const payload = new Uint8Array(1000);
    let id = 0;
    const writing = pub.keepWriting(() => publishPacket("held/t", payload, { qos: 1, packetId: (id++ % 65535) + 1 }));
    await waitUntil(() => b.clients.get("pub")?.heldBack === true, "the publisher is held back");
    const taker = new Writer(port, false);
    taker.send(connectPacket({ clientId: "pub" }));
    await taker.connack.promise;
    await pub.closed.promise;
    await writing;
    expect(pub.error).toBeNull();
    expect(pub.disconnect).toBe(ReasonCode.SessionTakenOver);
    await waitUntil(() => b.lingering === 0, "the linger ended: the broker read up to the client's FIN");
  });
});
