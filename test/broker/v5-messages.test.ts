/**
 * MQTT 5.0 application message features, as raw conversations with a broker on port 0 and with
 * MQTT.js (npm `mqtt`, protocol level 5) where it supports the feature: message expiry while a
 * message waits (offline queue, retained store), request/response, properties that must survive
 * storage, payload format validation, flow control (Receive Maximum both ways), Maximum Packet Size
 * both ways, and 3.1.1 clients on the same broker never seeing a v5-only field.
 *
 * Already proven elsewhere and not repeated here: properties forwarded live, raw and MQTT.js
 * (publish.test.ts "v5 properties", interop-mqttjs.test.ts "MQTT.js v5 properties"), a queued
 * message expiring while the window is full (publish.test.ts [MQTT-3.3.2-5]), an expired retained
 * message (retain.test.ts "message expiry"), raw 0x99 (publish.test.ts), the broker's Receive
 * Maximum and 0x93 raw (limits.test.ts [MQTT-3.3.4-7]), an MQTT.js subscriber with Receive Maximum 3
 * (interop-mqttjs.test.ts), raw Maximum Packet Size both ways for live messages (limits.test.ts
 * "maximum packet size").
 */
import { describe, expect, test } from "bun:test";
import type { IDisconnectPacket, MqttClient } from "mqtt";
import { decodePacket, encodePacket, PacketType, type ConnectPacket, type PublishPacket, type QoS } from "../../lib/codec";
import { connectPacket, nextPublish, publishPacket, rawSubscribe, RawHarness, receivePublishes, settle, subscribeAll, subscription, takePublishes, text, waitUntil, WireClient, type RawClient, useHarness } from "./helpers";

const { start, peers, wires } = useHarness();

const urlOf = (h: RawHarness): string => `mqtt://127.0.0.1:${h.port}`;

/** CONNECT fields of a v5 client whose session outlives the connection by 60 s. */
const persistent = (clientId: string, properties: ConnectPacket["properties"] = {}): Partial<ConnectPacket> => ({
  clientId,
  cleanStart: false,
  properties: { sessionExpiryInterval: 60, ...properties },
});

/** Ends a raw connection without DISCONNECT and waits until the broker has noticed. */
async function drop(h: RawHarness, c: RawClient, clientId: string): Promise<void> {
  c.end();
  await waitUntil(() => !h.broker.clients.has(clientId), `the broker noticed '${clientId}' went away`);
}

/** Publishes at QoS 1 and waits for the PUBACK: the broker has routed (and stored or queued) the message. */
async function publishAcked(c: RawClient, topic: string, payload: string, packetId: number, fields: Partial<PublishPacket> = {}): Promise<void> {
  c.send(publishPacket(topic, payload, { qos: 1, packetId, ...fields }));
  await c.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === packetId);
}

/** Waits (polling the clock) until more than `ms` has passed since `mark`. */
const passed = (mark: number, ms: number): Promise<void> => waitUntil(() => Date.now() > mark + ms, `${ms} ms have passed`);

/** Resolves with the DISCONNECT the broker sends an MQTT.js client (register before it can arrive). */
const disconnectOf = (client: MqttClient): Promise<IDisconnectPacket> => new Promise((resolve) => client.once("disconnect", resolve));

/** Every property a PUBLISH may carry from a client, but a topic alias and a Subscription Identifier. */
const ALL_PROPERTIES = {
  payloadFormatIndicator: 1,
  messageExpiryInterval: 300,
  contentType: "text/plain; charset=utf-8",
  responseTopic: "reply/here",
  correlationData: new Uint8Array([0, 1, 2, 0xfe, 0xff]),
  userProperties: [["z", "1"], ["a", "2"], ["z", "3"], ["ключ", "значение"]] as [string, string][],
};

// ---- message expiry -----------------------------------------------------------------------------

describe("message expiry (section 3.3.2.3.3)", () => {
  test("[MQTT-3.3.2-5] a message queued for an offline session whose interval passes before the client returns is never sent; the others are, in order", async () => {
    const h = await start();
    const sub = await h.connect(persistent("sub"));
    await rawSubscribe(sub, "exp/#", 1);
    await drop(h, sub, "sub");
    const pub = await h.connect({ clientId: "pub" });
    await publishAcked(pub, "exp/a", "short-lived", 1, { properties: { messageExpiryInterval: 1 } });
    await publishAcked(pub, "exp/a", "long-lived", 2, { properties: { messageExpiryInterval: 3600 } });
    await publishAcked(pub, "exp/a", "never expires", 3);
    await passed(Date.now(), 1000); // the broker took all three before this mark
    const back = await h.connect(persistent("sub"));
    const got = await receivePublishes(back, 2);
    await settle(back);
    expect([...got, ...takePublishes(back)].map((p) => text(p.payload))).toEqual(["long-lived", "never expires"]);
    expect(got[0]!.properties.messageExpiryInterval).toBeLessThan(3600);
    expect(got[1]!.properties.messageExpiryInterval).toBeUndefined();
  });

  test("[MQTT-3.3.2-6] the interval sent is the one received less the time the message waited: queued for an offline client, and in the retained store", async () => {
    const h = await start();
    const sub = await h.connect(persistent("sub"));
    await rawSubscribe(sub, "wait/queued", 1);
    await drop(h, sub, "sub");
    const pub = await h.connect({ clientId: "pub" });
    await publishAcked(pub, "wait/queued", "queued", 1, { properties: { messageExpiryInterval: 10 } });
    await publishAcked(pub, "wait/retained", "retained", 2, { retain: true, properties: { messageExpiryInterval: 10 } });
    await passed(Date.now(), 1000);
    const back = await h.connect(persistent("sub"));
    const queued = await nextPublish(back, "wait/queued");
    const late = await h.connect({ clientId: "late" });
    await rawSubscribe(late, "wait/retained", 1);
    const retained = await nextPublish(late, "wait/retained");
    for (const p of [queued, retained]) {
      expect(p.properties.messageExpiryInterval).toBeGreaterThan(0);
      expect(p.properties.messageExpiryInterval).toBeLessThan(10);
    }
  });

  test("MQTT.js: a message that waited for an offline MQTT.js client arrives with a reduced interval, and one whose interval ran out never arrives", async () => {
    const h = await start();
    const url = urlOf(h);
    const options = { protocolVersion: 5 as const, clientId: "sub", clean: false, properties: { sessionExpiryInterval: 60 } };
    const sub = await peers.mqttjs(url, options);
    await sub.client.subscribeAsync("exp/mqttjs", { qos: 1 });
    await sub.client.endAsync();
    await waitUntil(() => !h.broker.clients.has("sub"), "the broker let 'sub' go");
    const pub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("exp/mqttjs", "short-lived", { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.client.publishAsync("exp/mqttjs", "waited", { qos: 1, properties: { messageExpiryInterval: 10 } });
    await passed(Date.now(), 1000);
    const back = await peers.mqttjs(url, options);
    expect(back.connack.sessionPresent).toBe(true);
    await pub.client.publishAsync("exp/mqttjs", "marker", { qos: 1 });
    const got = await back.receive(2);
    expect(got.map((m) => m.payload)).toEqual(["waited", "marker"]);
    expect(got[0]!.packet.properties?.messageExpiryInterval).toBeGreaterThan(0);
    expect(got[0]!.packet.properties?.messageExpiryInterval).toBeLessThan(10);
  });
});

// ---- request/response, and properties that must survive storage --------------------------------

describe("request/response (section 4.10) and stored properties", () => {
  test("MQTT.js round trip: the requester builds its Response Topic from the Response Information, the responder answers it with the Correlation Data; both forwarded untouched [MQTT-3.3.2-15] [MQTT-3.3.2-16]", async () => {
    const h = await start({ responseInformation: "replies/" });
    const url = urlOf(h);
    const responder = await peers.mqttjs(url, { protocolVersion: 5, clientId: "responder" });
    responder.client.on("message", (_topic, payload, packet) => {
      const p = packet.properties ?? {};
      if (p.responseTopic !== undefined) responder.client.publish(p.responseTopic, `answer to ${payload}`, { qos: 1, properties: { correlationData: p.correlationData } });
    });
    await responder.client.subscribeAsync("service/echo", { qos: 1 });
    const requester = await peers.mqttjs(url, { protocolVersion: 5, clientId: "requester", properties: { requestResponseInformation: true } });
    const base = requester.connack.properties?.responseInformation;
    expect(base).toBe("replies/");
    const responseTopic = `${base}requester`;
    await requester.client.subscribeAsync(responseTopic, { qos: 1 });
    const requests = [
      ["one", Buffer.from([0, 1, 0xff])],
      ["two", Buffer.from("request #2")],
    ] as const;
    for (const [payload, correlationData] of requests) await requester.client.publishAsync("service/echo", payload, { qos: 1, properties: { responseTopic, correlationData } });
    const answers = await requester.receive(2);
    expect(answers.map((m) => [m.topic, m.payload, [...m.packet.properties!.correlationData!]])).toEqual(requests.map(([payload, data]) => [responseTopic, `answer to ${payload}`, [...data]]));
    const seen = await responder.receive(2);
    expect(seen.map((m) => [m.packet.properties?.responseTopic, [...m.packet.properties!.correlationData!]])).toEqual(requests.map(([, data]) => [responseTopic, [...data]]));
  });

  test("a message queued for an offline session and a retained message keep every property, user properties in order [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]", async () => {
    const h = await start();
    const sub = await h.connect(persistent("sub"));
    await rawSubscribe(sub, "stored/queued", 2);
    await drop(h, sub, "sub");
    const pub = await h.connect({ clientId: "pub" });
    // sent together, so the broker decodes them from one read: stored copies must not share its buffer
    pub.send(new Uint8Array([
      ...encodePacket(publishPacket("stored/queued", "queued", { qos: 1, packetId: 1, properties: ALL_PROPERTIES }), 5),
      ...encodePacket(publishPacket("stored/retained", "retained", { qos: 1, packetId: 2, retain: true, properties: ALL_PROPERTIES }), 5),
      ...encodePacket(publishPacket("stored/other", "overwrite", { qos: 1, packetId: 3, properties: { correlationData: new Uint8Array(5), userProperties: [["x", "y"]] } }), 5),
    ]));
    await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === 3);
    const back = await h.connect(persistent("sub"));
    const late = await h.connect({ clientId: "late" });
    await rawSubscribe(late, "stored/retained", 2);
    for (const [c, topic] of [[back, "stored/queued"], [late, "stored/retained"]] as const) {
      const p = await nextPublish(c, topic);
      const { messageExpiryInterval, ...rest } = p.properties;
      expect(rest).toEqual({ payloadFormatIndicator: 1, contentType: ALL_PROPERTIES.contentType, responseTopic: "reply/here", correlationData: ALL_PROPERTIES.correlationData, userProperties: ALL_PROPERTIES.userProperties });
      expect(messageExpiryInterval).toBeLessThanOrEqual(300);
    }
  });
});

// ---- payload format -----------------------------------------------------------------------------

describe("payload format indicator (section 3.3.2.3.2)", () => {
  test("MQTT.js publishing a payload marked UTF-8 that is not valid UTF-8 gets DISCONNECT 0x99 Payload format invalid; subscribers get nothing", async () => {
    const h = await start();
    const url = urlOf(h);
    const sub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "sub" });
    await sub.client.subscribeAsync("pfi/#", { qos: 1 });
    const pub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "pub" });
    const disconnected = disconnectOf(pub.client);
    pub.client.publish("pfi/bad", Buffer.from([0x68, 0x69, 0xc3, 0x28]), { qos: 1, properties: { payloadFormatIndicator: true } }, () => {});
    const d = await disconnected;
    expect(d.reasonCode).toBe(0x99);
    expect(d.properties?.reasonString).toBeString();
    const other = await peers.mqttjs(url, { protocolVersion: 5, clientId: "other" });
    await other.client.publishAsync("pfi/good", "héllo", { qos: 1, properties: { payloadFormatIndicator: true } });
    const [m] = await sub.receive(1);
    expect([m!.topic, m!.payload, m!.packet.properties?.payloadFormatIndicator]).toEqual(["pfi/good", "héllo", true]);
  });
});

// ---- flow control -------------------------------------------------------------------------------

describe("flow control (section 4.9)", () => {
  test("[MQTT-3.3.4-9] a client with Receive Maximum 2 that does not acknowledge gets exactly 2 PUBLISH packets; then exactly one more per PUBACK or PUBCOMP, in order", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub", properties: { receiveMaximum: 2 } });
    await rawSubscribe(sub, "rm", 2);
    const pub = await h.connect({ clientId: "pub" });
    for (let i = 1; i <= 6; i++) pub.send(publishPacket("rm", `m${i}`, { qos: (i % 2 ? 1 : 2) as QoS, packetId: i }));
    await settle(pub, sub);
    let window = takePublishes(sub);
    expect(window.map((p) => text(p.payload))).toEqual(["m1", "m2"]);
    const order = window.map((p) => text(p.payload));
    while (window.length > 0) {
      const p = window.shift()!;
      if (p.qos === 1) sub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      else {
        sub.send({ type: PacketType.PUBREC, packetId: p.packetId, reasonCode: 0, properties: {} });
        await sub.next(PacketType.PUBREL, (q) => q.type === PacketType.PUBREL && q.packetId === p.packetId);
        sub.send({ type: PacketType.PUBCOMP, packetId: p.packetId, reasonCode: 0, properties: {} });
      }
      await settle(sub);
      const more = takePublishes(sub);
      expect(more.length).toBe(order.length < 6 ? 1 : 0); // one freed slot, one more message, until none is left
      order.push(...more.map((q) => text(q.payload)));
      window.push(...more);
    }
    expect(order).toEqual(["m1", "m2", "m3", "m4", "m5", "m6"]);
  });

  test("[MQTT-3.3.4-9] a resumed session's client gets no more unacknowledged messages re-sent than its new Receive Maximum; the rest follow as acknowledgements arrive", async () => {
    const h = await start();
    const sub = await h.connect(persistent("sub", { receiveMaximum: 10 }));
    await rawSubscribe(sub, "rm/resume", 1);
    const pub = await h.connect({ clientId: "pub" });
    for (let i = 1; i <= 5; i++) await publishAcked(pub, "rm/resume", `m${i}`, i);
    expect((await receivePublishes(sub, 5)).length).toBe(5); // none acknowledged
    await drop(h, sub, "sub");
    const back = await h.connect(persistent("sub", { receiveMaximum: 2 }));
    await settle(back);
    let window = takePublishes(back);
    expect(window.map((p) => [text(p.payload), p.dup])).toEqual([["m1", true], ["m2", true]]);
    const order = window.map((p) => text(p.payload));
    while (window.length > 0) {
      const p = window.shift()!;
      back.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      await settle(back);
      const more = takePublishes(back);
      expect(more.length).toBeLessThanOrEqual(1);
      order.push(...more.map((q) => text(q.payload)));
      window.push(...more);
    }
    expect(order).toEqual(["m1", "m2", "m3", "m4", "m5"]);
  });

  test("MQTT.js reads the broker's Receive Maximum, and sending more unreleased QoS 2 messages than that gets it DISCONNECT 0x93 [MQTT-3.3.4-7]", async () => {
    const h = await start({ receiveMaximum: 2 });
    const pub = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "pub" });
    expect(pub.connack.properties?.receiveMaximum).toBe(2);
    const disconnected = disconnectOf(pub.client);
    // MQTT.js does not hold back for the broker's Receive Maximum: all five go out before any PUBREC is read
    for (let i = 1; i <= 5; i++) pub.client.publish("rm/flood", `m${i}`, { qos: 2 }, () => {});
    const d = await disconnected;
    expect(d.reasonCode).toBe(0x93);
    expect(d.properties?.reasonString).toBeString();
  });
});

// ---- Maximum Packet Size ------------------------------------------------------------------------

describe("Maximum Packet Size (section 3.1.2.11.4, 3.2.2.3.6)", () => {
  test("[MQTT-3.1.2-24] [MQTT-3.1.2-25] queued and retained messages larger than the client's Maximum Packet Size are not sent to it, and count as delivered; smaller ones are", async () => {
    const h = await start();
    const sub = await h.connect(persistent("small", { maximumPacketSize: 200 }));
    await rawSubscribe(sub, "cap/queued", 1);
    await drop(h, sub, "small");
    const pub = await h.connect({ clientId: "pub" });
    await publishAcked(pub, "cap/queued", "x".repeat(500), 1);
    await publishAcked(pub, "cap/queued", "small queued", 2);
    await publishAcked(pub, "cap/retained/big", "x".repeat(500), 3, { retain: true });
    await publishAcked(pub, "cap/retained/small", "small retained", 4, { retain: true });
    const back = await h.connect(persistent("small", { maximumPacketSize: 200 }));
    const queued = await nextPublish(back, "cap/queued");
    expect(text(queued.payload)).toBe("small queued");
    back.send({ type: PacketType.PUBACK, packetId: queued.packetId, reasonCode: 0, properties: {} });
    await rawSubscribe(back, "cap/retained/#", 1, 2);
    const retained = await nextPublish(back, "cap/retained/small");
    back.send({ type: PacketType.PUBACK, packetId: retained.packetId, reasonCode: 0, properties: {} });
    await settle(back);
    expect(takePublishes(back)).toEqual([]);
    expect(h.broker.sessions.get("small")!.inflight.size).toBe(0);
    // another client gets the big ones
    const roomy = await h.connect({ clientId: "roomy" });
    await rawSubscribe(roomy, "cap/retained/big", 1);
    expect((await nextPublish(roomy, "cap/retained/big")).payload.length).toBe(500);
  });

  test("MQTT.js with maximumPacketSize 256 is never sent a bigger message (MQTT.js would drop the connection) and gets the smaller one; another MQTT.js client gets both", async () => {
    const h = await start();
    const url = urlOf(h);
    const small = await peers.mqttjs(url, { protocolVersion: 5, clientId: "small", properties: { maximumPacketSize: 256 } });
    await small.client.subscribeAsync("cap/mqttjs", { qos: 1 });
    const roomy = await peers.mqttjs(url, { protocolVersion: 5, clientId: "roomy" });
    await roomy.client.subscribeAsync("cap/mqttjs", { qos: 1 });
    const pub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("cap/mqttjs", "x".repeat(1000), { qos: 1 });
    await pub.client.publishAsync("cap/mqttjs", "fits", { qos: 1 });
    expect((await roomy.receive(2)).map((m) => m.payload.length)).toEqual([1000, 4]);
    expect((await small.receive(1)).map((m) => m.payload)).toEqual(["fits"]);
    expect(small.inbox).toHaveLength(1);
    expect(small.client.connected).toBe(true);
  });

  test("MQTT.js reads the broker's Maximum Packet Size; a bigger PUBLISH from it gets DISCONNECT 0x95 [MQTT-3.2.2-15]", async () => {
    const h = await start({ maxPacketSize: 1024 });
    const pub = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "pub" });
    expect(pub.connack.properties?.maximumPacketSize).toBe(1024);
    const disconnected = disconnectOf(pub.client);
    pub.client.publish("cap/big", "x".repeat(2000), { qos: 1 }, () => {});
    const d = await disconnected;
    expect(d.reasonCode).toBe(0x95);
    expect(d.properties?.reasonString).toBeString();
  });
});

// ---- 3.1.1 clients on the same broker -----------------------------------------------------------

describe("3.1.1 clients never see a v5-only field", () => {
  /** A 3.1.1 connection that keeps bytes undecoded, subscribed to `filter` at QoS 2. */
  async function wireSubscriber(h: RawHarness, clientId: string, filter: string, cleanStart = true): Promise<WireClient> {
    const w = await WireClient.open(h.port);
    wires.push(w);
    w.send(encodePacket(connectPacket({ protocolVersion: 4, clientId, cleanStart }), 4));
    expect(await w.next(PacketType.CONNACK)).toEqual([0x20, 0x02, 0x00, 0x00]);
    w.send(encodePacket({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [subscription(filter, { qos: 2 })], properties: {} }, 4));
    expect(await w.next(PacketType.SUBACK)).toEqual([0x90, 0x03, 0x00, 0x01, 0x02]);
    return w;
  }

  /** The exact 3.1.1 encoding of a PUBLISH, with the packet identifier the broker chose (read from `frame`). */
  function encoding311(frame: number[], topic: string, payload: string, fields: Partial<PublishPacket>): number[] {
    const packetId = (decodePacket(Uint8Array.from(frame), 4) as PublishPacket).packetId;
    return Array.from(encodePacket(publishPacket(topic, payload, { ...fields, packetId }), 4));
  }

  test("a v5 PUBLISH with every property, sent through a topic alias, reaches a 3.1.1 subscriber as exactly the 3.1.1 encoding, at QoS 0, 1 and 2, live and retained", async () => {
    const h = await start();
    const w = await wireSubscriber(h, "v4", "mixed/#");
    // a v5 subscriber to the same messages with an identifier and topic aliases: v5-only fields are in play
    const v5 = await h.connect({ clientId: "v5", properties: { topicAliasMaximum: 5 } });
    await subscribeAll(v5, [subscription("mixed/#", { qos: 2 })], 1, { subscriptionIdentifiers: [7] });
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("mixed/a", "q0", { qos: 0, properties: { ...ALL_PROPERTIES, topicAlias: 1 } }));
    pub.send(publishPacket("", "q1", { qos: 1, packetId: 1, properties: { ...ALL_PROPERTIES, topicAlias: 1 } }));
    pub.send(publishPacket("", "q2", { qos: 2, packetId: 2, retain: true, properties: { ...ALL_PROPERTIES, topicAlias: 1 } }));
    const atV5 = await receivePublishes(v5, 3);
    expect(atV5.map((p) => [p.properties.subscriptionIdentifiers, p.properties.userProperties])).toEqual(Array(3).fill([[7], ALL_PROPERTIES.userProperties]));
    for (const [payload, qos] of [["q0", 0], ["q1", 1], ["q2", 2]] as const) {
      const frame = await w.next(PacketType.PUBLISH);
      expect(frame).toEqual(encoding311(frame, "mixed/a", payload, { qos })); // RETAIN 0 on a live message (3.1.1 [MQTT-3.3.1-9])
    }
    // the retained copy a later 3.1.1 subscriber gets on subscribing
    const late = await wireSubscriber(h, "v4-late", "mixed/a");
    const frame = await late.next(PacketType.PUBLISH);
    expect(frame).toEqual(encoding311(frame, "mixed/a", "q2", { qos: 2, retain: true }));
  });

  test("a v5 message re-sent to a resumed 3.1.1 session is exactly the 3.1.1 encoding with DUP set", async () => {
    const h = await start();
    const first = await wireSubscriber(h, "v4", "resend/#", false);
    const pub = await h.connect({ clientId: "pub" });
    await publishAcked(pub, "resend/x", "again", 1, { properties: ALL_PROPERTIES });
    const sent = await first.next(PacketType.PUBLISH); // not acknowledged
    expect(sent).toEqual(encoding311(sent, "resend/x", "again", { qos: 1 }));
    first.end();
    await waitUntil(() => !h.broker.clients.has("v4"), "the broker noticed 'v4' went away");
    const again = await WireClient.open(h.port);
    wires.push(again);
    again.send(encodePacket(connectPacket({ protocolVersion: 4, clientId: "v4", cleanStart: false }), 4));
    expect(await again.next(PacketType.CONNACK)).toEqual([0x20, 0x02, 0x01, 0x00]); // Session Present
    const resent = await again.next(PacketType.PUBLISH);
    expect(resent).toEqual(encoding311(resent, "resend/x", "again", { qos: 1, dup: true }));
    expect(resent.slice(2)).toEqual(sent.slice(2)); // the same packet identifier [MQTT-4.4.0-1]
  });

  test("MQTT.js: a message goes from a v5 client through a 3.1.1 client and back to a v5 client; the 3.1.1 hop sees no property and adds none", async () => {
    const h = await start();
    const url = urlOf(h);
    const sink = await peers.mqttjs(url, { protocolVersion: 5, clientId: "sink" });
    await sink.client.subscribeAsync("relay/out", { qos: 1 });
    const relay = await peers.mqttjs(url, { protocolVersion: 4, clientId: "relay" });
    relay.client.on("message", (topic, payload) => {
      if (topic === "relay/in") relay.client.publish("relay/out", `relayed: ${payload}`, { qos: 1 });
    });
    await relay.client.subscribeAsync("relay/in", { qos: 1 });
    const origin = await peers.mqttjs(url, { protocolVersion: 5, clientId: "origin" });
    await origin.client.publishAsync("relay/in", "hello", {
      qos: 1,
      properties: { userProperties: { k: "v" }, contentType: "text/plain", responseTopic: "relay/reply", correlationData: Buffer.from("c"), messageExpiryInterval: 60, payloadFormatIndicator: true },
    });
    const [atRelay] = await relay.receive(1);
    expect([atRelay!.payload, atRelay!.packet.properties]).toEqual(["hello", undefined]);
    const [back] = await sink.receive(1);
    expect(back!.payload).toBe("relayed: hello");
    expect(back!.packet.properties ?? {}).toEqual({});
  });
});
