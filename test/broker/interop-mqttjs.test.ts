/**
 * Interoperability with MQTT.js (npm `mqtt`), a client nobody here wrote: every publisher and
 * subscriber below is an MQTT.js client talking to our broker over TCP, at protocol level 5 and 4
 * (3.1.1). The clients never reconnect, and every test ends its clients and stops its broker.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Broker } from "../../lib/broker/broker";
import { Peers, startBroker, waitUntil } from "./helpers";

type Version = 4 | 5;
type QoS = 0 | 1 | 2;

const VERSIONS: [string, Version][] = [
  ["v5", 5],
  ["v3.1.1", 4],
];

let broker: Broker;
let url: string;
let stop: () => Promise<void>;
const peers = new Peers();

beforeEach(async () => {
  ({ broker, url, stop } = await startBroker());
});

afterEach(async () => {
  try {
    await peers.closeAll();
  } finally {
    await stop();
  }
});

/** Waits until the broker no longer holds a connection for `clientId`. */
const gone = (clientId: string) => waitUntil(() => !broker.clients.has(clientId), `client '${clientId}' is disconnected`);

describe.each(VERSIONS)("MQTT.js %s", (_name, protocolVersion) => {
  // publish QoS, subscription QoS: the delivery is at the lower of the two
  test.each([
    [0, 2],
    [1, 2],
    [2, 2],
    [2, 1],
    [2, 0],
    [1, 0],
  ] as [QoS, QoS][])("published at QoS %d, subscribed at QoS %d: delivered once each, in order, at the lower QoS [MQTT-3.8.4-8]", async (pubQos, subQos) => {
    const sub = await peers.mqttjs(url, { protocolVersion, clientId: "sub" });
    const granted = await sub.client.subscribeAsync("interop/qos", { qos: subQos });
    expect(granted.map((g) => g.qos)).toEqual([subQos]);
    const pub = await peers.mqttjs(url, { protocolVersion, clientId: "pub" });
    const payloads = ["m0", "m1", "m2", "last"];
    // publishAsync resolves when the QoS 1/2 handshake with the broker is complete
    for (const p of payloads) await pub.client.publishAsync("interop/qos", p, { qos: pubQos });
    const got = await sub.receive(payloads.length);
    expect(got.map((m) => m.payload)).toEqual(payloads); // a duplicate would show before "last" [MQTT-4.6.0-6]
    const qos = Math.min(pubQos, subQos) as QoS;
    for (const m of got) {
      expect(m.topic).toBe("interop/qos");
      expect(m.packet.qos).toBe(qos);
      expect(m.packet.retain).toBe(false);
    }
  });

  test("a retained message reaches a later subscriber with RETAIN set [MQTT-3.3.1-5] [MQTT-3.3.1-9]", async () => {
    const pub = await peers.mqttjs(url, { protocolVersion, clientId: "pub" });
    await pub.client.publishAsync("interop/retained", "kept", { qos: 1, retain: true });
    await pub.client.endAsync();
    const sub = await peers.mqttjs(url, { protocolVersion, clientId: "late" });
    await sub.client.subscribeAsync("interop/#", { qos: 1 });
    const [m] = await sub.receive(1);
    expect(m!.topic).toBe("interop/retained");
    expect(m!.payload).toBe("kept");
    expect(m!.packet.retain).toBe(true);
    expect(m!.packet.qos).toBe(1);
  });

  test.each([
    ["end(true)", (c: { end(force: boolean): unknown }) => c.end(true)],
    ["stream.destroy()", (c: { stream: { destroy(): unknown } }) => c.stream.destroy()],
  ] as [string, (c: never) => unknown][])("the will is published when the client's socket closes without DISCONNECT (%s) [MQTT-3.1.2-8]", async (_how, close) => {
    const watcher = await peers.mqttjs(url, { protocolVersion, clientId: "watcher" });
    await watcher.client.subscribeAsync("interop/will/#", { qos: 1 });
    const dying = await peers.mqttjs(url, {
      protocolVersion,
      clientId: "dying",
      will: { topic: "interop/will/dying", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    (close as (c: typeof dying.client) => unknown)(dying.client);
    const [m] = await watcher.receive(1);
    expect(m!.topic).toBe("interop/will/dying");
    expect(m!.payload).toBe("gone");
    expect(m!.packet.qos).toBe(1);
  });

  test("no will after a normal DISCONNECT [MQTT-3.1.2-10] [MQTT-3.14.4-3]", async () => {
    const watcher = await peers.mqttjs(url, { protocolVersion, clientId: "watcher" });
    await watcher.client.subscribeAsync("interop/will/#", { qos: 1 });
    const leaving = await peers.mqttjs(url, {
      protocolVersion,
      clientId: "leaving",
      will: { topic: "interop/will/leaving", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    await leaving.client.endAsync(); // sends DISCONNECT (reason 0x00)
    await gone("leaving");
    // the will, had it been published, was routed when the connection closed: before this marker
    await watcher.client.publishAsync("interop/will/marker", "marker", { qos: 1 });
    const got = await watcher.receive(1);
    expect(got.map((m) => m.payload)).toEqual(["marker"]);
  });

  test("a 3 MB payload goes through intact at QoS 1", async () => {
    const sub = await peers.mqttjs(url, { protocolVersion, clientId: "sub" });
    await sub.client.subscribeAsync("interop/big", { qos: 1 });
    const pub = await peers.mqttjs(url, { protocolVersion, clientId: "pub" });
    const payload = Buffer.alloc(3 * 1024 * 1024, "abcdefghijklmnopqrstuvwxyz0123456789");
    await pub.client.publishAsync("interop/big", payload, { qos: 1 });
    const [m] = await sub.receive(1);
    expect(m!.packet.payload.length).toBe(payload.length);
    expect(Buffer.compare(m!.packet.payload as Buffer, payload)).toBe(0);
  });

  test("a retained will reaches a subscriber that arrives after the client died [MQTT-3.1.2-8] [MQTT-3.3.1-5]", async () => {
    const dying = await peers.mqttjs(url, {
      protocolVersion,
      clientId: "dying",
      will: { topic: "interop/will/status", payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    dying.client.end(true);
    await gone("dying");
    const late = await peers.mqttjs(url, { protocolVersion, clientId: "late" });
    await late.client.subscribeAsync("interop/will/status", { qos: 1 });
    const [m] = await late.receive(1);
    expect([m!.payload, m!.packet.retain, m!.packet.qos]).toEqual(["offline", true, 1]);
  });

  test("a session with clean start 0 resumes: QoS 1 messages published while offline arrive after reconnecting, with Session Present [MQTT-3.1.2-5] [MQTT-3.2.2-3]", async () => {
    const options = {
      protocolVersion,
      clientId: "resumer",
      clean: false,
      ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 300 } } : {}),
    };
    const first = await peers.mqttjs(url, options);
    expect(first.connack.sessionPresent).toBe(false);
    await first.client.subscribeAsync("interop/session/#", { qos: 1 });
    await first.client.endAsync();
    await gone("resumer");

    const pub = await peers.mqttjs(url, { protocolVersion, clientId: "pub" });
    const payloads = ["offline-1", "offline-2", "offline-3"];
    for (const p of payloads) await pub.client.publishAsync("interop/session/x", p, { qos: 1 });

    const again = await peers.mqttjs(url, options);
    expect(again.connack.sessionPresent).toBe(true);
    const got = await again.receive(payloads.length);
    expect(got.map((m) => m.payload)).toEqual(payloads);
    for (const m of got) expect(m.packet.qos).toBe(1);
    // the subscription itself survived too: a message published now arrives as well
    await pub.client.publishAsync("interop/session/x", "online", { qos: 1 });
    const all = await again.receive(payloads.length + 1);
    expect(all.map((m) => m.payload)).toEqual([...payloads, "online"]);
  });
});

describe("MQTT.js v5 properties", () => {
  test("user properties, content type, payload format, response topic and correlation data are forwarded unaltered and in order [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20] [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16]", async () => {
    const sub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "sub" });
    await sub.client.subscribeAsync("interop/props", { qos: 1 });
    const pub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("interop/props", '{"t":21.5}', {
      qos: 1,
      properties: {
        userProperties: { site: "north", unit: ["C", "celsius"], "clé": "välue ✓" },
        contentType: "application/json",
        payloadFormatIndicator: true,
        responseTopic: "interop/props/reply",
        correlationData: Buffer.from([0, 1, 2, 0xff]),
      },
    });
    const [m] = await sub.receive(1);
    const p = m!.packet.properties!;
    expect(m!.payload).toBe('{"t":21.5}');
    expect(p.userProperties).toEqual({ site: "north", unit: ["C", "celsius"], "clé": "välue ✓" });
    expect(Object.keys(p.userProperties!)).toEqual(["site", "unit", "clé"]);
    expect(p.contentType).toBe("application/json");
    expect(p.payloadFormatIndicator).toBe(true);
    expect(p.responseTopic).toBe("interop/props/reply");
    expect([...p.correlationData!]).toEqual([0, 1, 2, 0xff]);
  });

  test("a retained message keeps its properties for a later subscriber [MQTT-3.3.2-17] [MQTT-3.3.2-20]", async () => {
    const pub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("interop/props/retained", "kept", {
      qos: 1,
      retain: true,
      properties: { userProperties: { a: "1", b: "2" }, contentType: "text/plain", responseTopic: "interop/reply" },
    });
    await pub.client.endAsync();
    const sub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "late" });
    await sub.client.subscribeAsync("interop/props/#", { qos: 1 });
    const [m] = await sub.receive(1);
    expect(m!.packet.retain).toBe(true);
    expect(m!.packet.properties?.userProperties).toEqual({ a: "1", b: "2" });
    expect(m!.packet.properties?.contentType).toBe("text/plain");
    expect(m!.packet.properties?.responseTopic).toBe("interop/reply");
  });

  test("a will's properties (user properties, content type) are forwarded with it [MQTT-3.1.3-10]", async () => {
    const watcher = await peers.mqttjs(url, { protocolVersion: 5, clientId: "watcher" });
    await watcher.client.subscribeAsync("interop/will/#", { qos: 1 });
    const dying = await peers.mqttjs(url, {
      protocolVersion: 5,
      clientId: "dying",
      will: {
        topic: "interop/will/dying",
        payload: Buffer.from('{"alive":false}'),
        qos: 1,
        retain: false,
        properties: { contentType: "application/json", userProperties: { reason: "crash" }, willDelayInterval: 0 },
      },
    });
    dying.client.end(true);
    const [m] = await watcher.receive(1);
    expect(m!.payload).toBe('{"alive":false}');
    expect(m!.packet.properties?.contentType).toBe("application/json");
    expect(m!.packet.properties?.userProperties).toEqual({ reason: "crash" });
  });

  test.each([1, 2] as QoS[])("300 QoS %d messages reach a subscriber with Receive Maximum 3, all in order, never more than 3 unacknowledged [MQTT-3.3.4-9]", async (qos) => {
    const sub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "sub", properties: { receiveMaximum: 3 } });
    await sub.client.subscribeAsync("interop/flow", { qos });
    const pub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "pub" });
    const payloads = Array.from({ length: 300 }, (_, i) => `m${i}`);
    await Promise.all(payloads.map((p) => pub.client.publishAsync("interop/flow", p, { qos })));
    // MQTT.js itself disconnects with 0x93 when more QoS 2 messages than its Receive Maximum are unreleased
    const got = await sub.receive(payloads.length);
    expect(got.map((m) => m.payload)).toEqual(payloads);
    expect(sub.client.connected).toBe(true);
  });

  test("topic aliases set by MQTT.js (autoUseTopicAlias) resolve to the full topic", async () => {
    const sub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "sub" });
    await sub.client.subscribeAsync("interop/alias/#", { qos: 1 });
    const pub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "pub", autoUseTopicAlias: true });
    expect(pub.connack.properties?.topicAliasMaximum).toBeGreaterThan(0);
    for (const p of ["a1", "a2", "a3"]) await pub.client.publishAsync("interop/alias/long/topic/name", p, { qos: 1 });
    await pub.client.publishAsync("interop/alias/other", "b1", { qos: 1 });
    const got = await sub.receive(4);
    expect(got.map((m) => [m.topic, m.payload])).toEqual([
      ["interop/alias/long/topic/name", "a1"],
      ["interop/alias/long/topic/name", "a2"],
      ["interop/alias/long/topic/name", "a3"],
      ["interop/alias/other", "b1"],
    ]);
  });

  test("DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will [MQTT-3.14.4-3]", async () => {
    const watcher = await peers.mqttjs(url, { protocolVersion: 5, clientId: "watcher" });
    await watcher.client.subscribeAsync("interop/will/#", { qos: 1 });
    const leaving = await peers.mqttjs(url, {
      protocolVersion: 5,
      clientId: "leaving",
      will: { topic: "interop/will/leaving", payload: Buffer.from("bye"), qos: 1, retain: false },
    });
    await leaving.client.endAsync(false, { reasonCode: 0x04 });
    const [m] = await watcher.receive(1);
    expect(m!.topic).toBe("interop/will/leaving");
    expect(m!.payload).toBe("bye");
  });
});

describe("MQTT.js across protocol levels", () => {
  test.each([
    ["a v5 publisher reaches a 3.1.1 subscriber", 5, 4],
    ["a 3.1.1 publisher reaches a v5 subscriber", 4, 5],
  ] as [string, Version, Version][])("%s, at every QoS", async (_name, pubVersion, subVersion) => {
    const sub = await peers.mqttjs(url, { protocolVersion: subVersion, clientId: "sub" });
    await sub.client.subscribeAsync("interop/cross", { qos: 2 });
    const pub = await peers.mqttjs(url, { protocolVersion: pubVersion, clientId: "pub" });
    const props = pubVersion === 5 ? { properties: { userProperties: { k: "v" }, contentType: "text/plain" } } : {};
    for (const qos of [0, 1, 2] as QoS[]) await pub.client.publishAsync("interop/cross", `q${qos}`, { qos, ...props });
    const got = await sub.receive(3);
    expect(got.map((m) => [m.topic, m.payload, m.packet.qos])).toEqual([
      ["interop/cross", "q0", 0],
      ["interop/cross", "q1", 1],
      ["interop/cross", "q2", 2],
    ]);
  });

  test("a retained message from a v5 publisher reaches a later 3.1.1 subscriber, and back", async () => {
    const pub5 = await peers.mqttjs(url, { protocolVersion: 5, clientId: "pub5" });
    await pub5.client.publishAsync("interop/cross/r5", "from v5", { qos: 1, retain: true, properties: { contentType: "text/plain" } });
    const pub4 = await peers.mqttjs(url, { protocolVersion: 4, clientId: "pub4" });
    await pub4.client.publishAsync("interop/cross/r4", "from 3.1.1", { qos: 1, retain: true });
    const sub4 = await peers.mqttjs(url, { protocolVersion: 4, clientId: "sub4" });
    await sub4.client.subscribeAsync("interop/cross/r5", { qos: 1 });
    const sub5 = await peers.mqttjs(url, { protocolVersion: 5, clientId: "sub5" });
    await sub5.client.subscribeAsync("interop/cross/r4", { qos: 1 });
    const [m4] = await sub4.receive(1);
    const [m5] = await sub5.receive(1);
    expect([m4!.payload, m4!.packet.retain]).toEqual(["from v5", true]);
    expect([m5!.payload, m5!.packet.retain]).toEqual(["from 3.1.1", true]);
  });
});
