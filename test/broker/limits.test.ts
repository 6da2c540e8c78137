/**
 * The broker's limits as raw conversations with a broker on port 0: the slow-consumer memory bound
 * (a subscriber that stops reading), the queue bound at QoS 1, the maximum packet size both ways,
 * the in-flight window (maxInflight and the client's Receive Maximum) and the broker's own
 * Receive Maximum.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { decodePacket, encodePacket, Framer, PacketType, ReasonCode, reasonName, type ConnackPacket, type DisconnectPacket, type Packet, type ProtocolVersion } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import type { Connection } from "../../lib/broker/connection";
import { leaveOffline, connectPacket, nextPublish, publishPacket, rawSubscribe, RawHarness, settle, subscribeAll, subscription, takePublishes, text, waitUntil, writeAll } from "./helpers";

/**
 * A raw client for bulk traffic: writes honour backpressure (Bun's socket.write takes what the
 * kernel takes; the rest waits for `drain`), and reading can be paused, which makes it a slow
 * consumer as far as the broker can tell.
 */
class StreamClient {
  readonly received: Packet[] = [];
  readonly closed = Promise.withResolvers<void>();
  private framer = new Framer();
  private drainWaiter: (() => void) | null = null;
  private waiter: { type: number; resolve: (p: Packet) => void } | null = null;
  private socket!: Socket<undefined>;

  private constructor(readonly version: ProtocolVersion) {}

  /** Connects and completes CONNECT/CONNACK. */
  static async connect(port: number, clientId: string, version: ProtocolVersion = 5): Promise<StreamClient> {
    const c = new StreamClient(version);
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, data) => c.onData(data),
        drain: () => {
          const w = c.drainWaiter;
          c.drainWaiter = null;
          w?.();
        },
        close: () => c.closed.resolve(),
        error: () => c.closed.resolve(),
      },
    });
    await c.write(encodePacket(connectPacket({ protocolVersion: version, clientId }), version));
    const ack = (await c.next(PacketType.CONNACK)) as ConnackPacket;
    if (ack.reasonCode !== 0) throw new Error(`CONNECT refused: 0x${ack.reasonCode.toString(16)}`);
    return c;
  }

  private onData(data: Uint8Array): void {
    this.framer.push(data);
    for (let f = this.framer.next(); f !== null; f = this.framer.next()) {
      const p = decodePacket(f.slice(), this.version);
      if (this.waiter !== null && p.type === this.waiter.type) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve(p);
      } else this.received.push(p);
    }
  }

  /** The next packet of `type` (one waiter at a time). */
  next(type: number): Promise<Packet> {
    const i = this.received.findIndex((p) => p.type === type);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0]!);
    const { promise, resolve } = Promise.withResolvers<Packet>();
    this.waiter = { type, resolve };
    return promise;
  }

  /** Writes all of `bytes`, waiting for `drain` whenever the kernel takes only part. */
  write(bytes: Uint8Array): Promise<void> {
    return writeAll(this.socket, bytes, () => new Promise<void>((resolve) => (this.drainWaiter = resolve)));
  }

  /** PINGREQ, then PINGRESP: the broker has handled everything written before. */
  async roundTrip(): Promise<void> {
    await this.write(encodePacket({ type: PacketType.PINGREQ }, this.version));
    await this.next(PacketType.PINGRESP);
  }

  /** Stops reading from the socket: the kernel buffers fill and the broker sees backpressure. */
  pause(): void {
    this.socket.pause();
  }

  /** Reads from the socket again. */
  resume(): void {
    this.socket.resume();
  }

  /** Closes the socket at once. */
  terminate(): void {
    this.socket.terminate();
  }
}

let h: RawHarness | null = null;
const streams: StreamClient[] = [];
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  for (const s of streams.splice(0)) s.terminate();
  await h?.cleanup();
  h = null;
});

async function stream(clientId: string): Promise<StreamClient> {
  const s = await StreamClient.connect(h!.port, clientId);
  streams.push(s);
  return s;
}

/**
 * Records the highest number of bytes ever waiting in a connection's output. Output only grows by
 * append() and appendRange() (a PUBLISH forwarded as it came), so watching them sees every peak,
 * not only the ones a sample happens to catch.
 */
function watchPending(conn: Connection): { max: number } {
  const seen = { max: conn.pending };
  const append = conn.append.bind(conn);
  const appendRange = conn.appendRange.bind(conn);
  const watch = (at: number): number => {
    if (conn.pending > seen.max) seen.max = conn.pending;
    return at;
  };
  conn.append = (bytes, free) => watch(append(bytes, free));
  conn.appendRange = (buf, start, end, free) => watch(appendRange(buf, start, end, free));
  return seen;
}

/** A client subscribed to `filter` (QoS 0) that then stops reading. */
async function stalledSubscriber(clientId: string, filter: string): Promise<StreamClient> {
  const c = await stream(clientId);
  await c.write(encodePacket({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [subscription(filter)], properties: {} }, 5));
  await c.next(PacketType.SUBACK);
  c.pause();
  return c;
}

/** `count` copies of one encoded packet, back to back. */
function repeated(packet: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(packet.length * count);
  for (let i = 0; i < count; i++) out.set(packet, i * packet.length);
  return out;
}

describe("slow consumers", () => {
  test.each([
    ["the default maxOutputBytes (1 MB)", undefined],
    ["maxOutputBytes 64 MB, of which the retained messages fill at most 512 KB and a step (64 of them) before waiting", 64 * 1024 * 1024],
  ] as const)("a subscription matching more retained messages than a client's output holds, the client not reading: the rest wait for room instead of being dropped (QoS 0), all arrive once it reads, and the output stays bounded: %s", async (_, maxOutputBytes) => {
    const h = await start(maxOutputBytes === undefined ? {} : { maxOutputBytes });
    const n = 20_000; // 80 MB: more than the output and the kernel's socket buffers together (loopback's take up to 36 MB here)
    const body = new Uint8Array(4000).fill(0x62);
    const pub = await stream("pub");
    const before = h.broker.retained.size; // the broker's own ($SYS)
    const frames = Array.from({ length: n }, (_, i) => encodePacket(publishPacket(`kept/${i}`, body, { retain: true }), 5));
    const all = new Uint8Array(frames.reduce((sum, f) => sum + f.length, 0));
    frames.reduce((at, f) => (all.set(f, at), at + f.length), 0);
    await pub.write(all);
    await pub.roundTrip();
    expect(h.broker.retained.size - before).toBe(n);

    const slow = await stream("slow");
    slow.pause();
    const conn = h.broker.clients.get("slow")!;
    const peak = watchPending(conn);
    await slow.write(encodePacket({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [subscription("kept/+")], properties: {} }, 5));
    await waitUntil(() => conn.session!.roomWaiters !== null, "the retained messages to wait for the client to read");
    expect(conn.dropped).toBe(0);
    slow.resume();
    const topics = new Set<string>();
    await waitUntil(() => {
      for (const p of slow.received.splice(0)) if (p.type === PacketType.PUBLISH) topics.add(text(p.topic));
      return topics.size === n;
    }, `all ${n} retained messages`);
    expect(conn.dropped).toBe(0);
    if (maxOutputBytes === undefined) expect(peak.max).toBeLessThanOrEqual(h.broker.options.maxOutputBytes + frames[0]!.length + 8);
    else expect(peak.max).toBeLessThanOrEqual(512 * 1024 + 64 * (frames[0]!.length + 8));
  }, 30_000);

  test("a subscriber that stops reading: its pending output stays within maxOutputBytes plus one message, QoS 0 messages to it are dropped, and other clients keep receiving", async () => {
    const h = await start();
    const bound = h.broker.options.maxOutputBytes;
    await stalledSubscriber("slow", "flood");
    const fast = await h.connect({ clientId: "fast" });
    await subscribeAll(fast, [subscription("flood"), subscription("flood/end", { qos: 1 })]);
    const bystander = await h.connect({ clientId: "bystander" });
    await rawSubscribe(bystander, "calm", 0);
    const conn = h.broker.clients.get("slow")!;
    const peak = watchPending(conn);

    const pub = await stream("pub");
    const message = encodePacket(publishPacket("flood", new Uint8Array(4000).fill(0x61)), 5);
    const chunk = repeated(message, 256); // about 1 MB
    const chunks = 50; // about 50 MB in all
    for (let i = 0; i < chunks; i++) {
      await pub.write(chunk);
      await pub.write(encodePacket(publishPacket("calm", `calm ${i}`), 5));
    }
    await pub.roundTrip();

    expect(peak.max).toBeGreaterThan(0);
    expect(peak.max).toBeLessThanOrEqual(bound + message.length);
    expect(conn.pending).toBeLessThanOrEqual(bound + message.length);
    expect(conn.dropped).toBeGreaterThan(0);
    expect(h.broker.clients.get("slow")).toBe(conn); // QoS 0 overflow drops messages, not the client

    // the bystander got every message on its topic, in order
    const calm: string[] = [];
    for (let i = 0; i < chunks; i++) calm.push(text((await nextPublish(bystander, "calm")).payload));
    expect(calm).toEqual(Array.from({ length: chunks }, (_, i) => `calm ${i}`));
    // the subscriber that reads got the flood too, and a QoS 1 message after it
    await pub.write(encodePacket(publishPacket("flood/end", "end", { qos: 1, packetId: 1 }), 5));
    expect(text((await nextPublish(fast, "flood/end")).payload)).toBe("end");
    expect(takePublishes(fast).length).toBeGreaterThan(0);
  }, 30_000); // 50 MB through the broker: bounds a hang generously on a loaded machine

  test("the only subscriber of a topic stops reading: QoS 0 messages to it are dropped once its output is full, which stays within maxOutputBytes plus one message", async () => {
    const h = await start();
    const bound = h.broker.options.maxOutputBytes;
    await stalledSubscriber("slow", "alone");
    const conn = h.broker.clients.get("slow")!;
    const peak = watchPending(conn);
    const pub = await stream("pub");
    const message = encodePacket(publishPacket("alone", new Uint8Array(4000).fill(0x61)), 5);
    const chunk = repeated(message, 256); // about 1 MB
    for (let i = 0; i < 50; i++) await pub.write(chunk); // about 50 MB, more than the kernel's buffers take
    await pub.roundTrip();
    expect(conn.dropped).toBeGreaterThan(0);
    expect(peak.max).toBeGreaterThan(0);
    expect(peak.max).toBeLessThanOrEqual(bound + message.length);
    expect(h.broker.clients.get("slow")).toBe(conn);
  }, 30_000);

  test("slowConsumerPolicy \"disconnect\": a stalled subscriber at QoS 1: once its output is full messages are queued, and when the queue passes maxQueuedMessages the broker drops the client (0x97), keeping its output bounded", async () => {
    const maxQueuedMessages = 100;
    const log: string[] = [];
    const h = await start({ slowConsumerPolicy: "disconnect", maxQueuedMessages, maxInflight: 65535, logLevel: "info", logger: (line) => log.push(line) });
    const bound = h.broker.options.maxOutputBytes;
    const slow = await stream("slow");
    await slow.write(encodePacket({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [subscription("flood", { qos: 1 })], properties: {} }, 5));
    await slow.next(PacketType.SUBACK);
    slow.pause();
    const conn = h.broker.clients.get("slow")!;
    const session = conn.session!;
    const peak = watchPending(conn);
    let maxQueued = 0;
    const enqueue = session.enqueue.bind(session);
    session.enqueue = (...args: Parameters<typeof enqueue>): boolean => {
      const ok = enqueue(...args);
      maxQueued = Math.max(maxQueued, session.queued);
      return ok;
    };
    const bystander = await h.connect({ clientId: "bystander" });
    await rawSubscribe(bystander, "calm", 0);

    const pub = await stream("pub");
    let packetId = 0;
    let i = 0;
    while (h.broker.clients.has("slow")) {
      if (i > 100) throw new Error("the stalled subscriber was never disconnected");
      const batch = Array.from({ length: 256 }, () => encodePacket(publishPacket("flood", new Uint8Array(4000), { qos: 1, packetId: (packetId++ % 65535) + 1 }), 5));
      await pub.write(Buffer.concat(batch));
      await pub.write(encodePacket(publishPacket("calm", `calm ${i++}`), 5));
      await pub.roundTrip();
    }
    expect(maxQueued).toBe(maxQueuedMessages);
    // its socket is stalled, so the DISCONNECT cannot reach it; the broker's log says why it went
    expect(log.filter((l) => l.includes("closing client 'slow'"))).toEqual([expect.stringContaining(`${reasonName(ReasonCode.QuotaExceeded)}: `)]);
    expect(peak.max).toBeLessThanOrEqual(bound + 4100);
    expect(conn.dropped).toBe(0); // QoS 1 is queued, never dropped
    await pub.roundTrip(); // the publisher is unaffected
    for (let k = 0; k < i; k++) expect(text((await nextPublish(bystander, "calm")).payload)).toBe(`calm ${k}`);
  }, 30_000); // megabytes until the kernel buffers fill: bounds a hang generously on a loaded machine

  test("QoS 1 messages queued while a subscriber's output was full are sent once it has room, even when the socket took every write", async () => {
    const h = await start({ maxOutputBytes: 1000 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "mix/#", 1);
    const pub = await h.connect({ clientId: "pub" });
    // one write, so the broker handles it in one go: three QoS 0 messages fill the output, two are dropped, the QoS 1 ones wait
    const burst = Array.from({ length: 5 }, () => encodePacket(publishPacket("mix/0", new Uint8Array(400)), 5));
    burst.push(encodePacket(publishPacket("mix/1", "important", { qos: 1, packetId: 1 }), 5));
    burst.push(encodePacket(publishPacket("mix/1", "also important", { qos: 1, packetId: 2 }), 5));
    pub.send(Buffer.concat(burst));
    expect(text((await nextPublish(sub, "mix/1")).payload)).toBe("important");
    expect(text((await nextPublish(sub, "mix/1")).payload)).toBe("also important");
    expect(takePublishes(sub).every((p) => text(p.topic) === "mix/0")).toBe(true);
  });

  test("[MQTT-3.3.4-9] slowConsumerPolicy \"disconnect\": a subscriber that reads but does not acknowledge: maxInflight messages are sent, maxQueuedMessages wait, and one more gets the subscriber DISCONNECT 0x97 Quota exceeded", async () => {
    const h = await start({ slowConsumerPolicy: "disconnect", maxInflight: 5, maxQueuedMessages: 10 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "q", 1);
    const pub = await h.connect({ clientId: "pub" });
    for (let i = 1; i <= 15; i++) pub.send(publishPacket("q", `m${i}`, { qos: 1, packetId: i }));
    await settle(pub, sub);
    expect(takePublishes(sub).map((p) => text(p.payload))).toEqual(["m1", "m2", "m3", "m4", "m5"]);
    expect(h.broker.sessions.get("sub")!.queued).toBe(10);
    expect(sub.isClosed).toBe(false);

    pub.send(publishPacket("q", "m16", { qos: 1, packetId: 16 }));
    const d = (await sub.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.QuotaExceeded);
    expect(d.properties.reasonString).toBeString();
    await sub.closed.promise;
    expect((await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === 16)).type).toBe(PacketType.PUBACK);
    await settle(pub);
  });
});

describe("queue bounds", () => {
  test("slowConsumerPolicy \"disconnect\": maxQueuedBytes bounds a connected client's queue by size: a message that does not fit gets the client DISCONNECT 0x97", async () => {
    const h = await start({ slowConsumerPolicy: "disconnect", maxInflight: 1, maxQueuedBytes: 1000 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "qb", 1);
    const pub = await h.connect({ clientId: "pub" });
    for (let i = 1; i <= 3; i++) pub.send(publishPacket("qb", new Uint8Array(400), { qos: 1, packetId: i })); // one in flight, two queued
    await settle(pub, sub);
    expect(takePublishes(sub).length).toBe(1);
    expect(h.broker.sessions.get("sub")!.queued).toBe(2);
    pub.send(publishPacket("qb", new Uint8Array(400), { qos: 1, packetId: 4 }));
    const d = (await sub.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.QuotaExceeded);
    await sub.closed.promise;
  });

  test("an offline session keeps at most maxQueuedMessages messages; the client gets those when it returns", async () => {
    const h = await start({ maxQueuedMessages: 3 });
    const persistent = await leaveOffline(h, "away", "offline", 1);
    const pub = await h.connect({ clientId: "pub" });
    for (let i = 1; i <= 5; i++) pub.send(publishPacket("offline", `m${i}`, { qos: 1, packetId: i }));
    await settle(pub);
    expect(h.broker.sessions.get("away")!.queued).toBe(3);
    const back = await h.connect(persistent);
    await settle(back);
    expect(takePublishes(back).map((p) => text(p.payload))).toEqual(["m1", "m2", "m3"]);
  });

  test("a queued message holds its own bytes, not the whole read it came in (a Buffer's slice() is a view)", async () => {
    const h = await start();
    const persistent = await leaveOffline(h, "away", "offline", 1);
    const pub = await h.connect({ clientId: "pub" });
    // one write, so one read: a small QoS 1 message for the offline session beside 1 MB for nobody
    const small = encodePacket(publishPacket("offline", "tiny", { qos: 1, packetId: 1, properties: { correlationData: new Uint8Array([1, 2]) } }), 5);
    const big = encodePacket(publishPacket("nobody", new Uint8Array(1024 * 1024)), 5);
    const both = new Uint8Array(small.length + big.length);
    both.set(small);
    both.set(big, small.length);
    pub.send(both);
    await settle(pub);
    const [queued] = h.broker.sessions.get("away")!.queuedMessages();
    const m = queued!.message;
    expect(text(m.payload)).toBe("tiny");
    // what each holds on to: its own few bytes (payload and topic), not the megabyte beside them
    for (const bytes of [m.payload, m.topicBytes, m.properties.correlationData!]) expect(bytes.buffer.byteLength).toBeLessThan(1024);
    const back = await h.connect(persistent);
    expect(text((await nextPublish(back, "offline")).payload)).toBe("tiny");
  });
});

describe("maximum packet size", () => {
  /** A QoS 0 PUBLISH on `topic` of exactly `size` bytes, fixed header included. */
  function publishOfSize(topic: string, size: number, version: ProtocolVersion): Uint8Array {
    let payload = size - encodePacket(publishPacket(topic, ""), version).length;
    let bytes = encodePacket(publishPacket(topic, new Uint8Array(payload)), version);
    payload -= bytes.length - size; // the remaining length may have grown a byte
    bytes = encodePacket(publishPacket(topic, new Uint8Array(payload)), version);
    expect(bytes.length).toBe(size);
    return bytes;
  }

  test("[MQTT-3.2.2-15] the broker advertises maxPacketSize; a packet of that size is accepted, a bigger one gets DISCONNECT 0x95 Packet too large", async () => {
    const h = await start({ maxPacketSize: 1024 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "size/#", 0);
    const { client: pub, connack } = await h.connectAck({ clientId: "pub" });
    expect(connack.properties.maximumPacketSize).toBe(1024);
    pub.send(publishOfSize("size/fits", 1024, 5));
    expect((await nextPublish(sub, "size/fits")).payload.length).toBeGreaterThan(1000);
    pub.send(publishOfSize("size/too-big", 1025, 5));
    const d = (await pub.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.PacketTooLarge);
    expect(d.properties.reasonString).toBeString();
    await pub.closed.promise;
    await settle(sub);
    expect(takePublishes(sub)).toEqual([]);
  });

  test("3.1.1: a packet above maxPacketSize closes the connection", async () => {
    const h = await start({ maxPacketSize: 1024 });
    const pub = await h.connect({ protocolVersion: 4, clientId: "pub" });
    pub.send(publishOfSize("size/too-big", 4096, 4));
    await pub.closed.promise;
    expect(pub.received).toEqual([]);
  });

  test.each([0, 1, 2] as const)(
    "QoS %d: a message bigger than the subscriber's Maximum Packet Size is not sent to it [MQTT-3.1.2-24], and the broker behaves as if it had been delivered [MQTT-3.1.2-25]",
    async (qos) => {
      const h = await start();
      const sub = await h.connect({ clientId: "sub", properties: { maximumPacketSize: 200, receiveMaximum: 1 } });
      await rawSubscribe(sub, "cap", 2);
      const roomy = await h.connect({ clientId: "roomy" });
      await rawSubscribe(roomy, "cap", 2);
      const pub = await h.connect({ clientId: "pub" });
      pub.send(publishPacket("cap", new Uint8Array(500), { qos, packetId: qos === 0 ? 0 : 1 }));
      pub.send(publishPacket("cap", "small", { qos, packetId: qos === 0 ? 0 : 2 }));
      const p = await nextPublish(sub, "cap");
      expect(text(p.payload)).toBe("small");
      expect((await nextPublish(roomy, "cap")).payload.length).toBe(500); // others still get it
      if (qos === 1) sub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      if (qos === 2) {
        sub.send({ type: PacketType.PUBREC, packetId: p.packetId, reasonCode: 0, properties: {} });
        await sub.next(PacketType.PUBREL);
        sub.send({ type: PacketType.PUBCOMP, packetId: p.packetId, reasonCode: 0, properties: {} });
      }
      await settle(pub, sub);
      expect(takePublishes(sub)).toEqual([]);
      expect(h.broker.sessions.get("sub")!.inflight.size).toBe(0);
    },
  );
});

describe("in-flight window", () => {
  test.each([
    [3, 10, 3],
    [3, 2, 2],
    [3, undefined, 3],
  ])("maxInflight %d, client Receive Maximum %p: %d unacknowledged messages at a time [MQTT-3.3.4-9]; the rest wait and follow as acknowledgements arrive, in order", async (maxInflight, receiveMaximum, window) => {
    const h = await start({ maxInflight });
    const sub = await h.connect({ clientId: "sub", properties: receiveMaximum === undefined ? {} : { receiveMaximum } });
    await rawSubscribe(sub, "w", 1);
    const pub = await h.connect({ clientId: "pub" });
    const total = 10;
    for (let i = 1; i <= total; i++) pub.send(publishPacket("w", `m${i}`, { qos: 1, packetId: i }));
    await settle(pub, sub);
    let batch = takePublishes(sub);
    expect(batch.length).toBe(window);
    const order: string[] = [];
    while (batch.length > 0) {
      order.push(...batch.map((p) => text(p.payload)));
      for (const p of batch) sub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      await settle(sub);
      batch = takePublishes(sub);
      expect(batch.length).toBeLessThanOrEqual(window);
    }
    expect(order).toEqual(Array.from({ length: total }, (_, i) => `m${i + 1}`));
  });

  test("QoS 0 messages are not held back by a full window", async () => {
    const h = await start({ maxInflight: 1 });
    const sub = await h.connect({ clientId: "sub" });
    await subscribeAll(sub, [subscription("w1", { qos: 1 }), subscription("w0", { qos: 0 })]);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("w1", "a", { qos: 1, packetId: 1 }));
    pub.send(publishPacket("w1", "b", { qos: 1, packetId: 2 }));
    pub.send(publishPacket("w0", "c"));
    await settle(pub, sub);
    expect(takePublishes(sub).map((p) => text(p.payload))).toEqual(["a", "c"]);
  });

  test("[MQTT-3.3.4-7] the broker's Receive Maximum is advertised, and a client exceeding it with unreleased QoS 2 messages gets DISCONNECT 0x93", async () => {
    const h = await start({ receiveMaximum: 2 });
    const { client: pub, connack } = await h.connectAck({ clientId: "pub" });
    expect(connack.properties.receiveMaximum).toBe(2);
    for (let i = 1; i <= 2; i++) pub.send(publishPacket("rm", "m", { qos: 2, packetId: i }));
    await pub.next(PacketType.PUBREC, (p) => p.type === PacketType.PUBREC && p.packetId === 2);
    pub.send({ type: PacketType.PUBREL, packetId: 1, reasonCode: 0, properties: {} });
    await pub.next(PacketType.PUBCOMP);
    pub.send(publishPacket("rm", "m", { qos: 2, packetId: 3 })); // two unreleased again: allowed
    await pub.next(PacketType.PUBREC, (p) => p.type === PacketType.PUBREC && p.packetId === 3);
    pub.send(publishPacket("rm", "m", { qos: 2, packetId: 4 })); // a third
    const d = (await pub.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.ReceiveMaximumExceeded);
    await pub.closed.promise;
  });
});

