/**
 * Subscriptions of MQTT 5.0 beyond the basics, as raw conversations with a broker on port 0 and
 * with MQTT.js as the client: shared subscriptions (section 4.8.2: one member of each group gets
 * each message, round robin, skipping members that are offline or full; no retained messages on
 * subscribing; share name rules; No Local forbidden), subscription identifiers and the subscribe
 * options No Local, Retain As Published and Retain Handling through MQTT.js (subscribe.test.ts and
 * retain.test.ts cover them as raw packets), and the broker's optional features switched off:
 * shared subscriptions (0x9E), subscription identifiers (0xA1) and wildcards (0xA2).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { encodePacket, PacketType, ReasonCode, type PublishPacket, type QoS, type UnsubackPacket } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import type { MqttClient } from "mqtt";
import { disconnection, nextPublish, Peers, publishPacket, RawHarness, receivePublishes, settle, subscribeAll, subscription, takePublishes, text, waitUntil, type RawClient } from "./helpers";

let h: RawHarness | null = null;
const peers = new Peers();
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  try {
    await peers.closeAll();
  } finally {
    await h?.cleanup();
    h = null;
  }
});

const url = (h: RawHarness): string => `mqtt://127.0.0.1:${h.port}`;

/** Payloads of the PUBLISH packets `c` received since the last call, in order. */
const payloadsOf = (c: RawClient): string[] => takePublishes(c).map((p) => text(p.payload));

/** "m0" .. "m{n-1}". */
const numbered = (n: number, prefix = "m"): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** Publishes one message per payload on `topic` at `qos` (identifiers from `firstId`), then settles `pub` and `clients`. */
async function publishAll(pub: RawClient, topic: string, payloads: string[], clients: RawClient[], qos: QoS = 0, firstId = 1): Promise<void> {
  payloads.forEach((payload, i) => pub.send(publishPacket(topic, payload, { qos, packetId: qos === 0 ? 0 : firstId + i })));
  await settle(pub, ...clients);
}

/** Connects a client and subscribes it to `filter` (a `$share/` one or not) with `fields`. */
async function member(h: RawHarness, clientId: string, filter: string, fields: Parameters<typeof subscription>[1] = {}, connect: Parameters<RawHarness["connect"]>[0] = {}): Promise<RawClient> {
  const c = await h.connect({ clientId, ...connect });
  const ack = await subscribeAll(c, [subscription(filter, fields)]);
  expect(ack.reasonCodes).toEqual([fields.qos ?? 0]);
  return c;
}

/** Sends UNSUBSCRIBE and waits for its UNSUBACK. */
async function unsubscribe(c: RawClient, filters: string[], packetId = 2): Promise<UnsubackPacket> {
  c.send({ type: PacketType.UNSUBSCRIBE, packetId, topicFilters: filters, properties: {} });
  return (await c.next(PacketType.UNSUBACK, (p) => p.type === PacketType.UNSUBACK && p.packetId === packetId)) as UnsubackPacket;
}

/** Ends a connection with DISCONNECT 0x00 and waits until the broker has let it go (its session stays if it has an expiry). */
async function leave(h: RawHarness, c: RawClient, clientId: string): Promise<void> {
  c.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
  await c.closed.promise;
  await waitUntil(() => !h.broker.clients.has(clientId), `the broker let '${clientId}' go`);
}

/** Sorted copy. */
const sorted = (xs: string[]): string[] => [...xs].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));

/** The subscription identifiers MQTT.js parsed from a PUBLISH (one is a number, several an array). */
const idsOf = (ids: number | number[] | undefined): number[] => (ids === undefined ? [] : ([] as number[]).concat(ids).sort((a, b) => a - b));

/** The reason codes of the SUBACK an MQTT.js subscribe got: MQTT.js rejects on a failure code, with the SUBACK attached. */
async function subackCodes(subscribe: Promise<unknown>): Promise<number[]> {
  return subscribe.then(
    (granted) => (granted as { qos: number }[]).map((g) => g.qos),
    (e: Error & { packet?: { granted?: number[] } }) => {
      if (e.packet?.granted === undefined) throw e;
      return e.packet.granted;
    },
  );
}

/** The reason code of the DISCONNECT the broker sends an MQTT.js client next. */
function nextDisconnect(client: MqttClient): Promise<number | undefined> {
  return new Promise((resolve) => client.once("disconnect", (p) => resolve(p.reasonCode)));
}

describe("shared subscriptions: who gets a message (section 4.8.2)", () => {
  test("each message goes to exactly one member, round robin in the order they joined: 3 members, 30 messages, 10 each", async () => {
    const h = await start();
    const members = [await member(h, "m0", "$share/g/w/t"), await member(h, "m1", "$share/g/w/t"), await member(h, "m2", "$share/g/w/t")];
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "w/t", numbered(30), members);
    const got = members.map(payloadsOf);
    got.forEach((payloads, i) => expect(payloads).toEqual(numbered(30).filter((_, k) => k % 3 === i)));
    expect(sorted(got.flat())).toEqual(sorted(numbered(30)));
  });

  test("every group gets each message once, and ordinary subscribers get everything as usual", async () => {
    const h = await start();
    const g = [await member(h, "g0", "$share/g/w/t", { qos: 1 }), await member(h, "g1", "$share/g/w/t", { qos: 1 }), await member(h, "g2", "$share/g/w/t", { qos: 1 })];
    const k = [await member(h, "k0", "$share/k/w/+"), await member(h, "k1", "$share/k/w/+")];
    const plain = await member(h, "plain", "w/t");
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "w/t", numbered(30), [...g, ...k, plain]);
    const gGot = g.map(payloadsOf);
    const kGot = k.map(payloadsOf);
    expect(gGot.map((x) => x.length)).toEqual([10, 10, 10]);
    expect(kGot.map((x) => x.length)).toEqual([15, 15]);
    expect(sorted(gGot.flat())).toEqual(sorted(numbered(30)));
    expect(sorted(kGot.flat())).toEqual(sorted(numbered(30)));
    expect(payloadsOf(plain)).toEqual(numbered(30));
  });

  test("a group is its share name and its filter: the same share name on two filters is two groups, and one client in both gets each matching message from each", async () => {
    const h = await start();
    const hash = await member(h, "hash", "$share/g/f/#");
    const exact = await member(h, "exact", "$share/g/f/x");
    const both = await h.connect({ clientId: "both" });
    expect((await subscribeAll(both, [subscription("$share/other/f/#"), subscription("$share/another/f/x")])).reasonCodes).toEqual([0, 0]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "f/x", ["one"], [hash, exact, both]);
    expect([payloadsOf(hash), payloadsOf(exact), payloadsOf(both)]).toEqual([["one"], ["one"], ["one", "one"]]);
  });

  test("[MQTT-4.8.2-3] each member's granted QoS is respected: the same QoS 2 messages reach a QoS 0 member at QoS 0 and a QoS 2 member at QoS 2", async () => {
    const h = await start();
    const q0 = await member(h, "q0", "$share/g/q", { qos: 0 });
    const q2 = await member(h, "q2", "$share/g/q", { qos: 2 });
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "q", numbered(4), [q0, q2], 2);
    expect(takePublishes(q0).map((p) => [text(p.payload), p.qos])).toEqual([
      ["m0", 0],
      ["m2", 0],
    ]);
    expect(takePublishes(q2).map((p) => [text(p.payload), p.qos])).toEqual([
      ["m1", 2],
      ["m3", 2],
    ]);
  });

  test("members that are offline with their session kept are skipped; back online they take their turn again, with nothing queued meanwhile", async () => {
    const h = await start();
    const session = { cleanStart: false, properties: { sessionExpiryInterval: 60 } };
    const a = await member(h, "a", "$share/g/o", { qos: 1 }, session);
    const b = await member(h, "b", "$share/g/o", { qos: 1 }, session);
    const c = await member(h, "c", "$share/g/o", { qos: 1 }, session);
    await leave(h, b, "b");
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "o", numbered(10), [a, c], 1);
    expect([payloadsOf(a), payloadsOf(c)]).toEqual([
      ["m0", "m2", "m4", "m6", "m8"],
      ["m1", "m3", "m5", "m7", "m9"],
    ]);
    const { client: back, connack } = await h.connectAck({ clientId: "b", ...session });
    expect(connack.sessionPresent).toBe(true);
    await settle(back);
    expect(payloadsOf(back)).toEqual([]); // skipped, not queued
    await publishAll(pub, "o", ["x", "y", "z"], [a, back, c], 1, 11);
    expect([payloadsOf(a), payloadsOf(back), payloadsOf(c)].map((x) => x.length)).toEqual([1, 1, 1]);
  });

  test("when every member is offline, each QoS 1 message is queued for one of them, in turn, and delivered once when it returns", async () => {
    const h = await start();
    const session = { cleanStart: false, properties: { sessionExpiryInterval: 60 } };
    await leave(h, await member(h, "a", "$share/g/o", { qos: 1 }, session), "a");
    await leave(h, await member(h, "b", "$share/g/o", { qos: 1 }, session), "b");
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "o", numbered(4), [], 1);
    const a = await h.connect({ clientId: "a", ...session });
    const b = await h.connect({ clientId: "b", ...session });
    const [gotA, gotB] = [(await receivePublishes(a, 2)).map((p) => text(p.payload)), (await receivePublishes(b, 2)).map((p) => text(p.payload))];
    await settle(a, b);
    expect([[...gotA!, ...payloadsOf(a)], [...gotB!, ...payloadsOf(b)]]).toEqual([
      ["m0", "m2"],
      ["m1", "m3"],
    ]);
  });

  test("a member whose queue is full is skipped rather than disconnected; the others take its turns", async () => {
    // member 'slow' takes one message at a time (Receive Maximum 1) and does not acknowledge: its
    // queue (at most 2 messages here) fills, and from then on 'fast' gets every message
    const h = await start({ maxQueuedMessages: 2 });
    const slow = await member(h, "slow", "$share/g/s", { qos: 1 }, { properties: { receiveMaximum: 1 } });
    const fast = await member(h, "fast", "$share/g/s", { qos: 1 });
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "s", numbered(10), [fast], 1);
    expect(h.broker.clients.has("slow")).toBe(true); // not disconnected with 0x97 Quota Exceeded
    await settle(slow);
    const first = takePublishes(slow);
    expect(first.map((p) => text(p.payload))).toEqual(["m0"]); // m2 and m4 wait in its queue
    expect(payloadsOf(fast)).toEqual(["m1", "m3", "m5", "m6", "m7", "m8", "m9"]);
    // its queue drains as it acknowledges
    const drained: PublishPacket[] = [];
    let p = first[0]!;
    for (let i = 0; i < 2; i++) {
      slow.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      p = await nextPublish(slow);
      drained.push(p);
    }
    expect(drained.map((q) => text(q.payload))).toEqual(["m2", "m4"]);
  });

  test("a member whose queue is full by its byte bound is skipped too", async () => {
    // each 100-byte message costs the queue a little more than 150 bytes: 'slow' can hold one
    const h = await start({ maxQueuedBytes: 300 });
    const slow = await member(h, "slow", "$share/g/b", { qos: 1 }, { properties: { receiveMaximum: 1 } });
    const fast = await member(h, "fast", "$share/g/b", { qos: 1 });
    const pub = await h.connect({ clientId: "pub" });
    const payloads = numbered(6).map((m) => m.padEnd(100, "."));
    await publishAll(pub, "b", payloads, [fast], 1);
    expect(h.broker.clients.has("slow")).toBe(true); // not disconnected with 0x97 Quota Exceeded
    await settle(slow);
    const [p0, p1, , p3, p4, p5] = payloads as [string, string, string, string, string, string];
    expect(payloadsOf(slow)).toEqual([p0]); // and the third waits in its queue
    expect(payloadsOf(fast)).toEqual([p1, p3, p4, p5]);
  });

  test("a member whose output buffer is full is skipped: the messages go to the others instead of being dropped", async () => {
    // One write from the publisher is handled in one go, and the broker writes buffered output only
    // after it: the 600-byte message that 'full' also subscribes to fills its 512-byte output bound
    // for the rest of that write.
    const h = await start({ maxOutputBytes: 512 });
    const full = await h.connect({ clientId: "full" });
    expect((await subscribeAll(full, [subscription("fill"), subscription("$share/g/work")])).reasonCodes).toEqual([0, 0]);
    const other = await member(h, "other", "$share/g/work");
    const pub = await h.connect({ clientId: "pub" });
    const packets = [publishPacket("fill", "f".repeat(600)), ...numbered(4, "w").map((w) => publishPacket("work", w))];
    pub.send(Buffer.concat(packets.map((p) => encodePacket(p, 5))));
    await settle(pub, full, other);
    expect(payloadsOf(full)).toEqual(["f".repeat(600)]);
    expect(payloadsOf(other)).toEqual(["w0", "w1", "w2", "w3"]);
    // once written out, 'full' takes its turn again
    await publishAll(pub, "work", ["w4", "w5"], [full, other]);
    expect([payloadsOf(full), payloadsOf(other)]).toEqual([["w4"], ["w5"]]);
  });

  test("[MQTT-4.8.2-4] a QoS 2 message whose member lost its connection mid-delivery is completed with that member when it reconnects, never given to another", async () => {
    const h = await start();
    const session = { cleanStart: false, properties: { sessionExpiryInterval: 60 } };
    const a = await member(h, "a", "$share/g/q2", { qos: 2 }, session);
    const b = await member(h, "b", "$share/g/q2", { qos: 2 }, session);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("q2", "m0", { qos: 2, packetId: 1 }));
    expect(text((await nextPublish(a)).payload)).toBe("m0");
    a.end(); // no PUBREC
    await waitUntil(() => !h.broker.clients.has("a"), "the broker noticed that 'a' went away");
    await publishAll(pub, "q2", ["m1"], [b], 2, 2);
    expect(payloadsOf(b)).toEqual(["m1"]);
    const back = await h.connect({ clientId: "a", ...session });
    const again = await nextPublish(back);
    expect([text(again.payload), again.dup, again.qos]).toEqual(["m0", true, 2]);
    back.send({ type: PacketType.PUBREC, packetId: again.packetId, reasonCode: 0, properties: {} });
    await back.next(PacketType.PUBREL);
    back.send({ type: PacketType.PUBCOMP, packetId: again.packetId, reasonCode: 0, properties: {} });
    await settle(back, b);
    expect(payloadsOf(b)).toEqual([]);
    expect(h.broker.sessions.get("a")?.inflight.size).toBe(0);
  });

  test("[MQTT-4.8.2-5] if that member's session ends before it reconnects, the message is not sent to any other member", async () => {
    const h = await start();
    const a = await member(h, "a", "$share/g/q2", { qos: 2 }, { properties: { sessionExpiryInterval: 60 } });
    const b = await member(h, "b", "$share/g/q2", { qos: 2 });
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("q2", "m0", { qos: 2, packetId: 1 }));
    await nextPublish(a);
    a.end();
    await waitUntil(() => !h.broker.clients.has("a"), "the broker noticed that 'a' went away");
    const fresh = await h.connect({ clientId: "a", cleanStart: true }); // the old session ends [MQTT-3.1.2-4]
    await settle(fresh, b);
    expect([payloadsOf(fresh), payloadsOf(b)]).toEqual([[], []]);
  });

  test.each([
    ["PUBACK", 1, PacketType.PUBACK],
    ["PUBREC", 2, PacketType.PUBREC],
  ] as const)("[MQTT-4.8.2-6] a member that refuses a message with %s 0x80 is not sent it again, and no other member gets it", async (_name, qos, ackType) => {
    const h = await start();
    const session = { cleanStart: false, properties: { sessionExpiryInterval: 60 } };
    const a = await member(h, "a", "$share/g/r", { qos }, session);
    const b = await member(h, "b", "$share/g/r", { qos });
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("r", "refused", { qos, packetId: 1 }));
    const p = await nextPublish(a);
    a.send({ type: ackType, packetId: p.packetId, reasonCode: ReasonCode.UnspecifiedError, properties: {} });
    await settle(a, b);
    await leave(h, a, "a");
    const back = await h.connect({ clientId: "a", ...session });
    await settle(back, b);
    expect([payloadsOf(back), payloadsOf(b)]).toEqual([[], []]);
    expect(back.received.filter((x) => x.type === PacketType.PUBREL)).toEqual([]);
  });

  test("[MQTT-3.8.4-3] subscribing again to the same shared subscription replaces the member's options; it is still one member of the group", async () => {
    const h = await start();
    const a = await member(h, "a", "$share/g/rep", { qos: 0 });
    const b = await member(h, "b", "$share/g/rep", { qos: 0 });
    expect((await subscribeAll(a, [subscription("$share/g/rep", { qos: 1 })], 2)).reasonCodes).toEqual([1]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "rep", numbered(4), [a, b], 1);
    expect(takePublishes(a).map((p) => [text(p.payload), p.qos])).toEqual([
      ["m0", 1],
      ["m2", 1],
    ]);
    expect(takePublishes(b).map((p) => [text(p.payload), p.qos])).toEqual([
      ["m1", 0],
      ["m3", 0],
    ]);
  });

  test("a 3.1.1 client and a v5 client can share one group", async () => {
    const h = await start();
    const v5 = await member(h, "v5", "$share/g/mix");
    const v4 = await member(h, "v4", "$share/g/mix", {}, { protocolVersion: 4 });
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "mix", numbered(4), [v5, v4]);
    expect([payloadsOf(v5), payloadsOf(v4)]).toEqual([
      ["m0", "m2"],
      ["m1", "m3"],
    ]);
  });

  test("[MQTT-4.7.2-1] a shared subscription to '#' or '+/...' does not match topics starting with '$'; one that names the '$' level does", async () => {
    const h = await start();
    const hash = await member(h, "hash", "$share/g/#");
    const plus = await member(h, "plus", "$share/g/+/info");
    const sys = await member(h, "sys", "$share/g/$app/+");
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "$app/info", ["dollar"], [hash, plus, sys]);
    expect([payloadsOf(hash), payloadsOf(plus), payloadsOf(sys)]).toEqual([[], [], ["dollar"]]);
  });

  test("[MQTT-3.3.4-3] a shared subscription's identifier comes with the messages its member gets", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    await subscribeAll(c, [subscription("$share/g/id/+")], 1, { subscriptionIdentifiers: [64] });
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("id/x", "m"));
    expect((await nextPublish(c, "id/x")).properties.subscriptionIdentifiers).toEqual([64]);
  });
});

describe("shared subscriptions: subscribing and leaving", () => {
  test("(section 3.3.1.3) no retained message is sent on a shared subscribe, whatever the Retain Handling; live retained messages reach one member, RETAIN as its Retain As Published says", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("ret/a", "kept", { qos: 1, packetId: 1, retain: true }));
    await pub.next(PacketType.PUBACK);
    const c = await h.connect({ clientId: "c" });
    const ack = await subscribeAll(c, [subscription("$share/g/ret/#", { qos: 1, retainHandling: 0, retainAsPublished: true }), subscription("$share/h/ret/a", { qos: 1, retainHandling: 1 })]);
    expect(ack.reasonCodes).toEqual([1, 1]);
    await settle(c);
    expect(takePublishes(c)).toEqual([]);
    const plain = await member(h, "plain", "ret/#"); // an ordinary subscription gets it
    expect(text((await nextPublish(plain, "ret/a")).payload)).toBe("kept");
    pub.send(publishPacket("ret/a", "live", { retain: true }));
    await settle(pub, c);
    expect(takePublishes(c).map((p) => [text(p.payload), p.retain]).sort()).toEqual([
      ["live", false], // group h: no Retain As Published [MQTT-3.3.1-12]
      ["live", true], // group g: Retain As Published [MQTT-3.3.1-13]
    ]);
  });

  test.each([
    ["$share//a", "[MQTT-4.8.2-1] an empty share name"],
    ["$share/g+/a", "[MQTT-4.8.2-2] '+' in the share name"],
    ["$share/g#/a", "[MQTT-4.8.2-2] '#' in the share name"],
    ["$share/g", "[MQTT-4.8.2-2] no '/' and topic filter after the share name"],
    ["$share/g/", "[MQTT-4.8.2-2] an empty topic filter after the share name"],
    ["$share/g/a+", "[MQTT-4.7.1-2] an invalid topic filter after the share name"],
  ])("'%s', %s: SUBACK 0x8F Topic Filter invalid; the rest of the SUBSCRIBE is granted and the connection stays up", async (filter) => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    const ack = await subscribeAll(c, [subscription("ok/a"), subscription(filter, { qos: 1 }), subscription("$share/g/ok/b", { qos: 1 })]);
    expect(ack.reasonCodes).toEqual([0, ReasonCode.TopicFilterInvalid, 1]);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("ok/a", "a"));
    pub.send(publishPacket("ok/b", "b"));
    await settle(pub, c);
    expect(payloadsOf(c)).toEqual(["a", "b"]);
    expect(c.isClosed).toBe(false);
  });

  test("[MQTT-3.8.3-4] No Local on a shared subscription: DISCONNECT 0x82 Protocol Error", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    c.send([
      0x82, 0x10, // SUBSCRIBE, remaining length 16
      0x00, 0x01, // packet identifier 1
      0x00, // property length 0
      0x00, 0x0a, 0x24, 0x73, 0x68, 0x61, 0x72, 0x65, 0x2f, 0x67, 0x2f, 0x61, // topic filter "$share/g/a"
      0x04, // options: QoS 0, No Local
    ]);
    const d = await disconnection(c);
    expect(d.reasonCode).toBe(ReasonCode.ProtocolError);
    expect(d.properties.reasonString).toBeString();
    expect(c.received.filter((p) => p.type === PacketType.SUBACK)).toEqual([]);
  });

  test("UNSUBSCRIBE '$share/g/...' leaves the group: UNSUBACK 0x00, and the remaining members share every message; once all have left, a new member gets them all", async () => {
    const h = await start();
    const [a, b, c] = [await member(h, "a", "$share/g/u"), await member(h, "b", "$share/g/u"), await member(h, "c", "$share/g/u")];
    expect((await unsubscribe(c, ["$share/g/u", "u", "$share/other/u"])).reasonCodes).toEqual([0x00, 0x11, 0x11]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "u", numbered(6), [a, b, c]);
    expect([payloadsOf(a), payloadsOf(b), payloadsOf(c)]).toEqual([["m0", "m2", "m4"], ["m1", "m3", "m5"], []]);
    await unsubscribe(a, ["$share/g/u"]);
    await publishAll(pub, "u", ["x", "y"], [a, b]);
    expect([payloadsOf(a), payloadsOf(b)]).toEqual([[], ["x", "y"]]);
    await unsubscribe(b, ["$share/g/u"]);
    await publishAll(pub, "u", ["nobody"], [a, b, c]);
    expect([a, b, c].flatMap(payloadsOf)).toEqual([]);
    expect((await subscribeAll(c, [subscription("$share/g/u")], 3)).reasonCodes).toEqual([0]);
    await publishAll(pub, "u", ["p", "q"], [c]);
    expect(payloadsOf(c)).toEqual(["p", "q"]);
  });

  test("a member whose session ends (it reconnects with Clean Start) is no longer in the group", async () => {
    const h = await start();
    await member(h, "a", "$share/g/e", {}, { properties: { sessionExpiryInterval: 60 } });
    const b = await member(h, "b", "$share/g/e");
    const a = await h.connect({ clientId: "a", cleanStart: true }); // takes over and starts afresh [MQTT-3.1.2-4]
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "e", numbered(4), [a, b]);
    expect([payloadsOf(a), payloadsOf(b)]).toEqual([[], numbered(4)]);
  });

  test("sharedSubscriptionAvailable false: CONNACK says Shared Subscription Available 0, a shared SUBSCRIBE gets 0x9E and nothing is delivered for it", async () => {
    const h = await start({ sharedSubscriptionAvailable: false });
    const { client: c, connack } = await h.connectAck({ clientId: "c" });
    expect(connack.properties.sharedSubscriptionAvailable).toBe(0);
    expect((await subscribeAll(c, [subscription("$share/g/n"), subscription("n")])).reasonCodes).toEqual([ReasonCode.SharedSubscriptionsNotSupported, 0]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "n", ["once"], [c]);
    expect(payloadsOf(c)).toEqual(["once"]); // from 'n' only
  });
});

describe("shared subscriptions with MQTT.js", () => {
  test("two groups of MQTT.js clients and an ordinary MQTT.js subscriber: 30 messages, 10 each in a group of 3, 15 each in a group of 2, all 30 to the ordinary one", async () => {
    const h = await start();
    const join = async (clientId: string, filter: string) => {
      const peer = await peers.mqttjs(url(h), { protocolVersion: 5, clientId });
      await peer.client.subscribeAsync(filter, { qos: 1 });
      return peer;
    };
    const g = [await join("g0", "$share/g/js/t"), await join("g1", "$share/g/js/t"), await join("g2", "$share/g/js/t")];
    const k = [await join("k0", "$share/k/js/#"), await join("k1", "$share/k/js/#")];
    const plain = await join("plain", "js/t");
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub" });
    for (const m of numbered(30)) await pub.client.publishAsync("js/t", m, { qos: 1 });
    await plain.receive(30);
    await Promise.all([...g.map((p) => p.receive(10)), ...k.map((p) => p.receive(15))]);
    const gGot = g.map((p) => p.inbox.map((m) => m.payload));
    const kGot = k.map((p) => p.inbox.map((m) => m.payload));
    expect(gGot).toEqual([0, 1, 2].map((i) => numbered(30).filter((_, n) => n % 3 === i)));
    expect(kGot).toEqual([0, 1].map((i) => numbered(30).filter((_, n) => n % 2 === i)));
    expect(plain.inbox.map((m) => m.payload)).toEqual(numbered(30));
    for (const p of [...g, ...k]) expect(p.inbox.every((m) => m.topic === "js/t")).toBe(true);
  });

  test("an MQTT.js member that unsubscribes leaves the group to the others", async () => {
    const h = await start();
    const a = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "a" });
    const b = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "b" });
    for (const p of [a, b]) await p.client.subscribeAsync("$share/g/js/u", { qos: 1 });
    await a.client.unsubscribeAsync("$share/g/js/u");
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub" });
    for (const m of numbered(4)) await pub.client.publishAsync("js/u", m, { qos: 1 });
    expect((await b.receive(4)).map((m) => m.payload)).toEqual(numbered(4));
    expect(a.inbox).toEqual([]);
  });

  test("[MQTT-3.8.3-4] MQTT.js subscribing to a shared subscription with No Local gets DISCONNECT 0x82", async () => {
    const h = await start();
    const c = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "c" });
    const disconnected = nextDisconnect(c.client);
    c.client.subscribeAsync("$share/g/js/nl", { qos: 1, nl: true }).catch(() => {}); // fails when the connection closes
    expect(await disconnected).toBe(ReasonCode.ProtocolError);
  });

  test("sharedSubscriptionAvailable false: MQTT.js sees it in CONNACK and its shared subscribe fails with 0x9E", async () => {
    const h = await start({ sharedSubscriptionAvailable: false });
    const c = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "c" });
    expect(c.connack.properties?.sharedSubscriptionAvailable).toBe(false);
    expect(await subackCodes(c.client.subscribeAsync("$share/g/js/x", { qos: 1 }))).toEqual([ReasonCode.SharedSubscriptionsNotSupported]);
    expect(c.client.connected).toBe(true);
  });
});

describe("subscription identifiers and subscribe options with MQTT.js", () => {
  test("[MQTT-3.3.4-3] the Subscription Identifier given in SUBSCRIBE comes back in the PUBLISH properties", async () => {
    const h = await start();
    const sub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "sub" });
    await sub.client.subscribeAsync("si/a", { qos: 1, properties: { subscriptionIdentifier: 42 } });
    await sub.client.subscribeAsync("si/b", { qos: 1 });
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("si/a", "with", { qos: 1 });
    await pub.client.publishAsync("si/b", "without", { qos: 1 });
    const got = await sub.receive(2);
    expect(got.map((m) => [m.payload, m.packet.properties?.subscriptionIdentifier])).toEqual([
      ["with", 42],
      ["without", undefined],
    ]);
  });

  test("[MQTT-3.3.4-3] [MQTT-3.3.4-4] several matching subscriptions: one delivery, at the highest QoS, carrying the identifier of each that has one", async () => {
    const h = await start();
    const sub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "sub" });
    await sub.client.subscribeAsync("si/+", { qos: 0, properties: { subscriptionIdentifier: 1 } });
    await sub.client.subscribeAsync("si/#", { qos: 2, properties: { subscriptionIdentifier: 268435455 } });
    await sub.client.subscribeAsync("si/x", { qos: 1 });
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("si/x", "once", { qos: 2 });
    await pub.client.publishAsync("si/x", "marker", { qos: 0 });
    const got = await sub.receive(2);
    expect(got.map((m) => [m.payload, m.packet.qos, idsOf(m.packet.properties?.subscriptionIdentifier)])).toEqual([
      ["once", 2, [1, 268435455]],
      ["marker", 0, [1, 268435455]],
    ]);
  });

  test("[MQTT-3.8.3-3] No Local: an MQTT.js client does not get its own messages back, others' it does", async () => {
    const h = await start();
    const self = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "self" });
    const other = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "other" });
    await self.client.subscribeAsync("nl/x", { qos: 1, nl: true });
    await other.client.subscribeAsync("nl/x", { qos: 1 });
    await self.client.publishAsync("nl/x", "mine", { qos: 1 });
    await other.client.publishAsync("nl/x", "theirs", { qos: 1 });
    expect((await self.receive(1)).map((m) => m.payload)).toEqual(["theirs"]);
    expect((await other.receive(2)).map((m) => m.payload)).toEqual(["mine", "theirs"]);
    expect(self.inbox.length).toBe(1);
  });

  test.each([
    [true, true, "[MQTT-3.3.1-13]"],
    [false, false, "[MQTT-3.3.1-12]"],
  ])("Retain As Published %p: MQTT.js gets a live retained message with RETAIN %p %s", async (rap, expected) => {
    const h = await start();
    const sub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "sub" });
    await sub.client.subscribeAsync("rap/x", { qos: 1, rap });
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("rap/x", "retained", { qos: 1, retain: true });
    await pub.client.publishAsync("rap/x", "not retained", { qos: 1 });
    const got = await sub.receive(2);
    expect(got.map((m) => [m.payload, m.packet.retain])).toEqual([
      ["retained", expected],
      ["not retained", false],
    ]);
  });

  test.each([
    [0, "[MQTT-3.3.1-9] on every subscribe, the repeated one included", ["kept", "kept"]],
    [1, "[MQTT-3.3.1-10] only when the subscription is new", ["kept"]],
    [2, "[MQTT-3.3.1-11] never", []],
  ] as const)("Retain Handling %d: MQTT.js gets the retained message %s", async (rh, _what, expected) => {
    const h = await start();
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("rh/x", "kept", { qos: 1, retain: true });
    const sub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "sub" });
    await sub.client.subscribeAsync("rh/x", { qos: 0, rh });
    await sub.client.subscribeAsync("rh/x", { qos: 1, rh }); // a higher QoS, or MQTT.js would not send it again
    // the broker sends retained messages right behind the SUBACK: a live message published after
    // the second SUBACK arrives after any of them
    await pub.client.publishAsync("rh/x", "live", { qos: 1 });
    await waitUntil(() => sub.inbox.some((m) => m.payload === "live"), "the live message arrived");
    expect(sub.inbox.map((m) => [m.payload, m.packet.retain])).toEqual([...expected.map((p) => [p, true]), ["live", false]]);
  });
});

describe("optional features switched off", () => {
  test("subscriptionIdentifierAvailable false: CONNACK says Subscription Identifier Available 0; a SUBSCRIBE without one works, one with one gets DISCONNECT 0xA1", async () => {
    const h = await start({ subscriptionIdentifierAvailable: false });
    const { client: c, connack } = await h.connectAck({ clientId: "c" });
    expect(connack.properties.subscriptionIdentifierAvailable).toBe(0);
    expect((await subscribeAll(c, [subscription("s/plain")])).reasonCodes).toEqual([0]);
    c.send([
      0x82, 0x0b, // SUBSCRIBE, remaining length 11
      0x00, 0x02, // packet identifier 2
      0x02, // property length 2
      0x0b, 0x05, // Subscription Identifier 5
      0x00, 0x03, 0x73, 0x2f, 0x61, // topic filter "s/a"
      0x00, // options: QoS 0
    ]);
    const d = await disconnection(c);
    expect(d.reasonCode).toBe(ReasonCode.SubscriptionIdentifiersNotSupported);
    expect(d.properties.reasonString).toBeString();
  });

  test("subscriptionIdentifierAvailable false: MQTT.js sees it in CONNACK and a subscribe with an identifier gets DISCONNECT 0xA1", async () => {
    const h = await start({ subscriptionIdentifierAvailable: false });
    const c = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "c" });
    expect(c.connack.properties?.subscriptionIdentifiersAvailable).toBe(false);
    await c.client.subscribeAsync("s/plain", { qos: 1 });
    const disconnected = nextDisconnect(c.client);
    c.client.subscribeAsync("s/a", { qos: 1, properties: { subscriptionIdentifier: 5 } }).catch(() => {}); // fails when the connection closes
    expect(await disconnected).toBe(ReasonCode.SubscriptionIdentifiersNotSupported);
  });

  test.each([
    [5, "0xA2", ReasonCode.WildcardSubscriptionsNotSupported],
    [4, "0x80", 0x80],
  ] as const)("v%d, wildcardSubscriptionAvailable false: filters with '+' or '#' (shared ones too) get %s, exact filters are granted", async (version, _name, failure) => {
    const h = await start({ wildcardSubscriptionAvailable: false });
    const { client: c, connack } = await h.connectAck({ protocolVersion: version, clientId: "c" });
    if (version === 5) expect(connack.properties.wildcardSubscriptionAvailable).toBe(0);
    const ack = await subscribeAll(c, [subscription("w/+"), subscription("#"), subscription("w/x", { qos: 1 }), subscription("$share/g/w/#")]);
    expect(ack.reasonCodes).toEqual([failure, failure, 1, failure]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, "w/x", ["exact"], [c]);
    await publishAll(pub, "w/y", ["other"], [c]);
    expect(payloadsOf(c)).toEqual(["exact"]);
  });

  test("wildcardSubscriptionAvailable false: MQTT.js sees it in CONNACK and its wildcard subscribe fails with 0xA2", async () => {
    const h = await start({ wildcardSubscriptionAvailable: false });
    const c = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "c" });
    expect(c.connack.properties?.wildcardSubscriptionAvailable).toBe(false);
    expect(await subackCodes(c.client.subscribeAsync("w/#", { qos: 1 }))).toEqual([ReasonCode.WildcardSubscriptionsNotSupported]);
    expect(await subackCodes(c.client.subscribeAsync("w/x", { qos: 1 }))).toEqual([1]);
    expect(c.client.connected).toBe(true);
  });
});
