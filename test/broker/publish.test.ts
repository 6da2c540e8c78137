/**
 * The publish path as raw conversations with a broker on port 0: QoS 0, 1 and 2 from publisher to
 * subscriber and the acknowledgement flows on both sides, QoS downgrade, the packet identifiers
 * the broker assigns, forwarded v5 properties, payload format validation, topic aliases from the
 * client, and messages crossing between protocol levels.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { encodePacket, PacketType, ReasonCode, type DisconnectPacket, type PubAckPacket, type PublishPacket, type QoS } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { nextPublish, publishPacket, rawSubscribe, receivePublishes, RawHarness, settle, subscribeAll, subscription, takePublishes, text, utf8, waitUntil, type RawClient } from "./helpers";

let h: RawHarness | null = null;
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

/** The next acknowledgement of `type` for `packetId`. */
async function nextAck(c: RawClient, type: number, packetId: number): Promise<PubAckPacket> {
  return (await c.next(type, (p) => "packetId" in p && p.packetId === packetId)) as PubAckPacket;
}

/** The broker ended the connection with DISCONNECT `reasonCode` and a reason string. */
async function disconnectedWith(c: RawClient, reasonCode: number): Promise<DisconnectPacket> {
  const d = (await c.next(PacketType.DISCONNECT)) as DisconnectPacket;
  expect(d.reasonCode).toBe(reasonCode);
  expect(d.properties.reasonString).toBeString();
  await c.closed.promise;
  return d;
}

/** Messages of the session of `clientId` sent and not yet acknowledged. */
const inflight = (clientId: string): number => h!.broker.sessions.get(clientId)?.inflight.size ?? -1;

describe("QoS 0, 1 and 2 from publisher to subscriber", () => {
  test.each([5, 4] as const)("v%d QoS 0: delivered at QoS 0, DUP 0, no packet identifier, nothing to acknowledge", async (version) => {
    const h = await start();
    const sub = await h.connect({ protocolVersion: version, clientId: "sub" });
    const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
    await rawSubscribe(sub, "q/0", 2);
    pub.send(publishPacket("q/0", "zero"));
    const p = await nextPublish(sub, "q/0");
    expect({ qos: p.qos, dup: p.dup, retain: p.retain, packetId: p.packetId, payload: text(p.payload) }).toEqual({ qos: 0, dup: false, retain: false, packetId: 0, payload: "zero" });
    await settle(pub, sub);
    expect(pub.received).toEqual([]);
    expect(inflight("sub")).toBe(0);
  });

  test.each([5, 4] as const)("v%d QoS 1: PUBACK with the publisher's packet identifier [MQTT-4.3.2-4]; delivered at QoS 1 with DUP 0 [MQTT-4.3.2-2], unacknowledged until PUBACK [MQTT-4.3.2-3]", async (version) => {
    const h = await start();
    const sub = await h.connect({ protocolVersion: version, clientId: "sub" });
    const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
    await rawSubscribe(sub, "q/1", 2);
    pub.send(publishPacket("q/1", "one", { qos: 1, packetId: 17 }));
    const ack = await nextAck(pub, PacketType.PUBACK, 17);
    expect(ack.reasonCode).toBe(0);
    const p = await nextPublish(sub, "q/1");
    expect({ qos: p.qos, dup: p.dup, payload: text(p.payload) }).toEqual({ qos: 1, dup: false, payload: "one" });
    expect(p.packetId).not.toBe(0);
    expect(inflight("sub")).toBe(1);
    sub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
    await settle(sub);
    expect(inflight("sub")).toBe(0);
    await settle(pub, sub);
    expect(takePublishes(sub)).toEqual([]); // delivered once
  });

  test.each([5, 4] as const)(
    "v%d QoS 2 from the publisher: PUBREC [MQTT-4.3.3-8]; a re-sent PUBLISH with DUP before PUBREL gets PUBREC again and is not delivered twice [MQTT-4.3.3-10]; PUBREL gets PUBCOMP [MQTT-4.3.3-11]; then the identifier starts a new message [MQTT-4.3.3-12]",
    async (version) => {
      const h = await start();
      const sub = await h.connect({ protocolVersion: version, clientId: "sub" });
      const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
      await rawSubscribe(sub, "q/2", 0);
      pub.send(publishPacket("q/2", "first", { qos: 2, packetId: 5 }));
      expect((await nextAck(pub, PacketType.PUBREC, 5)).reasonCode).toBe(0);
      expect(text((await nextPublish(sub, "q/2")).payload)).toBe("first");

      pub.send(publishPacket("q/2", "first", { qos: 2, packetId: 5, dup: true }));
      expect((await nextAck(pub, PacketType.PUBREC, 5)).reasonCode).toBe(0);
      pub.send(publishPacket("q/2", "first", { qos: 2, packetId: 5, dup: true }));
      expect((await nextAck(pub, PacketType.PUBREC, 5)).reasonCode).toBe(0);
      await settle(pub, sub);
      expect(takePublishes(sub)).toEqual([]);

      pub.send({ type: PacketType.PUBREL, packetId: 5, reasonCode: 0, properties: {} });
      expect((await nextAck(pub, PacketType.PUBCOMP, 5)).reasonCode).toBe(0);

      pub.send(publishPacket("q/2", "second", { qos: 2, packetId: 5 }));
      expect((await nextAck(pub, PacketType.PUBREC, 5)).reasonCode).toBe(0);
      expect(text((await nextPublish(sub, "q/2")).payload)).toBe("second");
      pub.send({ type: PacketType.PUBREL, packetId: 5, reasonCode: 0, properties: {} });
      expect((await nextAck(pub, PacketType.PUBCOMP, 5)).reasonCode).toBe(0);
      await settle(pub, sub);
      expect(takePublishes(sub)).toEqual([]);
    },
  );

  test.each([5, 4] as const)(
    "v%d QoS 2 to the subscriber: PUBLISH with DUP 0 [MQTT-4.3.3-2]; PUBREC is answered by PUBREL with the same identifier [MQTT-4.3.3-4]; PUBCOMP ends the exchange; the message arrives once",
    async (version) => {
      const h = await start();
      const sub = await h.connect({ protocolVersion: version, clientId: "sub" });
      const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
      await rawSubscribe(sub, "q/2", 2);
      pub.send(publishPacket("q/2", "exactly once", { qos: 2, packetId: 9 }));
      await nextAck(pub, PacketType.PUBREC, 9);
      const p = await nextPublish(sub, "q/2");
      expect({ qos: p.qos, dup: p.dup, payload: text(p.payload) }).toEqual({ qos: 2, dup: false, payload: "exactly once" });
      expect(p.packetId).not.toBe(0);

      sub.send({ type: PacketType.PUBREC, packetId: p.packetId, reasonCode: 0, properties: {} });
      const rel = await nextAck(sub, PacketType.PUBREL, p.packetId);
      expect(rel.reasonCode).toBe(0);
      expect(inflight("sub")).toBe(1); // the PUBREL is unacknowledged until PUBCOMP [MQTT-4.3.3-5]
      sub.send({ type: PacketType.PUBCOMP, packetId: p.packetId, reasonCode: 0, properties: {} });
      await settle(sub);
      expect(inflight("sub")).toBe(0);

      pub.send({ type: PacketType.PUBREL, packetId: 9, reasonCode: 0, properties: {} });
      await nextAck(pub, PacketType.PUBCOMP, 9);
      await settle(pub, sub);
      expect(takePublishes(sub)).toEqual([]); // not re-sent after PUBREL [MQTT-4.3.3-6]
      expect(sub.received.filter((q) => q.type === PacketType.PUBREL)).toEqual([]);
    },
  );

  test.each([0, 1, 2] as const)("published at QoS %d: each subscriber gets the lower of that and its granted QoS [MQTT-3.8.4-8]", async (pubQoS) => {
    const h = await start();
    const subs: RawClient[] = [];
    for (const qos of [0, 1, 2] as const) {
      const c = await h.connect({ clientId: `sub${qos}` });
      expect(await rawSubscribe(c, "downgrade", qos)).toBe(qos);
      subs.push(c);
    }
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("downgrade", "m", { qos: pubQoS, packetId: pubQoS === 0 ? 0 : 1 }));
    for (const [granted, c] of subs.entries()) {
      const p = await nextPublish(c, "downgrade");
      expect({ granted, qos: p.qos }).toEqual({ granted, qos: Math.min(granted, pubQoS) as QoS });
      expect(p.packetId === 0).toBe(p.qos === 0);
    }
  });

  test.each([5, 4] as const)("v%d: after its PUBACK, a QoS 1 PUBLISH with the same identifier is a new message, DUP or not [MQTT-4.3.2-5]", async (version) => {
    const h = await start();
    const sub = await h.connect({ protocolVersion: version, clientId: "sub" });
    await rawSubscribe(sub, "again", 0);
    const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
    pub.send(publishPacket("again", "m", { qos: 1, packetId: 3 }));
    await nextAck(pub, PacketType.PUBACK, 3);
    pub.send(publishPacket("again", "m", { qos: 1, packetId: 3, dup: true }));
    await nextAck(pub, PacketType.PUBACK, 3);
    await settle(pub, sub);
    expect(takePublishes(sub).length).toBe(2);
  });

  test("[MQTT-3.3.1-3] the DUP flag of a forwarded message says only whether the broker is re-sending it, not whether the publisher was", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "dup/#", 2);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("dup/1", "m", { qos: 1, packetId: 1, dup: true }));
    pub.send(publishPacket("dup/2", "m", { qos: 2, packetId: 2, dup: true }));
    expect((await nextPublish(sub, "dup/1")).dup).toBe(false);
    expect((await nextPublish(sub, "dup/2")).dup).toBe(false);
  });

  test("a PUBLISH that goes out as it came in (same level, QoS and retain flag) carries the subscriber's own packet identifier and every property unaltered [MQTT-3.3.2-17] [MQTT-3.3.2-20]; one that may not (retain, 3.1.1, subscription identifier) is encoded for its subscriber", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "fwd/+", 1);
    const rap = await h.connect({ clientId: "rap" });
    rap.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: "fwd/+", qos: 1, noLocal: false, retainAsPublished: true, retainHandling: 0 }], properties: { subscriptionIdentifiers: [7] } });
    await rap.next(PacketType.SUBACK);
    const old = await h.connect({ protocolVersion: 4, clientId: "old" });
    await rawSubscribe(old, "fwd/+", 1);
    const pub = await h.connect({ clientId: "pub" });
    const properties = { payloadFormatIndicator: 1, contentType: "text/plain", responseTopic: "reply/here", correlationData: utf8("corr"), userProperties: [["k", "v"], ["k", "w"]] as [string, string][] };
    pub.send(publishPacket("fwd/a", "live", { qos: 1, packetId: 4242, properties }));
    pub.send(publishPacket("fwd/b", "kept", { qos: 1, packetId: 4243, retain: true, properties }));
    for (const c of [sub, rap, old]) {
      const live = await nextPublish(c, "fwd/a");
      const kept = await nextPublish(c, "fwd/b");
      expect([live.qos, live.dup, live.retain, text(live.payload)]).toEqual([1, false, false, "live"]);
      expect([kept.qos, kept.dup, kept.retain, text(kept.payload)]).toEqual([1, false, c === rap, "kept"]);
      expect([live.packetId, kept.packetId]).toEqual([1, 2]); // the subscriber's own, not the publisher's 4242 and 4243
      const expected = c === old ? {} : c === rap ? { ...properties, subscriptionIdentifiers: [7] } : properties;
      expect(live.properties).toEqual(expected);
      expect(kept.properties).toEqual(expected);
    }
  });

  test("[MQTT-3.2.2-11] a PUBLISH above the broker's Maximum QoS: DISCONNECT 0x9B QoS not supported", async () => {
    const h = await start({ maximumQoS: 1 });
    const { client: pub, connack } = await h.connectAck({ clientId: "pub" });
    expect(connack.properties.maximumQoS).toBe(1);
    pub.send(publishPacket("capped", "m", { qos: 2, packetId: 1 }));
    await disconnectedWith(pub, ReasonCode.QoSNotSupported);
  });

  test("[MQTT-3.2.2-9] a broker with Maximum QoS 1 says so in CONNACK; [MQTT-3.2.2-10] a SUBSCRIBE for QoS 2 is accepted, granted QoS 1, and delivery is at QoS 1", async () => {
    const h = await start({ maximumQoS: 1 });
    const { client: sub, connack } = await h.connectAck({ clientId: "sub" });
    expect(connack.properties.maximumQoS).toBe(1);
    expect(await rawSubscribe(sub, "capped", 2)).toBe(1);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("capped", "m", { qos: 1, packetId: 1 }));
    expect((await nextPublish(sub, "capped")).qos).toBe(1);
  });
});

describe("QoS 0 to one subscriber (the frame goes as it came when the subscriber gets the same bytes)", () => {
  test("[MQTT-3.8.3-3] No Local: the only subscriber publishing to its own filter gets nothing; another publisher's message it gets", async () => {
    const h = await start();
    const self = await h.connect({ clientId: "self" });
    await subscribeAll(self, [subscription("nl0/x", { noLocal: true })]);
    self.send(publishPacket("nl0/x", "mine"));
    const other = await h.connect({ clientId: "other" });
    other.send(publishPacket("nl0/x", "theirs"));
    expect(text((await nextPublish(self, "nl0/x")).payload)).toBe("theirs");
    await settle(self, other);
    expect(takePublishes(self)).toEqual([]);
  });

  test("[MQTT-3.3.4-3] a subscription identifier: the only subscriber gets it in the PUBLISH, with the publisher's properties", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    await subscribeAll(sub, [subscription("sid0/+")], 1, { subscriptionIdentifiers: [42] });
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("sid0/a", "m", { properties: { userProperties: [["k", "v"]], contentType: "text/plain" } }));
    const p = await nextPublish(sub, "sid0/a");
    expect(p.properties).toEqual({ userProperties: [["k", "v"]], contentType: "text/plain", subscriptionIdentifiers: [42] });
  });

  test("between levels: a 3.1.1 subscriber gets a v5 publisher's message without properties, a v5 one gets a 3.1.1 publisher's with none", async () => {
    const h = await start();
    const old = await h.connect({ protocolVersion: 4, clientId: "old" });
    await rawSubscribe(old, "lv0/v5", 0);
    const fresh = await h.connect({ clientId: "fresh" });
    await rawSubscribe(fresh, "lv0/v4", 0);
    const pub5 = await h.connect({ clientId: "pub5" });
    pub5.send(publishPacket("lv0/v5", "from v5", { properties: { userProperties: [["k", "v"]], payloadFormatIndicator: 1 } }));
    const pub4 = await h.connect({ protocolVersion: 4, clientId: "pub4" });
    pub4.send(publishPacket("lv0/v4", "from 3.1.1"));
    const a = await nextPublish(old, "lv0/v5");
    expect([text(a.payload), a.properties]).toEqual(["from v5", {}]);
    const b = await nextPublish(fresh, "lv0/v4");
    expect([text(b.payload), b.properties]).toEqual(["from 3.1.1", {}]);
  });

  test("one read of 500 PUBLISH packets to one subscriber, QoS 0 with QoS 1, retained and unsubscribed ones among them: each arrives once, in order, with its own payload", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "run/+", 1);
    const pub = await h.connect({ clientId: "pub" });
    const sent: string[] = [];
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 500; i++) {
      // forwarded frames run on in the read; the others break the run: a QoS 1 one (its packet
      // identifier patched), a retained one (encoded: the subscriber gets RETAIN 0), one nobody gets
      const qos = i % 50 === 49 ? 1 : 0;
      const retain = i % 17 === 16;
      const topic = i % 13 === 12 ? "other/x" : i % 7 === 0 ? "run/b" : "run/a";
      const payload = `m${i}`.padEnd(2 + (i % 40), "x");
      if (topic !== "other/x") sent.push(`${topic} ${payload} ${qos} false`);
      frames.push(encodePacket(publishPacket(topic, payload, { qos, retain, packetId: qos === 1 ? i : 0 }), 5));
    }
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    frames.reduce((at, f) => (all.set(f, at), at + f.length), 0);
    pub.send(all); // about 12 KB: one write, read at once
    const got = await receivePublishes(sub, sent.length);
    await settle(pub, sub);
    expect([...got, ...takePublishes(sub)].map((p) => `${text(p.topic)} ${text(p.payload)} ${p.qos} ${p.retain}`)).toEqual(sent);
  });

  test("[MQTT-3.1.2-24] a message bigger than the only subscriber's Maximum Packet Size is not sent to it; a smaller one after it is", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub", properties: { maximumPacketSize: 200 } });
    await rawSubscribe(sub, "cap0", 0);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("cap0", new Uint8Array(500)));
    pub.send(publishPacket("cap0", "small"));
    expect(text((await nextPublish(sub, "cap0")).payload)).toBe("small");
    await settle(pub, sub);
    expect(takePublishes(sub)).toEqual([]);
    expect(h.broker.counters.dropped.too_large).toBe(1);
  });
});

describe("topics of consecutive PUBLISHes", () => {
  test("a publisher's topics, repeated, alternating, of equal length, differing in one byte or not ASCII, each reach exactly their subscribers", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    const one = await h.connect({ clientId: "one" });
    await rawSubscribe(sub, "t/+", 0);
    await rawSubscribe(one, "t/1", 0);
    const pub = await h.connect({ clientId: "pub" });
    const topics = ["t/1", "t/1", "t/2", "t/1", "t/ü", "t/ü", "t/ö", "t/1", "t/12", "t/1"];
    for (const [i, topic] of topics.entries()) pub.send(publishPacket(topic, String(i)));
    const got = await receivePublishes(sub, topics.length);
    expect(got.map((p) => `${text(p.topic)} ${text(p.payload)}`)).toEqual(topics.map((t, i) => `${t} ${i}`));
    await settle(pub, one);
    expect(takePublishes(one).map((p) => text(p.payload))).toEqual(["0", "1", "3", "7", "9"]);
  });
});

describe("packet identifiers and acknowledgements", () => {
  test("[MQTT-2.2.1-4] identifiers of outgoing QoS 1 messages are non-zero, unique among the unacknowledged ones, and reused once acknowledged", async () => {
    const window = 1000;
    const total = 65535 + 2 * window; // the identifiers go round within 1..2000 (twice the window) many times
    const h = await start({ maxQueuedMessages: total, maxInflight: 65535 });
    const sub = await h.connect({ clientId: "sub", properties: { receiveMaximum: window } });
    await rawSubscribe(sub, "ids", 1);
    const pub = await h.connect({ clientId: "pub" });
    // one encoded PUBLISH, copied with packet identifiers 1..n patched in (they follow the topic "ids")
    const template = encodePacket(publishPacket("ids", "x", { qos: 1, packetId: 1 }), 5);
    const idAt = 2 + 2 + 3;
    const batch = 1000;
    for (let sent = 0; sent < total; sent += batch) {
      const n = Math.min(batch, total - sent);
      const bytes = new Uint8Array(template.length * n);
      for (let i = 0; i < n; i++) {
        bytes.set(template, i * template.length);
        bytes[i * template.length + idAt] = (i + 1) >> 8;
        bytes[i * template.length + idAt + 1] = (i + 1) & 0xff;
      }
      pub.send(bytes);
      await nextAck(pub, PacketType.PUBACK, n); // the broker has taken the batch
    }

    const problems: string[] = [];
    const seen = new Map<number, number>();
    let received = 0;
    while (received < total) {
      const batch = await receivePublishes(sub, Math.min(window, total - received)); // the window is full: nothing more comes until PUBACKs
      const unacknowledged = new Set<number>();
      for (const [i, p] of batch.entries()) {
        const id = p.packetId;
        if (id === 0) problems.push(`message ${received + i} has packet identifier 0`);
        if (unacknowledged.has(id)) problems.push(`message ${received + i} reuses the unacknowledged identifier ${id}`);
        unacknowledged.add(id);
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
      if (batch.length > window) problems.push(`${batch.length} messages unacknowledged at once`);
      received += batch.length;
      sub.send(Buffer.concat([...unacknowledged].map((id) => encodePacket({ type: PacketType.PUBACK, packetId: id, reasonCode: 0, properties: {} }, 5))));
    }
    await settle(pub, sub);
    expect(problems).toEqual([]);
    expect(takePublishes(sub)).toEqual([]);
    expect(received).toBe(total);
    expect(Math.max(...seen.keys())).toBeLessThanOrEqual(2 * window); // they go round up to twice the number in flight (Session.allocatePacketId)
    expect([...seen.values()].some((n) => n > 1)).toBe(true); // and identifiers came back after their PUBACK
    await waitUntil(() => inflight("sub") === 0, "every message to sub was acknowledged");
  }, 30_000); // over 65,000 messages each way: bounds a hang generously on a loaded machine

  test("[MQTT-3.3.4-9] no more unacknowledged messages than the subscriber's Receive Maximum: the rest follow as acknowledgements arrive", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub", properties: { receiveMaximum: 3 } });
    await rawSubscribe(sub, "window", 2);
    const pub = await h.connect({ clientId: "pub" });
    for (let i = 1; i <= 7; i++) pub.send(publishPacket("window", `m${i}`, { qos: (1 + (i % 2)) as QoS, packetId: i }));
    await settle(pub, sub);
    const first = takePublishes(sub);
    expect(first.map((p) => text(p.payload))).toEqual(["m1", "m2", "m3"]);
    expect(new Set(first.map((p) => p.packetId)).size).toBe(3);
    const order: string[] = first.map((p) => text(p.payload));
    const pending = [...first];
    while (pending.length > 0) {
      const p = pending.shift()!;
      if (p.qos === 1) sub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      else {
        sub.send({ type: PacketType.PUBREC, packetId: p.packetId, reasonCode: 0, properties: {} });
        await nextAck(sub, PacketType.PUBREL, p.packetId);
        await settle(sub);
        expect(takePublishes(sub)).toEqual([]); // PUBREC alone does not free the slot
        sub.send({ type: PacketType.PUBCOMP, packetId: p.packetId, reasonCode: 0, properties: {} });
      }
      await settle(sub);
      const next = takePublishes(sub);
      expect(next.length).toBeLessThanOrEqual(1);
      pending.push(...next);
      order.push(...next.map((q) => text(q.payload)));
    }
    expect(order).toEqual(["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    expect(inflight("sub")).toBe(0);
  });

  test("[MQTT-4.3.3-4] a PUBREC with a failure reason code ends the QoS 2 exchange: no PUBREL, and its window slot is free again [MQTT-3.3.4-9]", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub", properties: { receiveMaximum: 1 } });
    await rawSubscribe(sub, "refused", 2);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("refused", "first", { qos: 2, packetId: 1 }));
    pub.send(publishPacket("refused", "second", { qos: 2, packetId: 2 }));
    const first = await nextPublish(sub, "refused");
    expect(text(first.payload)).toBe("first");
    sub.send({ type: PacketType.PUBREC, packetId: first.packetId, reasonCode: ReasonCode.UnspecifiedError, properties: {} });
    const second = await nextPublish(sub, "refused");
    expect(text(second.payload)).toBe("second");
    await settle(sub);
    expect(sub.received.filter((p) => p.type === PacketType.PUBREL)).toEqual([]);
    expect(inflight("sub")).toBe(1);
  });

  test("[MQTT-3.3.2-5] a queued message whose Message Expiry Interval passes before it can be sent is not sent", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub", properties: { receiveMaximum: 1 } });
    await rawSubscribe(sub, "expire", 1);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("expire", "in flight", { qos: 1, packetId: 1 }));
    pub.send(publishPacket("expire", "short-lived", { qos: 1, packetId: 2, properties: { messageExpiryInterval: 1 } }));
    pub.send(publishPacket("expire", "long-lived", { qos: 1, packetId: 3, properties: { messageExpiryInterval: 3600 } }));
    await nextAck(pub, PacketType.PUBACK, 3);
    const queuedBy = Date.now(); // the broker received all three before this instant
    const first = await nextPublish(sub, "expire");
    expect(text(first.payload)).toBe("in flight");
    await waitUntil(() => Date.now() > queuedBy + 1000, "the queued message's one-second lifetime has passed");
    sub.send({ type: PacketType.PUBACK, packetId: first.packetId, reasonCode: 0, properties: {} });
    const next = await nextPublish(sub, "expire");
    expect(text(next.payload)).toBe("long-lived");
    expect(next.properties.messageExpiryInterval).toBeLessThanOrEqual(3600);
    sub.send({ type: PacketType.PUBACK, packetId: next.packetId, reasonCode: 0, properties: {} });
    await settle(pub, sub);
    expect(takePublishes(sub)).toEqual([]);
  });

  test("(section 3.7.2.1) PUBREL for an unknown packet identifier: v5 PUBCOMP 0x92 Packet Identifier not found, and the connection stays up", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    c.send({ type: PacketType.PUBREL, packetId: 77, reasonCode: 0, properties: {} });
    expect((await nextAck(c, PacketType.PUBCOMP, 77)).reasonCode).toBe(ReasonCode.PacketIdentifierNotFound);
    await settle(c);
    expect(c.isClosed).toBe(false);
  });

  test("[MQTT-4.3.3-11] 3.1.1: PUBREL for an unknown packet identifier is still answered with PUBCOMP", async () => {
    const h = await start();
    const c = await h.connect({ protocolVersion: 4, clientId: "c" });
    c.send({ type: PacketType.PUBREL, packetId: 77, reasonCode: 0, properties: {} });
    expect((await nextAck(c, PacketType.PUBCOMP, 77)).packetId).toBe(77);
  });

  test("(section 3.6.2.1) PUBREC for an identifier the broker never sent: PUBREL 0x92; a stray PUBACK or PUBCOMP is ignored", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    c.send({ type: PacketType.PUBREC, packetId: 3, reasonCode: 0, properties: {} });
    expect((await nextAck(c, PacketType.PUBREL, 3)).reasonCode).toBe(ReasonCode.PacketIdentifierNotFound);
    c.send({ type: PacketType.PUBACK, packetId: 4, reasonCode: 0, properties: {} });
    c.send({ type: PacketType.PUBCOMP, packetId: 5, reasonCode: 0, properties: {} });
    await settle(c);
    expect(c.received).toEqual([]);
    expect(c.isClosed).toBe(false);
  });
});

describe("v5 properties", () => {
  const properties = {
    payloadFormatIndicator: 1,
    contentType: "application/json; charset=utf-8",
    responseTopic: "reply/to/me",
    correlationData: new Uint8Array([0, 1, 2, 0xfe, 0xff]),
    userProperties: [["b", "2"], ["a", "1"], ["b", "another 2"], ["ключ", "значение"]] as [string, string][],
  };

  test.each([0, 1, 2] as const)(
    "QoS %d: user properties in order [MQTT-3.3.2-17] [MQTT-3.3.2-18], content type [MQTT-3.3.2-20], response topic [MQTT-3.3.2-15], correlation data [MQTT-3.3.2-16] and payload format indicator [MQTT-3.3.2-4] are forwarded unaltered",
    async (qos) => {
      const h = await start();
      const sub = await h.connect({ clientId: "sub" });
      await rawSubscribe(sub, "props/#", 2);
      const pub = await h.connect({ clientId: "pub" });
      pub.send(publishPacket("props/x", '{"ok":true}', { qos, packetId: qos === 0 ? 0 : 1, properties }));
      const p = await nextPublish(sub, "props/x");
      expect(p.properties).toEqual(properties);
      expect(text(p.payload)).toBe('{"ok":true}');
    },
  );

  test("[MQTT-3.3.2-6] the Message Expiry Interval is forwarded, less the time the message waited", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "expiry", 1);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("expiry", "m", { qos: 1, packetId: 1, properties: { messageExpiryInterval: 120 } }));
    const interval = (await nextPublish(sub, "expiry")).properties.messageExpiryInterval;
    expect(interval).toBeGreaterThan(0);
    expect(interval).toBeLessThanOrEqual(120);
  });

  test("(section 3.3.2.3.2) a payload marked UTF-8 that is not valid UTF-8: DISCONNECT 0x99 Payload format invalid, and it is not delivered", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "utf8", 0);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("utf8", new Uint8Array([0x68, 0x69, 0xc3, 0x28]), { qos: 1, packetId: 1, properties: { payloadFormatIndicator: 1 } }));
    await disconnectedWith(pub, ReasonCode.PayloadFormatInvalid);
    expect(pub.received.filter((p) => p.type === PacketType.PUBACK)).toEqual([]);
    await settle(sub);
    expect(takePublishes(sub)).toEqual([]);
  });

  test("the same bytes without the UTF-8 marker are delivered as they are", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "binary", 0);
    const pub = await h.connect({ clientId: "pub" });
    const payload = new Uint8Array([0x68, 0x69, 0xc3, 0x28, 0x00, 0xff]);
    pub.send(publishPacket("binary", payload, { properties: { payloadFormatIndicator: 0 } }));
    const p = await nextPublish(sub, "binary");
    expect(p.payload).toEqual(payload);
    expect(p.properties.payloadFormatIndicator).toBe(0);
  });

  test("[MQTT-3.3.4-6] a PUBLISH from a client carrying a Subscription Identifier: DISCONNECT 0x82 Protocol Error", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "subid", 0);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("subid", "m", { properties: { subscriptionIdentifiers: [3] } }));
    await disconnectedWith(pub, ReasonCode.ProtocolError);
    await settle(sub);
    expect(takePublishes(sub)).toEqual([]);
  });
});

describe("topic aliases from the client (section 3.3.2.3.4)", () => {
  test("[MQTT-3.3.2-12] an alias is set with a topic and used with an empty one, every value up to the maximum is accepted, an alias can be remapped; subscribers see the topic and no alias", async () => {
    const h = await start({ topicAliasMaximum: 10 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "alias/#", 1);
    const { client: pub, connack } = await h.connectAck({ clientId: "pub" });
    expect(connack.properties.topicAliasMaximum).toBe(10);
    const sends: [string, number, string][] = [
      ["alias/one", 1, "m1"],
      ["", 1, "m2"],
      ["alias/ten", 10, "m3"],
      ["", 10, "m4"],
      ["alias/uno", 1, "m5"], // remaps alias 1
      ["", 1, "m6"],
      ["", 10, "m7"],
    ];
    sends.forEach(([topic, topicAlias, payload], i) => pub.send(publishPacket(topic, payload, { qos: 1, packetId: i + 1, properties: { topicAlias } })));
    const got: [string, string][] = [];
    for (let i = 0; i < sends.length; i++) {
      const p = await nextPublish(sub);
      expect(p.properties.topicAlias).toBeUndefined();
      got.push([text(p.topic), text(p.payload)]);
      sub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
    }
    expect(got).toEqual([
      ["alias/one", "m1"],
      ["alias/one", "m2"],
      ["alias/ten", "m3"],
      ["alias/ten", "m4"],
      ["alias/uno", "m5"],
      ["alias/uno", "m6"],
      ["alias/ten", "m7"],
    ]);
    await nextAck(pub, PacketType.PUBACK, sends.length);
    expect(pub.isClosed).toBe(false);
  });

  test.each([
    [10, 11],
    [0, 1],
  ])("[MQTT-3.3.2-9] Topic Alias Maximum %d, alias %d: DISCONNECT 0x94 Topic Alias invalid", async (topicAliasMaximum, topicAlias) => {
    const h = await start({ topicAliasMaximum });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "alias/#", 0);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("alias/too-big", "m", { properties: { topicAlias } }));
    await disconnectedWith(pub, ReasonCode.TopicAliasInvalid);
    await settle(sub);
    expect(takePublishes(sub)).toEqual([]);
  });

  test("an empty topic with an alias that was never set: DISCONNECT 0x82 Protocol Error", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("", "m", { properties: { topicAlias: 4 } }));
    await disconnectedWith(pub, ReasonCode.ProtocolError);
  });

  test("[MQTT-3.3.2-7] aliases do not carry over to the next connection of the same session", async () => {
    const h = await start();
    const first = await h.connect({ clientId: "pub", cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    first.send(publishPacket("alias/kept", "m", { properties: { topicAlias: 2 } }));
    first.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    await first.closed.promise;
    await waitUntil(() => !h.broker.clients.has("pub"), "the broker let the first connection go");
    const { client: second, connack } = await h.connectAck({ clientId: "pub", cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    expect(connack.sessionPresent).toBe(true);
    second.send(publishPacket("", "m", { properties: { topicAlias: 2 } }));
    await disconnectedWith(second, ReasonCode.ProtocolError);
  });
});

describe("between protocol levels", () => {
  test("a v5 publisher's message reaches a 3.1.1 subscriber without any v5 field, and a 3.1.1 publisher's reaches a v5 subscriber", async () => {
    const h = await start();
    const v4 = await h.connect({ protocolVersion: 4, clientId: "v4" });
    const v5 = await h.connect({ protocolVersion: 5, clientId: "v5" });
    await rawSubscribe(v4, "mixed/to-v4", 2);
    await rawSubscribe(v5, "mixed/to-v5", 2);
    v5.send({ type: PacketType.SUBSCRIBE, packetId: 2, subscriptions: [{ topicFilter: "mixed/+", qos: 1, noLocal: true, retainAsPublished: true, retainHandling: 0 }], properties: { subscriptionIdentifiers: [9] } });
    await v5.next(PacketType.SUBACK);

    const properties = { payloadFormatIndicator: 1, messageExpiryInterval: 300, contentType: "text/plain", responseTopic: "mixed/reply", correlationData: utf8("corr"), userProperties: [["k", "v"]] as [string, string][] };
    v5.send(publishPacket("mixed/to-v4", "from v5", { qos: 2, packetId: 1, retain: true, properties: { ...properties, topicAlias: 1 } }));
    const atV4 = await nextPublish(v4, "mixed/to-v4");
    // decoded at protocol level 4: a property block would have shown up at the start of the payload
    expect({ topic: text(atV4.topic), payload: text(atV4.payload), qos: atV4.qos, retain: atV4.retain, properties: atV4.properties }).toEqual({ topic: "mixed/to-v4", payload: "from v5", qos: 2, retain: false, properties: {} });

    v4.send(publishPacket("mixed/to-v5", "from 3.1.1", { qos: 1, packetId: 1 }));
    const atV5 = (await nextPublish(v5, "mixed/to-v5")) as PublishPacket;
    expect({ payload: text(atV5.payload), qos: atV5.qos, properties: atV5.properties }).toEqual({ payload: "from 3.1.1", qos: 1, properties: { subscriptionIdentifiers: [9] } });
  });
});
