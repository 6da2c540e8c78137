/**
 * CONNECT and CONNACK as raw conversations with a broker on port 0: both protocol levels, clean
 * start and Session Present, client identifiers, session takeover, the first-packet and
 * connect-timeout rules, unsupported protocol names and levels, the capabilities CONNACK
 * advertises, and the connection limit.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ConnackReturnCode, PacketType, ReasonCode, type ConnackPacket, type DisconnectPacket } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { DEFAULT_OPTIONS } from "../../lib/broker/options";
import { nextPublish, publishPacket, rawSubscribe, RawHarness, roundTrip, text, waitUntil, type RawClient } from "./helpers";

let h: RawHarness | null = null;
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

/** CONNECT fields that keep a session after the connection: v5 Session Expiry 60 s, 3.1.1 clean session 0. */
const persistent = (version: 4 | 5) => (version === 5 ? { protocolVersion: 5 as const, cleanStart: false, properties: { sessionExpiryInterval: 60 } } : { protocolVersion: 4 as const, cleanStart: false });

/** Ends a connection with DISCONNECT 0x00 and waits until the broker has let the client go. */
async function disconnect(h: RawHarness, c: RawClient, clientId: string): Promise<void> {
  c.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
  await c.closed.promise;
  await waitUntil(() => !h.broker.clients.has(clientId), `the broker let '${clientId}' go`);
}

/** The connection was closed, and the broker sent no CONNACK that accepted it. */
async function refusedAndClosed(c: RawClient): Promise<void> {
  await c.closed.promise;
  for (const p of c.received) if (p.type === PacketType.CONNACK) expect(p.reasonCode).not.toBe(0);
}

describe("CONNECT accepted", () => {
  test.each([5, 4] as const)("protocol level %d: CONNACK 0x00, and the connection carries traffic", async (version) => {
    const h = await start();
    const { client, connack } = await h.connectAck({ protocolVersion: version, clientId: `accepted-v${version}` });
    expect(connack.reasonCode).toBe(0);
    expect(connack.sessionPresent).toBe(false);
    if (version === 4) expect(connack.properties).toEqual({});
    expect(await rawSubscribe(client, "connect/echo", 1)).toBe(1);
    client.send(publishPacket("connect/echo", "hello", { qos: 1, packetId: 7 }));
    const p = await nextPublish(client, "connect/echo");
    expect(text(p.payload)).toBe("hello");
    expect((await client.next(PacketType.PUBACK)).type).toBe(PacketType.PUBACK);
  });
});

describe("clean start and Session Present", () => {
  test.each([5, 4] as const)("v%d: clean start 1 gets Session Present 0 [MQTT-3.2.2-2]", async (version) => {
    const h = await start();
    const { connack } = await h.connectAck({ protocolVersion: version, cleanStart: true, clientId: "fresh" });
    expect(connack.reasonCode).toBe(0);
    expect(connack.sessionPresent).toBe(false);
  });

  test.each([5, 4] as const)("v%d: clean start 0 without a stored session gets Session Present 0 [MQTT-3.2.2-3]", async (version) => {
    const h = await start();
    const { connack } = await h.connectAck({ ...persistent(version), clientId: "new-session" });
    expect(connack.reasonCode).toBe(0);
    expect(connack.sessionPresent).toBe(false);
  });

  test.each([5, 4] as const)("v%d: clean start 0 with a stored session gets Session Present 1 [MQTT-3.2.2-3]", async (version) => {
    const h = await start();
    const first = await h.connect({ ...persistent(version), clientId: "resumed" });
    await disconnect(h, first, "resumed");
    const { connack } = await h.connectAck({ ...persistent(version), clientId: "resumed" });
    expect(connack.reasonCode).toBe(0);
    expect(connack.sessionPresent).toBe(true);
  });

  test.each([5, 4] as const)("v%d: clean start 1 with a stored session discards it: Session Present 0 [MQTT-3.2.2-2] [MQTT-3.1.2-4]", async (version) => {
    const h = await start();
    const first = await h.connect({ ...persistent(version), clientId: "restarted" });
    await disconnect(h, first, "restarted");
    const { connack } = await h.connectAck({ ...persistent(version), cleanStart: true, clientId: "restarted" });
    expect(connack.reasonCode).toBe(0);
    expect(connack.sessionPresent).toBe(false);
  });

  test("v5: a session with Session Expiry Interval 0 ends with its connection: Session Present 0 on return", async () => {
    const h = await start();
    const first = await h.connect({ cleanStart: false, clientId: "short-lived" });
    await disconnect(h, first, "short-lived");
    const { connack } = await h.connectAck({ cleanStart: false, clientId: "short-lived" });
    expect(connack.sessionPresent).toBe(false);
  });
});

describe("client identifier", () => {
  test("v5: an empty client identifier gets an Assigned Client Identifier, unique per client [MQTT-3.1.3-6] [MQTT-3.2.2-16]", async () => {
    const h = await start();
    const a = await h.connectAck({ clientId: "" });
    const b = await h.connectAck({ clientId: "" });
    const idA = a.connack.properties.assignedClientIdentifier;
    const idB = b.connack.properties.assignedClientIdentifier;
    expect(a.connack.reasonCode).toBe(0);
    expect(idA).toBeString();
    expect(idA!.length).toBeGreaterThan(0);
    expect(idB).not.toBe(idA);
    expect(h.broker.clients.has(idA!)).toBe(true);
    expect(h.broker.clients.has(idB!)).toBe(true);
  });

  test("v5: a client identifier that was given is not assigned again", async () => {
    const h = await start();
    const { connack } = await h.connectAck({ clientId: "named" });
    expect(connack.properties.assignedClientIdentifier).toBeUndefined();
  });

  test("3.1.1: an empty client identifier with clean session 1 is accepted and works (3.1.1 [MQTT-3.1.3-6] [MQTT-3.1.3-7])", async () => {
    const h = await start();
    const { client, connack } = await h.connectAck({ protocolVersion: 4, cleanStart: true, clientId: "" });
    expect(connack.reasonCode).toBe(ConnackReturnCode.Accepted);
    expect(await rawSubscribe(client, "anonymous/t", 0)).toBe(0);
    client.send(publishPacket("anonymous/t", "me"));
    expect(text((await nextPublish(client, "anonymous/t")).payload)).toBe("me");
  });

  test("3.1.1: an empty client identifier with clean session 0 is refused with return code 0x02 and closed (3.1.1 [MQTT-3.1.3-8])", async () => {
    const h = await start();
    const { client, connack } = await h.connectAck({ protocolVersion: 4, cleanStart: false, clientId: "" });
    expect(connack.reasonCode).toBe(ConnackReturnCode.IdentifierRejected);
    expect(connack.sessionPresent).toBe(false);
    await client.closed.promise;
  });
});

describe("session takeover", () => {
  test.each([5, 4] as const)("v%d: a new connection with the same client identifier takes over; the old one is closed and its will published [MQTT-3.1.4-3]", async (version) => {
    const h = await start();
    const watcher = await h.connect({ clientId: "takeover-watcher" });
    await rawSubscribe(watcher, "takeover/will", 1);
    const old = await h.connect({ protocolVersion: version, clientId: "taken", will: { topic: "takeover/will", payload: new TextEncoder().encode("old gone"), qos: 1, retain: false, properties: {} } });
    const fresh = await h.connect({ protocolVersion: version, clientId: "taken" });
    if (version === 5) {
      const d = (await old.next(PacketType.DISCONNECT)) as DisconnectPacket;
      expect(d.reasonCode).toBe(ReasonCode.SessionTakenOver);
    }
    await old.closed.promise;
    expect(old.received.filter((p) => p.type === PacketType.DISCONNECT)).toEqual([]);
    expect(text((await nextPublish(watcher, "takeover/will")).payload)).toBe("old gone");
    expect(h.broker.clients.size).toBe(2);
    await roundTrip(fresh);
    expect(fresh.isClosed).toBe(false);
  });

  test("v5: the new connection resumes the session it took over: Session Present 1", async () => {
    const h = await start();
    const old = await h.connect({ ...persistent(5), clientId: "taken-resume" });
    const { connack } = await h.connectAck({ ...persistent(5), clientId: "taken-resume" });
    expect(connack.sessionPresent).toBe(true);
    await old.closed.promise;
  });
});

describe("the first packet must be CONNECT", () => {
  test.each([
    ["PINGREQ", [0xc0, 0x00]], // PINGREQ, remaining length 0
    ["PUBLISH", [0x30, 0x06, 0x00, 0x01, 0x74, 0x68, 0x69, 0x21]], // PUBLISH QoS 0, remaining 6, topic "t", payload "hi!"
    ["SUBSCRIBE", [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x74, 0x00]], // SUBSCRIBE, remaining 6, id 1, filter "t" QoS 0 (3.1.1 layout)
    ["DISCONNECT", [0xe0, 0x00]], // DISCONNECT, remaining length 0
    ["CONNACK", [0x20, 0x02, 0x00, 0x00]], // CONNACK, remaining 2: a server's packet
  ])("a first packet %s closes the connection without CONNACK [MQTT-3.1.0-1]", async (_name, bytes) => {
    const h = await start();
    const c = await h.open();
    c.send(bytes);
    await c.closed.promise;
    expect(c.received).toEqual([]);
  });

  test("a connection that sends nothing is closed after the connect timeout", async () => {
    const h = await start({ connectTimeoutMs: 200 });
    const c = await h.open();
    await c.closed.promise;
    expect(c.received).toEqual([]);
    expect(h.broker.connections.size).toBe(0);
  });

  test("a connection that sends only part of a CONNECT is closed after the connect timeout", async () => {
    const h = await start({ connectTimeoutMs: 200 });
    const c = await h.open();
    c.send([0x10, 0x0f, 0x00, 0x04, 0x4d, 0x51]); // CONNECT, remaining length 15, then 4 of its bytes: "\0\4MQ"
    await c.closed.promise;
    expect(c.received).toEqual([]);
  });

  test("a second CONNECT is a Protocol Error: v5 DISCONNECT 0x82, then close [MQTT-3.1.0-2]", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "twice" });
    c.send({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: "twice", will: null, username: null, password: null, properties: {} });
    const d = (await c.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.ProtocolError);
    await c.closed.promise;
    expect(h.broker.clients.has("twice")).toBe(false);
  });

  test("3.1.1: a second CONNECT closes the connection (3.1.1 [MQTT-3.1.0-2])", async () => {
    const h = await start();
    const c = await h.connect({ protocolVersion: 4, clientId: "twice-v4" });
    c.send({ type: PacketType.CONNECT, protocolVersion: 4, cleanStart: true, keepAlive: 0, clientId: "twice-v4", will: null, username: null, password: null, properties: {} });
    await c.closed.promise;
    expect(c.received.filter((p) => p.type === PacketType.CONNACK)).toEqual([]);
  });
});

describe("protocol name and level", () => {
  test.each([
    [
      "level 3 with name MQTT",
      [
        0x10, 0x0e, // CONNECT, remaining length 14
        0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, // protocol name "MQTT"
        0x03, // protocol level 3
        0x02, // connect flags: clean session
        0x00, 0x3c, // keep alive 60 s
        0x00, 0x02, 0x63, 0x33, // client identifier "c3"
      ],
    ],
    [
      "MQTT 3.1 (MQIsdp, level 3)",
      [
        0x10, 0x10, // CONNECT, remaining length 16
        0x00, 0x06, 0x4d, 0x51, 0x49, 0x73, 0x64, 0x70, // protocol name "MQIsdp"
        0x03, // protocol level 3
        0x02, // connect flags: clean session
        0x00, 0x3c, // keep alive 60 s
        0x00, 0x02, 0x63, 0x33, // client identifier "c3"
      ],
    ],
  ])("%s: a 3.1.1 CONNACK with return code 0x01, then close [MQTT-3.1.2-2]", async (_name, bytes) => {
    const h = await start();
    const c = await h.open(4);
    c.send(bytes);
    const ack = (await c.next(PacketType.CONNACK)) as ConnackPacket;
    expect(ack.reasonCode).toBe(ConnackReturnCode.UnacceptableProtocolVersion);
    expect(ack.sessionPresent).toBe(false);
    await c.closed.promise;
    expect(h.broker.clients.size).toBe(0);
  });

  test("level 6: a v5 CONNACK 0x84 Unsupported Protocol Version, then close [MQTT-3.1.2-2]", async () => {
    const h = await start();
    const c = await h.open(5);
    c.send([
      0x10, 0x0f, // CONNECT, remaining length 15
      0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, // protocol name "MQTT"
      0x06, // protocol level 6
      0x02, // connect flags: clean start
      0x00, 0x3c, // keep alive 60 s
      0x00, // properties length 0
      0x00, 0x02, 0x63, 0x36, // client identifier "c6"
    ]);
    const ack = (await c.next(PacketType.CONNACK)) as ConnackPacket;
    expect(ack.reasonCode).toBe(ReasonCode.UnsupportedProtocolVersion);
    expect(ack.sessionPresent).toBe(false);
    await c.closed.promise;
    expect(h.broker.clients.size).toBe(0);
  });

  test.each([
    [
      5,
      [
        0x10, 0x0f, // CONNECT, remaining length 15
        0x00, 0x04, 0x4d, 0x51, 0x54, 0x58, // protocol name "MQTX"
        0x05, // protocol level 5
        0x02, // connect flags: clean start
        0x00, 0x3c, // keep alive 60 s
        0x00, // properties length 0
        0x00, 0x02, 0x63, 0x78, // client identifier "cx"
      ],
    ],
    [
      4,
      [
        0x10, 0x0e, // CONNECT, remaining length 14
        0x00, 0x04, 0x6d, 0x71, 0x74, 0x74, // protocol name "mqtt" (the name is case sensitive)
        0x04, // protocol level 4
        0x02, // connect flags: clean session
        0x00, 0x3c, // keep alive 60 s
        0x00, 0x02, 0x63, 0x78, // client identifier "cx"
      ],
    ],
  ] as const)("level %d with a wrong protocol name: the connection is refused and closed [MQTT-3.1.2-1]", async (version, bytes) => {
    const h = await start();
    const c = await h.open(version);
    c.send([...bytes]);
    await refusedAndClosed(c);
    expect(h.broker.clients.size).toBe(0);
  });

  test("3.1.1: a CONNECT with the reserved flag set is closed without being accepted (3.1.1 [MQTT-3.1.2-3])", async () => {
    const h = await start();
    const c = await h.open(4);
    c.send([
      0x10, 0x0e, // CONNECT, remaining length 14
      0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, // protocol name "MQTT"
      0x04, // protocol level 4
      0x03, // connect flags: clean session | reserved bit 0
      0x00, 0x3c, // keep alive 60 s
      0x00, 0x02, 0x63, 0x72, // client identifier "cr"
    ]);
    await refusedAndClosed(c);
    expect(h.broker.clients.size).toBe(0);
  });
});

describe("CONNACK properties", () => {
  test("by default: Topic Alias Maximum 10, the default Maximum Packet Size, Server Keep Alive 60 for keep alive 0; no Receive Maximum, Maximum QoS or Retain Available", async () => {
    const h = await start();
    const { connack } = await h.connectAck({ clientId: "caps" });
    expect(connack.properties.topicAliasMaximum).toBe(DEFAULT_OPTIONS.topicAliasMaximum);
    expect(connack.properties.maximumPacketSize).toBe(DEFAULT_OPTIONS.maxPacketSize);
    expect(connack.properties.receiveMaximum).toBeUndefined();
    expect(connack.properties.maximumQoS).toBeUndefined();
    expect(connack.properties.retainAvailable).toBeUndefined();
    expect(connack.properties.serverKeepAlive).toBe(60); // the client asked for 0 [MQTT-3.2.2-21]
    expect(connack.properties.sharedSubscriptionAvailable).toBeUndefined(); // absent = available
  });

  test.each([
    ["maxPacketSize 1024", { maxPacketSize: 1024 }, { maximumPacketSize: 1024 }],
    ["receiveMaximum 20", { receiveMaximum: 20 }, { receiveMaximum: 20 }],
    ["maximumQoS 1", { maximumQoS: 1 }, { maximumQoS: 1 }],
    ["maximumQoS 0", { maximumQoS: 0 }, { maximumQoS: 0 }],
    ["retainAvailable false", { retainAvailable: false }, { retainAvailable: 0 }],
    ["topicAliasMaximum 3", { topicAliasMaximum: 3 }, { topicAliasMaximum: 3 }],
  ] as [string, BrokerInit, Record<string, number>][])("configured %s: advertised in CONNACK", async (_name, options, expected) => {
    const h = await start(options);
    const { connack } = await h.connectAck({ clientId: "caps" });
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties).toMatchObject(expected);
  });

  test("topicAliasMaximum 0: no Topic Alias Maximum (absent means 0)", async () => {
    const h = await start({ topicAliasMaximum: 0 });
    const { connack } = await h.connectAck({ clientId: "caps" });
    expect(connack.properties.topicAliasMaximum).toBeUndefined();
  });

  test("maxKeepAlive 30: a client asking for 60 s gets Server Keep Alive 30 [MQTT-3.2.2-21]", async () => {
    const h = await start({ maxKeepAlive: 30 });
    const { connack } = await h.connectAck({ clientId: "caps", keepAlive: 60 });
    expect(connack.properties.serverKeepAlive).toBe(30);
  });
});

describe("connection limit", () => {
  test.each([
    [5, ReasonCode.QuotaExceeded],
    [4, ConnackReturnCode.ServerUnavailable],
  ] as const)("v%d: beyond maxConnections CONNECT is refused (code %d) and closed; room frees when a client leaves", async (version, code) => {
    const h = await start({ maxConnections: 1 });
    const first = await h.connect({ clientId: "first" });
    const { client, connack } = await h.connectAck({ protocolVersion: version, clientId: "second" });
    expect(connack.reasonCode).toBe(code);
    expect(connack.sessionPresent).toBe(false);
    await client.closed.promise;
    expect(h.broker.clients.has("second")).toBe(false);
    await disconnect(h, first, "first");
    const { connack: later } = await h.connectAck({ protocolVersion: version, clientId: "second" });
    expect(later.reasonCode).toBe(0);
  });
});
