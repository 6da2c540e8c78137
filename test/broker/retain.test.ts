/**
 * Retained messages as raw conversations with a broker on port 0: storing, replacing and deleting,
 * the RETAIN flag on what subscribers receive, Retain Handling, and message expiry.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { PacketType, ReasonCode, type DisconnectPacket, type QoS } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { nextPublish, publishPacket, rawSubscribe, RawHarness, settle, subscribeAll, subscription, takePublishes, text, waitUntil, type RawClient } from "./helpers";

let h: RawHarness | null = null;
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

/** Publishes a retained message at QoS 1 and waits for its PUBACK: the broker has stored it. */
async function retain(pub: RawClient, topic: string, payload: string, packetId = 1, properties = {}): Promise<void> {
  pub.send(publishPacket(topic, payload, { qos: 1, packetId, retain: true, properties }));
  await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === packetId);
}

/** What `c` received since the last call, as [topic, payload, RETAIN, QoS]. */
function received(c: RawClient): [string, string, boolean, QoS][] {
  return takePublishes(c).map((p) => [text(p.topic), text(p.payload), p.retain, p.qos]);
}

/** Subscribes `c` to one filter (v5 options in `fields`), then lets whatever the broker sends for it arrive. */
async function subscribeSettled(c: RawClient, filter: string, fields: Parameters<typeof subscription>[1] = {}, packetId = 1): Promise<void> {
  await subscribeAll(c, [subscription(filter, fields)], packetId);
  await settle(c);
}

describe("storing, replacing and deleting", () => {
  test.each([5, 4] as const)(
    "v%d: a retained message is stored [MQTT-3.3.1-5] and sent to a new subscription with RETAIN 1 ((3.1.1) [MQTT-3.3.1-8], section 3.3.1.3) at the lower QoS",
    async (version) => {
      const h = await start();
      const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
      await retain(pub, "r/a", "kept");
      const sub0 = await h.connect({ protocolVersion: version, clientId: "sub0" });
      await subscribeSettled(sub0, "r/a", { qos: 0 });
      expect(received(sub0)).toEqual([["r/a", "kept", true, 0]]);
      const sub2 = await h.connect({ protocolVersion: version, clientId: "sub2" });
      await subscribeSettled(sub2, "r/+", { qos: 2 });
      expect(received(sub2)).toEqual([["r/a", "kept", true, 1]]);
    },
  );

  test("a wildcard subscription gets the retained message of every matching topic, and '$' topics only when the filter names them [MQTT-4.7.2-1]", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "w/a", "1", 1);
    await retain(pub, "w/b/c", "2", 2);
    await retain(pub, "x/a", "3", 3);
    await retain(pub, "$w/a", "4", 4);
    const all = await h.connect({ clientId: "all" });
    await subscribeSettled(all, "#");
    expect(received(all).map(([t]) => t).sort()).toEqual(["w/a", "w/b/c", "x/a"]);
    const w = await h.connect({ clientId: "w" });
    await subscribeSettled(w, "w/#");
    expect(received(w).map(([t]) => t).sort()).toEqual(["w/a", "w/b/c"]);
    const dollar = await h.connect({ clientId: "dollar" });
    await subscribeSettled(dollar, "$w/+");
    expect(received(dollar)).toEqual([["$w/a", "4", true, 0]]);
  });

  test("[MQTT-3.3.1-5] a new retained message replaces the one stored for its topic", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "r/a", "old", 1);
    await retain(pub, "r/a", "new", 2);
    const sub = await h.connect({ clientId: "sub" });
    await subscribeSettled(sub, "r/a", { qos: 1 });
    expect(received(sub)).toEqual([["r/a", "new", true, 1]]);
  });

  test.each([5, 4] as const)("v%d: [MQTT-3.3.1-6] a retained message with an empty payload deletes the stored one, and reaches current subscribers as usual", async (version) => {
    const h = await start();
    const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
    await retain(pub, "r/a", "doomed", 1);
    const current = await h.connect({ protocolVersion: version, clientId: "current" });
    await subscribeSettled(current, "r/a", { qos: 1 });
    expect(received(current)).toEqual([["r/a", "doomed", true, 1]]);
    await retain(pub, "r/a", "", 2);
    await settle(current);
    expect(received(current)).toEqual([["r/a", "", false, 1]]);
    const later = await h.connect({ protocolVersion: version, clientId: "later" });
    await subscribeSettled(later, "r/#", { qos: 1 });
    expect(received(later)).toEqual([]);
  });

  test("a retained message published through a topic alias is stored under its topic name", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("r/aliased", "set", { properties: { topicAlias: 1 } }));
    pub.send(publishPacket("", "through the alias", { qos: 1, packetId: 1, retain: true, properties: { topicAlias: 1 } }));
    await pub.next(PacketType.PUBACK);
    const sub = await h.connect({ clientId: "sub" });
    await subscribeSettled(sub, "r/#");
    expect(received(sub)).toEqual([["r/aliased", "through the alias", true, 0]]);
  });

  test("[MQTT-3.3.1-7] a retained message with an empty payload is not stored", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "r/empty", "");
    expect(h.broker.retained.has("r/empty")).toBe(false);
    const sub = await h.connect({ clientId: "sub" });
    await subscribeSettled(sub, "r/empty");
    expect(received(sub)).toEqual([]);
  });

  test("[MQTT-3.3.1-8] a message with RETAIN 0 neither stores, replaces nor removes a retained message", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("r/a", "not retained"));
    await retain(pub, "r/b", "retained", 1);
    pub.send(publishPacket("r/b", "live"));
    pub.send(publishPacket("r/b", ""));
    await settle(pub);
    const sub = await h.connect({ clientId: "sub" });
    await subscribeSettled(sub, "r/+");
    expect(received(sub)).toEqual([["r/b", "retained", true, 0]]);
  });
});

describe("the RETAIN flag of live messages", () => {
  test("a live retained message reaches a 3.1.1 subscriber with RETAIN 0 ((3.1.1) [MQTT-3.3.1-9]) and a v5 subscriber without Retain As Published with RETAIN 0 [MQTT-3.3.1-12]; Retain As Published keeps it [MQTT-3.3.1-13]", async () => {
    const h = await start();
    const v4 = await h.connect({ protocolVersion: 4, clientId: "v4" });
    const v5 = await h.connect({ clientId: "v5" });
    const rap = await h.connect({ clientId: "rap" });
    await subscribeSettled(v4, "live/#", { qos: 1 });
    await subscribeSettled(v5, "live/#", { qos: 1 });
    await subscribeSettled(rap, "live/#", { qos: 1, retainAsPublished: true });
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "live/x", "m");
    await settle(v4, v5, rap);
    expect(received(v4)).toEqual([["live/x", "m", false, 1]]);
    expect(received(v5)).toEqual([["live/x", "m", false, 1]]);
    expect(received(rap)).toEqual([["live/x", "m", true, 1]]);
  });

  test.each([5, 4] as const)("v%d: the retained copy sent on subscribing has RETAIN 1, the same message published again to the established subscription has RETAIN 0", async (version) => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "live/y", "first", 1);
    const sub = await h.connect({ protocolVersion: version, clientId: "sub" });
    await subscribeSettled(sub, "live/y");
    await retain(pub, "live/y", "second", 2);
    await settle(sub);
    expect(received(sub)).toEqual([
      ["live/y", "first", true, 0],
      ["live/y", "second", false, 0],
    ]);
  });
});

describe("Retain Handling", () => {
  test.each([
    [0, "[MQTT-3.3.1-9] sent on every subscribe, the repeated one included", 1, 1],
    [1, "[MQTT-3.3.1-10] sent when the subscription is new, not when it already existed", 1, 0],
    [2, "[MQTT-3.3.1-11] never sent", 0, 0],
  ] as const)("Retain Handling %d: %s", async (retainHandling, _what, onFirst, onRepeat) => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "rh/x", "kept");
    const sub = await h.connect({ clientId: "sub" });
    await subscribeSettled(sub, "rh/x", { qos: 1, retainHandling }, 1);
    const first = received(sub);
    await subscribeSettled(sub, "rh/x", { qos: 1, retainHandling }, 2);
    const repeat = received(sub);
    expect([first.length, repeat.length]).toEqual([onFirst, onRepeat]);
    for (const m of [...first, ...repeat]) expect(m).toEqual(["rh/x", "kept", true, 1]);
    // the subscription is in force whatever the option
    pub.send(publishPacket("rh/x", "live"));
    expect(text((await nextPublish(sub, "rh/x")).payload)).toBe("live");
  });

  test("Retain Handling 1 after UNSUBSCRIBE: the subscription is new again, so the retained message is sent", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "rh/x", "kept");
    const sub = await h.connect({ clientId: "sub" });
    await subscribeSettled(sub, "rh/x", { retainHandling: 1 }, 1);
    sub.send({ type: PacketType.UNSUBSCRIBE, packetId: 2, topicFilters: ["rh/x"], properties: {} });
    await sub.next(PacketType.UNSUBACK);
    await subscribeSettled(sub, "rh/x", { retainHandling: 1 }, 3);
    expect(received(sub).length).toBe(2);
  });

  test("v5: a retained message sent on subscribing carries the subscription's identifier", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "rid/x", "kept");
    const sub = await h.connect({ clientId: "sub" });
    await subscribeAll(sub, [subscription("rid/+")], 1, { subscriptionIdentifiers: [77] });
    const p = await nextPublish(sub, "rid/x");
    expect(p.retain).toBe(true);
    expect(p.properties.subscriptionIdentifiers).toEqual([77]);
  });
});

describe("message expiry (section 3.3.2.3.3)", () => {
  test("an expired retained message is not delivered", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "exp/short", "short-lived", 1, { messageExpiryInterval: 1 });
    const storedBy = Date.now(); // the broker took the message before this instant
    const before = await h.connect({ clientId: "before" });
    await subscribeSettled(before, "exp/short");
    expect(received(before)).toEqual([["exp/short", "short-lived", true, 0]]);
    await waitUntil(() => Date.now() > storedBy + 1000, "the retained message's one-second lifetime has passed");
    const after = await h.connect({ clientId: "after" });
    await subscribeSettled(after, "exp/#");
    expect(received(after)).toEqual([]);
  });

  test("[MQTT-3.3.2-6] a retained message that has not expired is delivered with the lifetime it has left; 3.1.1 subscribers get it without properties", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retain(pub, "exp/long", "long-lived", 1, { messageExpiryInterval: 3600, contentType: "text/plain" });
    const v5 = await h.connect({ clientId: "v5" });
    await subscribeAll(v5, [subscription("exp/long")]);
    const p = await nextPublish(v5, "exp/long");
    expect(p.properties.contentType).toBe("text/plain");
    expect(p.properties.messageExpiryInterval).toBeGreaterThan(0);
    expect(p.properties.messageExpiryInterval).toBeLessThanOrEqual(3600);
    const v4 = await h.connect({ protocolVersion: 4, clientId: "v4" });
    await rawSubscribe(v4, "exp/long", 0);
    const q = await nextPublish(v4, "exp/long");
    expect({ payload: text(q.payload), retain: q.retain, properties: q.properties }).toEqual({ payload: "long-lived", retain: true, properties: {} });
  });
});

describe("retain not available", () => {
  test("[MQTT-3.2.2-14] with retain disabled, CONNACK says so and a retained PUBLISH gets DISCONNECT 0x9A", async () => {
    const h = await start({ retainAvailable: false });
    const { client, connack } = await h.connectAck({ clientId: "pub" });
    expect(connack.properties.retainAvailable).toBe(0);
    client.send(publishPacket("r/a", "m", { retain: true }));
    const d = (await client.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.RetainNotSupported);
    await client.closed.promise;
    expect(h.broker.retained.size).toBe(0);
  });
});

describe("a retained QoS 0 message sent to a new subscription as it is stored (no message built), and where it cannot be", () => {
  /** Publishes a retained QoS 0 message and waits until the broker stores it. */
  async function retainQos0(h: RawHarness, pub: RawClient, topic: string, payload: string, properties = {}): Promise<void> {
    pub.send(publishPacket(topic, payload, { qos: 0, retain: true, properties }));
    await waitUntil(() => h.broker.retained.has(topic), `the retained message on ${topic}`);
  }

  test("v5, v5 with a subscription identifier, 3.1.1: each gets the message with RETAIN 1 and what its subscription asks for", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retainQos0(h, pub, "q0/a", "one", { contentType: "text/plain", userProperties: [["k", "v"]] });
    await retainQos0(h, pub, "q0/b", "two");
    const plain = await h.connect({ clientId: "plain" });
    await subscribeAll(plain, [subscription("q0/+", { qos: 1 })]);
    const withId = await h.connect({ clientId: "withId" });
    await subscribeAll(withId, [subscription("q0/+")], 1, { subscriptionIdentifiers: [9] });
    const v4 = await h.connect({ protocolVersion: 4, clientId: "v4" });
    await rawSubscribe(v4, "q0/+", 1);
    for (const c of [plain, withId, v4]) await settle(c);
    const got = (c: RawClient) =>
      takePublishes(c)
        .map((p) => ({ topic: text(p.topic), payload: text(p.payload), retain: p.retain, qos: p.qos, dup: p.dup, properties: p.properties }))
        .sort((a, b) => a.topic.localeCompare(b.topic));
    expect(got(plain)).toEqual([
      { topic: "q0/a", payload: "one", retain: true, qos: 0, dup: false, properties: { contentType: "text/plain", userProperties: [["k", "v"]] } },
      { topic: "q0/b", payload: "two", retain: true, qos: 0, dup: false, properties: {} },
    ]);
    expect(got(withId).map((p) => [p.topic, p.retain, p.properties.subscriptionIdentifiers])).toEqual([
      ["q0/a", true, [9]],
      ["q0/b", true, [9]],
    ]);
    expect(got(v4)).toEqual([
      { topic: "q0/a", payload: "one", retain: true, qos: 0, dup: false, properties: {} },
      { topic: "q0/b", payload: "two", retain: true, qos: 0, dup: false, properties: {} },
    ]);
  });

  test("stored at QoS 1 and 2, to a QoS 0 subscription: the stored frame less its packet identifier, the remaining length re-encoded (across 16 384, where it takes a byte less)", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    const body = (n: number) => "p".repeat(n);
    // PUBLISH remaining length = 2 + topic (5) + 2 (packet id) + 1 (properties) + payload: 16 384 and more from a payload of 16 374
    const sizes = [1, 2, 16_372, 16_373, 16_374, 16_375, 16_376]; // not 0: an empty retained message is not stored
    for (const [k, n] of sizes.entries()) {
      pub.send(publishPacket(`q0/s${k}`, body(n), { qos: k % 2 === 0 ? 1 : 2, packetId: k + 1, retain: true, properties: k === 0 ? { contentType: "t", userProperties: [["a", "b"]] } : {} }));
      await pub.next(k % 2 === 0 ? PacketType.PUBACK : PacketType.PUBREC);
    }
    const sub = await h.connect({ clientId: "sub" });
    await subscribeAll(sub, [subscription("q0/+", { qos: 0 })]);
    await settle(sub);
    const got = takePublishes(sub).sort((a, b) => text(a.topic).localeCompare(text(b.topic)));
    expect(got.map((p) => ({ topic: text(p.topic), size: p.payload.length, qos: p.qos, retain: p.retain, dup: p.dup, properties: p.properties }))).toEqual(
      sizes.map((n, k) => ({ topic: `q0/s${k}`, size: n, qos: 0, retain: true, dup: false, properties: k === 0 ? { contentType: "t", userProperties: [["a", "b"]] } : {} })),
    );
    expect(got.every((p, k) => text(p.payload) === body(sizes[k]!))).toBe(true);
  });

  test("stored at QoS 1, to a QoS 0 subscription of a client whose Maximum Packet Size is the QoS 0 frame's size: sent; a byte less: not sent [MQTT-3.1.2-24]", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("q0/m", "x".repeat(50), { qos: 1, packetId: 1, retain: true }));
    await pub.next(PacketType.PUBACK);
    const size = 1 + 1 + (2 + 4 + 1 + 50); // fixed header, remaining length: topic, property length, payload
    const fits = await h.connect({ clientId: "fits", properties: { maximumPacketSize: size } });
    const over = await h.connect({ clientId: "over", properties: { maximumPacketSize: size - 1 } });
    for (const c of [fits, over]) await subscribeAll(c, [subscription("q0/m", { qos: 0 })]);
    for (const c of [fits, over]) await settle(c);
    expect(takePublishes(fits).map((p) => p.payload.length)).toEqual([50]);
    expect(takePublishes(over)).toEqual([]);
  });

  test.each([
    ["", []],
    [" (a denied filter: sent as messages)", ["q0/secret/#"]],
  ] as const)("a client with a Maximum Packet Size below the message does not get it [MQTT-3.1.2-24]; a denied filter keeps its topics from every subscription%s", async (_, denied) => {
    const h = await start({ deniedTopicFilters: [...denied] });
    const pub = await h.connect({ clientId: "pub" });
    await retainQos0(h, pub, "q0/big", "x".repeat(200));
    await retainQos0(h, pub, "q0/small", "y");
    // stored as if from before the filter was denied
    h.broker.retain({ topic: "q0/secret/s", topicBytes: new TextEncoder().encode("q0/secret/s"), payload: new TextEncoder().encode("z"), qos: 0, retain: true, properties: {}, expiresAt: 0, persisted: true, ownTopic: true, forms: null, formsShared: true });
    expect(h.broker.retained.has("q0/secret/s")).toBe(true);
    const small = await h.connect({ clientId: "small", properties: { maximumPacketSize: 100 } });
    await subscribeAll(small, [subscription("q0/#")]);
    await settle(small);
    expect(takePublishes(small).map((p) => text(p.topic)).sort()).toEqual(denied.length === 0 ? ["q0/secret/s", "q0/small"] : ["q0/small"]);
    expect(h.broker.counters.dropped.too_large).toBe(1);
  });

  test("[MQTT-3.3.2-6] with an expiry it is sent with the lifetime it has left, not as stored", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    await retainQos0(h, pub, "q0/exp", "v", { messageExpiryInterval: 3600 });
    const storedBy = Date.now();
    await waitUntil(() => Date.now() > storedBy + 1100, "more than a second of its lifetime gone");
    const sub = await h.connect({ clientId: "sub" });
    await subscribeAll(sub, [subscription("q0/exp")]);
    const p = await nextPublish(sub, "q0/exp");
    expect(p.properties.messageExpiryInterval).toBeLessThan(3600);
  });
});
