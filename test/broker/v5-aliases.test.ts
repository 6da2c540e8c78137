/**
 * Topic aliases (MQTT 5.0 section 3.3.2.3.4) in both directions, as raw conversations with a
 * broker on port 0 and with MQTT.js as the client. publish.test.ts already covers the client's
 * side with encoded packets (every alias up to the maximum, one above it, remapping, aliases not
 * carried to the next connection) and the MALFORMED table covers Topic Alias 0; here are the wire
 * bytes of both directions, the aliases the broker assigns (only to a client whose CONNECT allows
 * them, never more than it allows, forgotten with the connection), and MQTT.js on both ends.
 */
import { describe, expect, test } from "bun:test";
import { PacketType, ReasonCode, type PublishPacket } from "../../lib/codec";
import type { IPublishPacket } from "mqtt";
import { disconnection, nextPublish, publishPacket, RawHarness, receivePublishes, settle, subscribeAll, subscription, takePublishes, text, waitUntil, WireClient, type RawClient, useHarness } from "./helpers";

const { start, peers, wires } = useHarness();

const url = (h: RawHarness): string => `mqtt://127.0.0.1:${h.port}`;

/** What a client received, as [topic name on the wire, Topic Alias or null, payload]. */
const aliased = (ps: PublishPacket[]): [string, number | null, string][] => ps.map((p) => [text(p.topic), p.properties.topicAlias ?? null, text(p.payload)]);

/** Publishes one message per [topic, payload] from `pub` at `qos` (identifiers from 1). */
function publishEach(pub: RawClient, messages: [string, string][], qos: 0 | 1 = 0): void {
  messages.forEach(([topic, payload], i) => pub.send(publishPacket(topic, payload, { qos, packetId: qos === 0 ? 0 : i + 1 })));
}

/** Acknowledges every QoS 1 PUBLISH in `ps`. */
function ackAll(c: RawClient, ps: PublishPacket[]): void {
  for (const p of ps) if (p.qos === 1) c.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
}

describe("topic aliases from the client, as bytes", () => {
  test("[MQTT-3.3.2-12] with Topic Alias Maximum 2, alias 2 (the maximum) is set with a topic and then used with an empty one", async () => {
    const h = await start({ topicAliasMaximum: 2 });
    const sub = await h.connect({ clientId: "sub" });
    await subscribeAll(sub, [subscription("c/#")]);
    const { client: pub, connack } = await h.connectAck({ clientId: "pub" });
    expect(connack.properties.topicAliasMaximum).toBe(2);
    pub.send([
      0x30, 0x0a, // PUBLISH QoS 0, remaining length 10
      0x00, 0x03, 0x63, 0x2f, 0x78, // topic name "c/x"
      0x03, // property length 3
      0x23, 0x00, 0x02, // Topic Alias 2
      0x6d, // payload "m"
    ]);
    pub.send([
      0x30, 0x07, // PUBLISH QoS 0, remaining length 7
      0x00, 0x00, // topic name "" (alias 2 stands for it)
      0x03, // property length 3
      0x23, 0x00, 0x02, // Topic Alias 2
      0x6e, // payload "n"
    ]);
    const got = await receivePublishes(sub, 2);
    expect(aliased(got)).toEqual([
      ["c/x", null, "m"],
      ["c/x", null, "n"],
    ]);
    await settle(pub);
    expect(pub.isClosed).toBe(false);
  });

  test.each([
    ["[MQTT-3.3.2-8] Topic Alias 0", 0x00],
    ["[MQTT-3.3.2-9] Topic Alias 3, above the maximum 2", 0x03],
  ])("%s: DISCONNECT 0x94 Topic Alias invalid, and the message goes nowhere", async (_name, alias) => {
    const h = await start({ topicAliasMaximum: 2 });
    const sub = await h.connect({ clientId: "sub" });
    await subscribeAll(sub, [subscription("c/#")]);
    const pub = await h.connect({ clientId: "pub" });
    pub.send([
      0x30, 0x0a, // PUBLISH QoS 0, remaining length 10
      0x00, 0x03, 0x63, 0x2f, 0x78, // topic name "c/x"
      0x03, // property length 3
      0x23, 0x00, alias, // Topic Alias
      0x6d, // payload "m"
    ]);
    const d = await disconnection(pub);
    expect(d.reasonCode).toBe(ReasonCode.TopicAliasInvalid);
    expect(d.properties.reasonString).toBeString();
    await settle(sub);
    expect(takePublishes(sub)).toEqual([]);
  });
});

describe("topic aliases from the server", () => {
  test("[MQTT-3.3.2-11] [MQTT-3.1.2-26] the bytes: with Topic Alias Maximum 2 in CONNECT, two topics get aliases 1 and 2 with their names, later messages carry an empty name; a third topic keeps its name", async () => {
    const h = await start();
    const sub = await WireClient.open(h.port);
    wires.push(sub);
    sub.send([
      0x10, 0x11, // CONNECT, remaining length 17
      0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, // protocol name "MQTT"
      0x05, // protocol level 5
      0x02, // connect flags: clean start
      0x00, 0x00, // keep alive 0
      0x03, // property length 3
      0x22, 0x00, 0x02, // Topic Alias Maximum 2
      0x00, 0x01, 0x73, // client identifier "s"
    ]);
    expect((await sub.next(PacketType.CONNACK)).slice(0, 4)).toEqual([0x20, expect.any(Number), 0x00, 0x00]); // accepted, no session
    sub.send([
      0x82, 0x09, // SUBSCRIBE, remaining length 9
      0x00, 0x01, // packet identifier 1
      0x00, // property length 0
      0x00, 0x03, 0x61, 0x2f, 0x23, // topic filter "a/#"
      0x01, // options: QoS 1
    ]);
    expect(await sub.next(PacketType.SUBACK)).toEqual([
      0x90, 0x04, // SUBACK, remaining length 4
      0x00, 0x01, // packet identifier 1
      0x00, // property length 0
      0x01, // granted QoS 1
    ]);
    const pub = await h.connect({ clientId: "pub" });
    publishEach(pub, [
      ["a/1", "x"],
      ["a/2", "x"],
      ["a/3", "x"],
      ["a/1", "y"],
      ["a/3", "y"],
    ]);
    pub.send(publishPacket("a/2", "q", { qos: 1, packetId: 9 }));
    const frames: number[][] = [];
    for (let i = 0; i < 6; i++) frames.push(await sub.next(PacketType.PUBLISH));
    expect(frames).toEqual([
      [
        0x30, 0x0a, // PUBLISH QoS 0, remaining length 10
        0x00, 0x03, 0x61, 0x2f, 0x31, // topic name "a/1"
        0x03, // property length 3
        0x23, 0x00, 0x01, // Topic Alias 1
        0x78, // payload "x"
      ],
      [
        0x30, 0x0a, // PUBLISH QoS 0, remaining length 10
        0x00, 0x03, 0x61, 0x2f, 0x32, // topic name "a/2"
        0x03, // property length 3
        0x23, 0x00, 0x02, // Topic Alias 2
        0x78, // payload "x"
      ],
      [
        0x30, 0x07, // PUBLISH QoS 0, remaining length 7
        0x00, 0x03, 0x61, 0x2f, 0x33, // topic name "a/3": no alias left
        0x00, // property length 0
        0x78, // payload "x"
      ],
      [
        0x30, 0x07, // PUBLISH QoS 0, remaining length 7
        0x00, 0x00, // topic name "" (alias 1 stands for "a/1")
        0x03, // property length 3
        0x23, 0x00, 0x01, // Topic Alias 1
        0x79, // payload "y"
      ],
      [
        0x30, 0x07, // PUBLISH QoS 0, remaining length 7
        0x00, 0x03, 0x61, 0x2f, 0x33, // topic name "a/3", still no alias
        0x00, // property length 0
        0x79, // payload "y"
      ],
      [
        0x32, 0x09, // PUBLISH QoS 1, remaining length 9
        0x00, 0x00, // topic name "" (alias 2 stands for "a/2")
        0x00, 0x01, // packet identifier 1
        0x03, // property length 3
        0x23, 0x00, 0x02, // Topic Alias 2
        0x71, // payload "q"
      ],
    ]);
    sub.send([0x40, 0x02, 0x00, 0x01]); // PUBACK, packet identifier 1
    sub.send([0xc0, 0x00]); // PINGREQ
    expect(await sub.next(PacketType.PINGRESP)).toEqual([0xd0, 0x00]);
    expect(h.broker.sessions.get("s")?.inflight.size).toBe(0); // the identifier sat where the PUBACK found it
  });

  test.each([
    ["no Topic Alias Maximum", {}],
    ["Topic Alias Maximum 0", { topicAliasMaximum: 0 }],
  ])("[MQTT-3.1.2-27] a client whose CONNECT has %s never gets a Topic Alias", async (_name, properties) => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub", properties });
    await subscribeAll(sub, [subscription("n/#", { qos: 1 })]);
    const pub = await h.connect({ clientId: "pub" });
    const messages: [string, string][] = ["n/a", "n/a", "n/b", "n/a", "n/b", "n/b"].map((t, i) => [t, `m${i}`]);
    publishEach(pub, messages, 1);
    const got = await receivePublishes(sub, messages.length);
    expect(aliased(got)).toEqual(messages.map(([t, m]) => [t, null, m]));
  });

  test("[MQTT-3.3.2-11] Topic Alias Maximum 2 and five topics, at QoS 1: topics 1-2 aliased, then sent with an empty name; topics 3-5 always with their names; packet identifiers intact", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub", properties: { topicAliasMaximum: 2 } });
    await subscribeAll(sub, [subscription("t/#", { qos: 1 })]);
    const pub = await h.connect({ clientId: "pub" });
    const topics = ["t/1", "t/2", "t/3", "t/4", "t/5"];
    publishEach(pub, [...topics.map((t): [string, string] => [t, `first ${t}`]), ...topics.map((t): [string, string] => [t, `second ${t}`])], 1);
    const got = await receivePublishes(sub, 10);
    expect(aliased(got)).toEqual([
      ["t/1", 1, "first t/1"],
      ["t/2", 2, "first t/2"],
      ["t/3", null, "first t/3"],
      ["t/4", null, "first t/4"],
      ["t/5", null, "first t/5"],
      ["", 1, "second t/1"],
      ["", 2, "second t/2"],
      ["t/3", null, "second t/3"],
      ["t/4", null, "second t/4"],
      ["t/5", null, "second t/5"],
    ]);
    expect(new Set(got.map((p) => p.packetId)).size).toBe(10);
    ackAll(sub, got);
    await settle(sub);
    expect(h.broker.sessions.get("sub")?.inflight.size).toBe(0);
    expect(sub.isClosed).toBe(false);
  });

  test("aliases are per connection: subscribers with Topic Alias Maximum 1, 3 and none each get their own numbering for the same messages", async () => {
    const h = await start();
    const one = await h.connect({ clientId: "one", properties: { topicAliasMaximum: 1 } });
    const three = await h.connect({ clientId: "three", properties: { topicAliasMaximum: 3 } });
    const none = await h.connect({ clientId: "none" });
    for (const c of [none, three, one]) await subscribeAll(c, [subscription("p/#")]);
    const pub = await h.connect({ clientId: "pub" });
    publishEach(pub, [
      ["p/a", "1"],
      ["p/b", "2"],
      ["p/a", "3"],
      ["p/b", "4"],
    ]);
    const [gotOne, gotThree, gotNone] = await Promise.all([one, three, none].map((c) => receivePublishes(c, 4)));
    expect(aliased(gotOne!)).toEqual([
      ["p/a", 1, "1"],
      ["p/b", null, "2"],
      ["", 1, "3"],
      ["p/b", null, "4"],
    ]);
    expect(aliased(gotThree!)).toEqual([
      ["p/a", 1, "1"],
      ["p/b", 2, "2"],
      ["", 1, "3"],
      ["", 2, "4"],
    ]);
    expect(aliased(gotNone!)).toEqual([
      ["p/a", null, "1"],
      ["p/b", null, "2"],
      ["p/a", null, "3"],
      ["p/b", null, "4"],
    ]);
  });

  test("[MQTT-3.3.2-7] aliases are forgotten with the connection: a re-sent message, a queued one and the first live one after reconnecting carry their topic names again", async () => {
    const h = await start();
    const session = { clientId: "sub", cleanStart: false, properties: { topicAliasMaximum: 2, sessionExpiryInterval: 60 } };
    const first = await h.connect(session);
    await subscribeAll(first, [subscription("r/#", { qos: 1 })]);
    const pub = await h.connect({ clientId: "pub" });
    publishEach(pub, [
      ["r/a", "acknowledged"],
      ["r/a", "unacknowledged"],
    ], 1);
    const before = await receivePublishes(first, 2);
    expect(aliased(before)).toEqual([
      ["r/a", 1, "acknowledged"],
      ["", 1, "unacknowledged"],
    ]);
    first.send({ type: PacketType.PUBACK, packetId: before[0]!.packetId, reasonCode: 0, properties: {} });
    await settle(first);
    first.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    await first.closed.promise;
    await waitUntil(() => !h.broker.clients.has("sub"), "the broker let the first connection go");
    pub.send(publishPacket("r/b", "queued", { qos: 1, packetId: 3 }));
    await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === 3);

    const { client: second, connack } = await h.connectAck(session);
    expect(connack.sessionPresent).toBe(true);
    const resumed = await receivePublishes(second, 2);
    expect(aliased(resumed)).toEqual([
      ["r/a", 1, "unacknowledged"], // re-sent with DUP 1 [MQTT-4.4.0-1]: the name again, the alias set anew
      ["r/b", 2, "queued"],
    ]);
    expect(resumed[0]!.dup).toBe(true);
    ackAll(second, resumed);
    pub.send(publishPacket("r/a", "live"));
    expect(aliased([await nextPublish(second)])).toEqual([["", 1, "live"]]);
    second.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    await second.closed.promise;
    await waitUntil(() => !h.broker.clients.has("sub"), "the broker let the second connection go");

    const third = await h.connect({ ...session, properties: { sessionExpiryInterval: 60 } }); // no aliases this time
    pub.send(publishPacket("r/a", "no alias"));
    expect(aliased([await nextPublish(third)])).toEqual([["r/a", null, "no alias"]]);
  });

  test("[MQTT-3.1.2-27] a 3.1.1 subscriber never gets an alias, while a v5 subscriber that allows them gets them for the same messages", async () => {
    const h = await start();
    const v4 = await h.connect({ protocolVersion: 4, clientId: "v4" });
    const v5 = await h.connect({ clientId: "v5", properties: { topicAliasMaximum: 5 } });
    for (const c of [v4, v5]) await subscribeAll(c, [subscription("o/#", { qos: 1 })]);
    const pub = await h.connect({ clientId: "pub" });
    publishEach(pub, [
      ["o/x", "1"],
      ["o/x", "2"],
    ], 1);
    // decoded at protocol level 4: a property block would have shown up in the payload
    expect(aliased(await receivePublishes(v4, 2))).toEqual([
      ["o/x", null, "1"],
      ["o/x", null, "2"],
    ]);
    expect(aliased(await receivePublishes(v5, 2))).toEqual([
      ["o/x", 1, "1"],
      ["", 1, "2"],
    ]);
  });

  test("a retained message sent on subscribing sets the alias like any other, and the live message after it uses it", async () => {
    const h = await start();
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("k/a", "kept", { qos: 1, packetId: 1, retain: true }));
    await pub.next(PacketType.PUBACK);
    const sub = await h.connect({ clientId: "sub", properties: { topicAliasMaximum: 1 } });
    await subscribeAll(sub, [subscription("k/#")]);
    const retained = await nextPublish(sub);
    expect([...aliased([retained])[0]!, retained.retain]).toEqual(["k/a", 1, "kept", true]);
    pub.send(publishPacket("k/a", "live"));
    expect(aliased([await nextPublish(sub)])).toEqual([["", 1, "live"]]);
  });

  test("the two directions have separate alias spaces: a client's alias 1 and the broker's alias 1 on the same connection name different topics", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c", properties: { topicAliasMaximum: 1 } });
    await subscribeAll(c, [subscription("x/#")]);
    c.send(publishPacket("x/b", "from b")); // the broker's alias 1 becomes x/b
    expect(aliased([await nextPublish(c)])).toEqual([["x/b", 1, "from b"]]);
    c.send(publishPacket("x/a", "set", { properties: { topicAlias: 1 } })); // the client's alias 1 is x/a
    c.send(publishPacket("", "used", { properties: { topicAlias: 1 } }));
    c.send(publishPacket("x/b", "again"));
    expect(aliased(await receivePublishes(c, 3))).toEqual([
      ["x/a", null, "set"],
      ["x/a", null, "used"],
      ["", 1, "again"],
    ]);
  });

  test("[MQTT-3.1.2-25] a message too large for the client is dropped without using up an alias: the next one on that topic sets it with the name", async () => {
    const h = await start();
    const sub = await h.connect({ clientId: "sub", properties: { topicAliasMaximum: 1, maximumPacketSize: 20 } });
    await subscribeAll(sub, [subscription("m/#")]);
    const pub = await h.connect({ clientId: "pub" });
    publishEach(pub, [
      ["m/t", "this payload is too large for 20 bytes"],
      ["m/t", "a"],
      ["m/t", "b"],
    ]);
    expect(aliased(await receivePublishes(sub, 2))).toEqual([
      ["m/t", 1, "a"],
      ["", 1, "b"],
    ]);
  });
});

describe("topic aliases with MQTT.js", () => {
  test("both directions: MQTT.js assigns aliases up to the broker's maximum 2 (remapping the least recently used), and resolves the ones the broker assigns under its own maximum 2", async () => {
    const h = await start({ topicAliasMaximum: 2 });
    const sub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "sub", properties: { topicAliasMaximum: 2 } });
    await sub.client.subscribeAsync("j/#", { qos: 1 });
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub", autoAssignTopicAlias: true });
    expect(pub.connack.properties?.topicAliasMaximum).toBe(2);
    const sent: [string, number | undefined][] = [];
    pub.client.on("packetsend", (p) => {
      if (p.cmd === "publish") sent.push([String(p.topic), p.properties?.topicAlias]);
    });
    const sequence = ["j/1", "j/1", "j/2", "j/2", "j/3", "j/3", "j/1", "j/1", "j/4", "j/5"];
    for (const [i, t] of sequence.entries()) await pub.client.publishAsync(t, `m${i}`, { qos: 1 });
    // MQTT.js used aliases, sent empty names and stayed within the maximum: the broker resolved them all
    expect(sent.length).toBe(sequence.length);
    expect(sent.every(([, alias]) => alias !== undefined && alias >= 1 && alias <= 2)).toBe(true);
    expect(sent.some(([topic]) => topic === "")).toBe(true);
    const got = await sub.receive(sequence.length);
    expect(got.map((m) => [m.topic, m.payload])).toEqual(sequence.map((t, i) => [t, `m${i}`]));
    // what the broker sent MQTT.js: aliases 1 and 2 for the first two topics, names for the rest
    const wire = got.map((m) => [String(m.packet.topic), m.packet.properties?.topicAlias ?? null]);
    expect(wire).toEqual([
      ["j/1", 1],
      ["", 1],
      ["j/2", 2],
      ["", 2],
      ["j/3", null],
      ["j/3", null],
      ["", 1],
      ["", 1],
      ["j/4", null],
      ["j/5", null],
    ]);
    expect(pub.client.connected && sub.client.connected).toBe(true);
  });

  test("[MQTT-3.1.2-27] an MQTT.js client that sets no Topic Alias Maximum gets no alias (MQTT.js would fail on one)", async () => {
    const h = await start();
    const sub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "sub" });
    await sub.client.subscribeAsync("j/#", { qos: 1 });
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub" });
    for (const p of ["a", "b", "c"]) await pub.client.publishAsync("j/same", p, { qos: 1 });
    const got = await sub.receive(3);
    expect(got.map((m) => [m.topic, String(m.packet.topic), m.packet.properties?.topicAlias])).toEqual([
      ["j/same", "j/same", undefined],
      ["j/same", "j/same", undefined],
      ["j/same", "j/same", undefined],
    ]);
    expect(sub.client.connected).toBe(true);
  });

  test("an MQTT.js 3.1.1 subscriber gets every topic name, from an MQTT.js v5 publisher that uses aliases", async () => {
    const h = await start();
    const sub = await peers.mqttjs(url(h), { protocolVersion: 4, clientId: "sub" });
    await sub.client.subscribeAsync("j/#", { qos: 1 });
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub", autoAssignTopicAlias: true });
    for (const p of ["a", "b"]) await pub.client.publishAsync("j/v4", p, { qos: 1 });
    const got = await sub.receive(2);
    expect(got.map((m) => [m.topic, String(m.packet.topic), m.payload])).toEqual([
      ["j/v4", "j/v4", "a"],
      ["j/v4", "j/v4", "b"],
    ]);
  });

  test("[MQTT-3.3.2-7] an MQTT.js subscriber that reconnects to its session gets the topic name again before any empty one (MQTT.js rejects an alias it does not know)", async () => {
    const h = await start();
    const options = { protocolVersion: 5 as const, clientId: "sub", clean: false, properties: { topicAliasMaximum: 2, sessionExpiryInterval: 60 } };
    const first = await peers.mqttjs(url(h), options);
    await first.client.subscribeAsync("j/#", { qos: 1 });
    const pub = await peers.mqttjs(url(h), { protocolVersion: 5, clientId: "pub" });
    for (const p of ["1", "2"]) await pub.client.publishAsync("j/r", p, { qos: 1 });
    const before = await first.receive(2);
    expect(before.map((m) => [String(m.packet.topic), m.packet.properties?.topicAlias])).toEqual([
      ["j/r", 1],
      ["", 1],
    ]);
    await first.client.endAsync();
    await waitUntil(() => !h.broker.clients.has("sub"), "the broker let the first connection go");
    await pub.client.publishAsync("j/r", "queued", { qos: 1 });
    const second = await peers.mqttjs(url(h), options);
    expect(second.connack.sessionPresent).toBe(true);
    const [queued] = await second.receive(1);
    await pub.client.publishAsync("j/r", "live", { qos: 1 });
    const got = await second.receive(2);
    expect([queued!, got[1]!].map((m): [string, string, string, number | undefined] => [m.topic, String((m.packet as IPublishPacket).topic), m.payload, m.packet.properties?.topicAlias])).toEqual([
      ["j/r", "j/r", "queued", 1],
      ["j/r", "", "live", 1],
    ]);
    expect(second.client.connected).toBe(true);
  });
});
