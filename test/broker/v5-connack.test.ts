/**
 * MQTT 5.0 connection capabilities, as raw conversations with a broker on port 0 and with MQTT.js
 * (npm `mqtt`, protocol level 5) where it supports the feature: CONNACK advertising exactly what
 * the broker is configured with, Server Keep Alive, Response Information, Assigned Client
 * Identifier, server redirection, reason strings (and when they must be left out), Will Delay and
 * Session Expiry, and denied topic filters with the filterCovers() that decides them.
 *
 * Already proven elsewhere and not repeated here: the default CONNACK and single capabilities
 * (connect.test.ts "CONNACK properties"), an imposed Server Keep Alive enforced for a client that
 * asked for 0 (keepalive.test.ts), the raw Assigned Client Identifier (connect.test.ts "client
 * identifier"), raw Will Delay and Session Expiry (will.test.ts "Will Delay Interval",
 * session.test.ts "session expiry").
 */
import { describe, expect, test } from "bun:test";
import { connect as mqttConnect, type IClientOptions, type IConnackPacket, type IDisconnectPacket, type MqttClient } from "mqtt";
import type { ISubackPacket } from "mqtt-packet";
import { encodePacket, MAX_PACKET_SIZE, PacketType, ReasonCode, type ConnackPacket, type ConnectPacket, type DisconnectPacket, type Packet, type QoS } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { DEFAULT_OPTIONS } from "../../lib/broker/options";
import { filterCovers, topicMatches } from "../../lib/topic/match";
import { connectPacket, nextPublish, publishPacket, rawSubscribe, RawHarness, roundTrip, settle, subscribeAll, subscription, takePublishes, text, utf8, waitUntil, WireClient, type RawClient, useHarness } from "./helpers";

const { start, peers, wires } = useHarness();

const urlOf = (h: RawHarness): string => `mqtt://127.0.0.1:${h.port}`;

/** A connection to the broker that keeps the bytes it receives undecoded. */
async function wire(h: RawHarness): Promise<WireClient> {
  const w = await WireClient.open(h.port);
  wires.push(w);
  return w;
}

/** Resolves with the DISCONNECT the broker sends an MQTT.js client (register before it can arrive). */
const disconnectOf = (client: MqttClient): Promise<IDisconnectPacket> => new Promise((resolve) => client.once("disconnect", resolve));

/** Ends a raw connection without DISCONNECT and waits until the broker has noticed. */
async function drop(h: RawHarness, c: RawClient, clientId: string): Promise<void> {
  c.end();
  await waitUntil(() => !h.broker.clients.has(clientId), `the broker noticed '${clientId}' went away`);
}

/**
 * Connects an MQTT.js client that the broker refuses. Resolves with the refusing CONNACK as MQTT.js
 * parsed it and the error MQTT.js raised for it; the client is ended either way.
 */
async function mqttjsRefused(url: string, options: IClientOptions): Promise<{ connack: IConnackPacket; error: Error & { code?: number } }> {
  const client = mqttConnect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
  try {
    const connack = new Promise<IConnackPacket>((resolve) => client.on("packetreceive", (p) => p.cmd === "connack" && resolve(p as IConnackPacket)));
    const error = new Promise<Error>((resolve) => client.once("error", resolve));
    return { connack: await connack, error: await error };
  } finally {
    await client.endAsync(true);
  }
}

// ---- CONNACK advertises exactly what is configured --------------------------------------------

describe("CONNACK capabilities (section 3.2.2.3)", () => {
  /** What every v5 CONNACK carries with the defaults, for a client with keep alive 30 (no Server Keep Alive). */
  const BASE = { topicAliasMaximum: DEFAULT_OPTIONS.topicAliasMaximum, maximumPacketSize: DEFAULT_OPTIONS.maxPacketSize };

  /** BASE changed by `changes`; an undefined value removes the property. */
  function advertised(changes: Record<string, number | undefined>): Record<string, number> {
    const all: Record<string, number | undefined> = { ...BASE, ...changes };
    return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) as Record<string, number>;
  }

  test.each([
    ["nothing configured", {}, {}],
    ["retainAvailable false [MQTT-3.2.2-13]", { retainAvailable: false }, { retainAvailable: 0 }],
    ["maximumQoS 1 [MQTT-3.2.2-9]", { maximumQoS: 1 }, { maximumQoS: 1 }],
    ["maximumQoS 0 [MQTT-3.2.2-9]", { maximumQoS: 0 }, { maximumQoS: 0 }],
    ["maximumQoS 2 (the default, given explicitly)", { maximumQoS: 2 }, {}],
    ["wildcardSubscriptionAvailable false", { wildcardSubscriptionAvailable: false }, { wildcardSubscriptionAvailable: 0 }],
    ["subscriptionIdentifierAvailable false", { subscriptionIdentifierAvailable: false }, { subscriptionIdentifierAvailable: 0 }],
    ["sharedSubscriptionAvailable false", { sharedSubscriptionAvailable: false }, { sharedSubscriptionAvailable: 0 }],
    ["every feature available, as by default", { retainAvailable: true, wildcardSubscriptionAvailable: true, subscriptionIdentifierAvailable: true, sharedSubscriptionAvailable: true }, {}],
    ["topicAliasMaximum 3", { topicAliasMaximum: 3 }, { topicAliasMaximum: 3 }],
    ["topicAliasMaximum 0: absent, which means 0", { topicAliasMaximum: 0 }, { topicAliasMaximum: undefined }],
    ["receiveMaximum 20", { receiveMaximum: 20 }, { receiveMaximum: 20 }],
    ["receiveMaximum 65535: absent, which means 65535", { receiveMaximum: 65535 }, {}],
    ["maxPacketSize 1024", { maxPacketSize: 1024 }, { maximumPacketSize: 1024 }],
    ["maxPacketSize at the protocol's limit: absent, which means no limit", { maxPacketSize: MAX_PACKET_SIZE }, { maximumPacketSize: undefined }],
    ["responseInformation set, but the client did not ask for it [MQTT-3.1.2-28]", { responseInformation: "reply/" }, {}],
    ["deniedTopicFilters (nothing to advertise)", { deniedTopicFilters: ["secret/#"] }, {}],
    ["maxKeepAlive 0 (nothing to impose)", { maxKeepAlive: 0 }, {}],
  ] as [string, BrokerInit, Record<string, number | undefined>][])("configured %s: CONNACK carries exactly the capabilities that differ from the protocol's defaults", async (_name, options, changes) => {
    const h = await start(options);
    const { connack } = await h.connectAck({ clientId: "caps", keepAlive: 30 });
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties).toEqual(advertised(changes));
  });

  /** Every capability changed at once. */
  const EVERYTHING: BrokerInit = {
    retainAvailable: false,
    maximumQoS: 1,
    wildcardSubscriptionAvailable: false,
    subscriptionIdentifierAvailable: false,
    sharedSubscriptionAvailable: false,
    topicAliasMaximum: 5,
    receiveMaximum: 7,
    maxPacketSize: 4096,
    maxKeepAlive: 20,
    responseInformation: "reply/",
  };

  test("every capability configured at once: all of them, and nothing else", async () => {
    const h = await start(EVERYTHING);
    const { connack } = await h.connectAck({ clientId: "caps", keepAlive: 0, properties: { requestResponseInformation: 1 } });
    expect(connack.properties).toEqual({
      retainAvailable: 0,
      maximumQoS: 1,
      wildcardSubscriptionAvailable: 0,
      subscriptionIdentifierAvailable: 0,
      sharedSubscriptionAvailable: 0,
      topicAliasMaximum: 5,
      receiveMaximum: 7,
      maximumPacketSize: 4096,
      serverKeepAlive: 20,
      responseInformation: "reply/",
    });
  });

  test("3.1.1: with every capability configured, CONNACK is exactly 20 02 00 00: no properties", async () => {
    const h = await start(EVERYTHING);
    const w = await wire(h);
    w.send(encodePacket(connectPacket({ protocolVersion: 4, clientId: "v4" }), 4));
    expect(await w.next(PacketType.CONNACK)).toEqual([0x20, 0x02, 0x00, 0x00]);
  });

  test("MQTT.js reads every configured capability from CONNACK", async () => {
    const h = await start(EVERYTHING);
    const { connack } = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "caps", keepalive: 0, properties: { requestResponseInformation: true } });
    expect(connack.properties).toEqual({
      retainAvailable: false,
      maximumQoS: 1,
      wildcardSubscriptionAvailable: false,
      subscriptionIdentifiersAvailable: false,
      sharedSubscriptionAvailable: false,
      topicAliasMaximum: 5,
      receiveMaximum: 7,
      maximumPacketSize: 4096,
      serverKeepAlive: 20,
      responseInformation: "reply/",
    });
  });
});

// ---- Server Keep Alive --------------------------------------------------------------------------

describe("Server Keep Alive (section 3.2.2.3.14)", () => {
  test.each([
    [120, 60, "[MQTT-3.2.2-21]"],
    [61, 60, "[MQTT-3.2.2-21]"],
    [60, undefined, "[MQTT-3.2.2-22]"],
    [30, undefined, "[MQTT-3.2.2-22]"],
    [1, undefined, "[MQTT-3.2.2-22]"],
  ] as const)("default maxKeepAlive 60: a v5 client asking for %d s gets Server Keep Alive %p %s", async (keepAlive, serverKeepAlive, _tag) => {
    const h = await start();
    const { connack } = await h.connectAck({ clientId: "ka", keepAlive });
    expect(connack.properties.serverKeepAlive).toBe(serverKeepAlive);
  });

  test.each([0, 1000])("maxKeepAlive 0 (any): a client asking for %d s gets no Server Keep Alive [MQTT-3.2.2-22]", async (keepAlive) => {
    const h = await start({ maxKeepAlive: 0 });
    const { connack } = await h.connectAck({ clientId: "ka", keepAlive });
    expect(connack.properties.serverKeepAlive).toBeUndefined();
  });

  test("maxKeepAlive 1: a v5 client asking for 120 s is held to 1 s: silent, it gets DISCONNECT 0x8D Keep Alive Timeout [MQTT-3.2.2-21] [MQTT-3.1.2-22]", async () => {
    const h = await start({ maxKeepAlive: 1 });
    const { client, connack } = await h.connectAck({ clientId: "held", keepAlive: 120 });
    expect(connack.properties.serverKeepAlive).toBe(1);
    const d = (await client.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.KeepAliveTimeout);
    await client.closed.promise;
  });

  test("3.1.1 has no Server Keep Alive: maxKeepAlive is not imposed, so keep alive 0 stays off while a v5 client's is enforced", async () => {
    const h = await start({ maxKeepAlive: 1 });
    const v4 = await h.connect({ protocolVersion: 4, clientId: "v4", keepAlive: 0 });
    const v5 = await h.connect({ clientId: "v5", keepAlive: 0 });
    await v5.closed.promise; // held to 1 s, silent for 1.5 s
    await roundTrip(v4);
    expect(v4.isClosed).toBe(false);
    expect(h.broker.clients.has("v4")).toBe(true);
  });

  test.each([
    [120, 60],
    [0, 60],
    [30, undefined],
  ] as const)("MQTT.js with keepalive %d reads Server Keep Alive %p from CONNACK", async (keepalive, serverKeepAlive) => {
    const h = await start();
    const { connack } = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "ka", keepalive });
    expect(connack.properties?.serverKeepAlive).toBe(serverKeepAlive);
  });

  test("MQTT.js with keepalive 0 under maxKeepAlive 1 sends nothing and gets DISCONNECT 0x8D with a reason string [MQTT-3.1.2-22]", async () => {
    const h = await start({ maxKeepAlive: 1 });
    const { client, connack } = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "quiet", keepalive: 0 });
    expect(connack.properties?.serverKeepAlive).toBe(1);
    const d = await disconnectOf(client);
    expect(d.reasonCode).toBe(ReasonCode.KeepAliveTimeout);
    expect(d.properties?.reasonString).toBeString();
    await waitUntil(() => !h.broker.clients.has("quiet"), "the broker let the client go");
  });
});

// ---- Response Information ---------------------------------------------------------------------

describe("Response Information (section 3.2.2.3.15)", () => {
  test.each([
    ["configured, Request Response Information 1: sent", "reply/", 1, "reply/"],
    ["configured, Request Response Information 0: not sent [MQTT-3.1.2-28]", "reply/", 0, undefined],
    ["configured, Request Response Information absent (0): not sent [MQTT-3.1.2-28]", "reply/", undefined, undefined],
    ["not configured, Request Response Information 1: none to send", "", 1, undefined],
  ] as const)("%s", async (_name, responseInformation, requestResponseInformation, expected) => {
    const h = await start({ responseInformation });
    const properties = requestResponseInformation === undefined ? {} : { requestResponseInformation };
    const { connack } = await h.connectAck({ clientId: "rr", properties });
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties.responseInformation).toBe(expected);
  });

  test.each([
    [true, "reply/"],
    [false, undefined],
  ] as const)("MQTT.js with requestResponseInformation %p reads Response Information %p", async (requestResponseInformation, expected) => {
    const h = await start({ responseInformation: "reply/" });
    const { connack } = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "rr", properties: { requestResponseInformation } });
    expect(connack.properties?.responseInformation).toBe(expected);
  });
});

// ---- Assigned Client Identifier ---------------------------------------------------------------

describe("Assigned Client Identifier", () => {
  test("MQTT.js with clientId '' and clean start gets an Assigned Client Identifier, unique per client, and its messages flow [MQTT-3.1.3-6] [MQTT-3.2.2-16]", async () => {
    const h = await start();
    const a = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "", clean: true });
    const b = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "", clean: true });
    const idA = a.connack.properties?.assignedClientIdentifier;
    const idB = b.connack.properties?.assignedClientIdentifier;
    expect(idA).toBeString();
    expect(idB).toBeString();
    expect(idA).not.toBe(idB);
    expect(h.broker.clients.has(idA!)).toBe(true);
    expect(h.broker.clients.has(idB!)).toBe(true);
    await a.client.subscribeAsync("assigned/t", { qos: 1 });
    await b.client.publishAsync("assigned/t", "hello", { qos: 1 });
    const [m] = await a.receive(1);
    expect(m!.payload).toBe("hello");
  });

  test("v5: the assigned identifier names the session as if the client had sent it: reconnecting with it resumes the session [MQTT-3.1.3-7]", async () => {
    const h = await start();
    const { client, connack } = await h.connectAck({ clientId: "", cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    const id = connack.properties.assignedClientIdentifier!;
    expect(id).toBeString();
    await rawSubscribe(client, "assigned/#", 1);
    await drop(h, client, id);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("assigned/x", "kept for you", { qos: 1, packetId: 1 }));
    await pub.next(PacketType.PUBACK);
    const { client: back, connack: again } = await h.connectAck({ clientId: id, cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    expect(again.sessionPresent).toBe(true);
    expect(again.properties.assignedClientIdentifier).toBeUndefined();
    expect(text((await nextPublish(back, "assigned/x")).payload)).toBe("kept for you");
  });
});

// ---- server redirection -------------------------------------------------------------------------

describe("redirect (section 4.11)", () => {
  test.each([
    [true, ReasonCode.ServerMoved],
    [false, ReasonCode.UseAnotherServer],
  ] as const)("permanent %p: every v5 CONNECT gets CONNACK 0x%s with Server Reference and a reason string, Session Present 0 [MQTT-3.2.2-6], then close [MQTT-3.2.2-7]; no session is made", async (permanent, code) => {
    const h = await start({ redirect: { reference: "other.example:1883", permanent } });
    const { client, connack } = await h.connectAck({ clientId: "moved", cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    expect(connack.reasonCode).toBe(code);
    expect(connack.sessionPresent).toBe(false);
    expect(connack.properties.serverReference).toBe("other.example:1883");
    expect(connack.properties.reasonString).toBeString();
    await client.closed.promise;
    expect(h.broker.sessions.size).toBe(0);
    expect(h.broker.clients.size).toBe(0);
  });

  test("3.1.1: CONNACK is exactly 20 02 00 03 (Server unavailable, no properties), then close (3.1.1 [MQTT-3.2.2-4] [MQTT-3.2.2-5])", async () => {
    const h = await start({ redirect: { reference: "other.example:1883", permanent: true } });
    const w = await wire(h);
    w.send(encodePacket(connectPacket({ protocolVersion: 4, clientId: "moved-v4" }), 4));
    expect(await w.next(PacketType.CONNACK)).toEqual([0x20, 0x02, 0x00, 0x03]);
    await w.closed.promise;
    expect(w.frames).toEqual([]);
    expect(h.broker.sessions.size).toBe(0);
  });

  test.each([
    [true, ReasonCode.ServerMoved],
    [false, ReasonCode.UseAnotherServer],
  ] as const)("MQTT.js (permanent %p) is refused with reason code %d and reads the Server Reference", async (permanent, code) => {
    const h = await start({ redirect: { reference: "other.example:1883", permanent } });
    const { connack, error } = await mqttjsRefused(urlOf(h), { protocolVersion: 5, clientId: "moved" });
    expect(connack.reasonCode).toBe(code);
    expect(connack.properties?.serverReference).toBe("other.example:1883");
    expect(error.code).toBe(code);
  });
});

// ---- reason strings -----------------------------------------------------------------------------

/** A will on `topic`. */
const will = (fields: Partial<NonNullable<ConnectPacket["will"]>> = {}): ConnectPacket["will"] => ({ topic: "w", payload: utf8("gone"), qos: 0, retain: false, properties: {}, ...fields });

/** CONNECT refusals: broker options, CONNECT fields, the reason code. */
const REFUSALS: [string, BrokerInit, Partial<ConnectPacket>, number][] = [
  ["redirect", { redirect: { reference: "elsewhere:1883", permanent: false } }, {}, ReasonCode.UseAnotherServer],
  ["an authentication method the broker does not support", {}, { properties: { authenticationMethod: "SCRAM-SHA-256" } }, ReasonCode.BadAuthenticationMethod],
  ["a will QoS above the Maximum QoS [MQTT-3.2.2-12]", { maximumQoS: 1 }, { will: will({ qos: 2 }) }, ReasonCode.QoSNotSupported],
  ["a retained will when retain is not available [MQTT-3.2.2-13]", { retainAvailable: false }, { will: will({ retain: true }) }, ReasonCode.RetainNotSupported],
  ["the connection limit", { maxConnections: 0 }, {}, ReasonCode.QuotaExceeded],
];

/** Ways to make the broker end a connection with DISCONNECT: options, CONNECT fields, the act, the reason code. */
const DISCONNECTS: [string, BrokerInit, Partial<ConnectPacket>, (h: RawHarness, c: RawClient) => Promise<void> | void, number][] = [
  ["session taken over [MQTT-3.1.4-3]", {}, {}, async (h) => void (await h.connect({ clientId: "victim" })), ReasonCode.SessionTakenOver],
  ["the broker shutting down", {}, {}, (h) => void h.broker.stop(), ReasonCode.ServerShuttingDown],
  ["a second CONNECT [MQTT-3.1.0-2]", {}, {}, (_h, c) => c.send(connectPacket({ clientId: "victim" })), ReasonCode.ProtocolError],
  ["a PUBLISH above the Maximum QoS [MQTT-3.2.2-11]", { maximumQoS: 0 }, {}, (_h, c) => c.send(publishPacket("t", "m", { qos: 1, packetId: 1 })), ReasonCode.QoSNotSupported],
  ["a topic alias above the maximum [MQTT-3.3.2-9]", { topicAliasMaximum: 2 }, {}, (_h, c) => c.send(publishPacket("t", "m", { properties: { topicAlias: 3 } })), ReasonCode.TopicAliasInvalid],
  ["a packet above maxPacketSize [MQTT-3.2.2-15]", { maxPacketSize: 100 }, {}, (_h, c) => c.send(publishPacket("t", new Uint8Array(200))), ReasonCode.PacketTooLarge],
  ["a payload marked UTF-8 that is not", {}, {}, (_h, c) => c.send(publishPacket("t", new Uint8Array([0xc3, 0x28]), { properties: { payloadFormatIndicator: 1 } })), ReasonCode.PayloadFormatInvalid],
  ["a retained PUBLISH when retain is not available [MQTT-3.2.2-14]", { retainAvailable: false }, {}, (_h, c) => c.send(publishPacket("t", "m", { retain: true })), ReasonCode.RetainNotSupported],
  ["a Subscription Identifier when they are not available", { subscriptionIdentifierAvailable: false }, {}, (_h, c) => c.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [subscription("t")], properties: { subscriptionIdentifiers: [1] } }), ReasonCode.SubscriptionIdentifiersNotSupported],
  ["more unreleased QoS 2 messages than the broker's Receive Maximum [MQTT-3.3.4-7]", { receiveMaximum: 1 }, {}, (_h, c) => {
    c.send(publishPacket("t", "1", { qos: 2, packetId: 1 }));
    c.send(publishPacket("t", "2", { qos: 2, packetId: 2 }));
  }, ReasonCode.ReceiveMaximumExceeded],
  ["keep alive timeout [MQTT-3.1.2-22]", {}, { keepAlive: 1 }, () => {}, ReasonCode.KeepAliveTimeout],
];

/** Maximum Packet Size of a client for which every reason string below is too long. */
const SMALL = 20;

describe("reason strings", () => {
  test.each(REFUSALS)("CONNACK refusing a CONNECT for %s carries a reason string", async (_name, options, fields, code) => {
    const h = await start(options);
    const { client, connack } = await h.connectAck({ clientId: "refused", ...fields });
    expect(connack.reasonCode).toBe(code);
    expect(connack.properties.reasonString).toBeString();
    expect(connack.properties.reasonString!.length).toBeGreaterThan(0);
    await client.closed.promise;
  });

  test.each(REFUSALS)("[MQTT-3.2.2-19] CONNACK refusing a CONNECT for %s leaves the reason string out when it would exceed the client's Maximum Packet Size", async (_name, options, fields, code) => {
    const h = await start(options);
    const serverReference = options.redirect?.reference;
    const bare: ConnackPacket = { type: PacketType.CONNACK, sessionPresent: false, reasonCode: code, properties: serverReference === undefined ? {} : { serverReference } };
    const limit = encodePacket(bare, 5).length; // the refusal fits exactly without its reason string
    const { client, connack } = await h.connectAck({ clientId: "refused", ...fields, properties: { ...fields.properties, maximumPacketSize: limit } });
    expect(connack).toEqual(bare);
    await client.closed.promise;
  });

  test.each(DISCONNECTS)("DISCONNECT for %s carries a reason string", async (_name, options, fields, act, code) => {
    const h = await start(options);
    const c = await h.connect({ clientId: "victim", ...fields });
    await act(h, c);
    const d = (await c.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(code);
    expect(d.properties.reasonString).toBeString();
    expect(encodePacket(d, 5).length).toBeGreaterThan(SMALL); // so the next test means something
    await c.closed.promise;
  });

  test.each(DISCONNECTS)("[MQTT-3.14.2-3] DISCONNECT for %s leaves the reason string out when it would exceed the client's Maximum Packet Size", async (_name, options, fields, act, code) => {
    const h = await start(options);
    const c = await h.connect({ clientId: "victim", ...fields, properties: { ...fields.properties, maximumPacketSize: SMALL } });
    await act(h, c);
    const d = (await c.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d).toEqual({ type: PacketType.DISCONNECT, reasonCode: code, properties: {} });
    await c.closed.promise;
  });

  test("[MQTT-3.1.2-29] with Request Problem Information 0, failing SUBACK, UNSUBACK, PUBREL and PUBCOMP carry no reason string", async () => {
    const h = await start({ deniedTopicFilters: ["secret/#"], wildcardSubscriptionAvailable: false });
    const c = await h.connect({ clientId: "quiet", properties: { requestProblemInformation: 0 } });
    const suback = await subscribeAll(c, [subscription("a/#/b"), subscription("secret/x"), subscription("a/+")]);
    expect(suback.reasonCodes).toEqual([ReasonCode.TopicFilterInvalid, ReasonCode.UnspecifiedError, ReasonCode.WildcardSubscriptionsNotSupported]);
    expect(suback.properties).toEqual({});
    c.send({ type: PacketType.UNSUBSCRIBE, packetId: 2, topicFilters: ["never/subscribed"], properties: {} });
    c.send({ type: PacketType.PUBREC, packetId: 3, reasonCode: 0, properties: {} });
    c.send({ type: PacketType.PUBREL, packetId: 4, reasonCode: 0, properties: {} });
    const acks = await Promise.all([c.next(PacketType.UNSUBACK), c.next(PacketType.PUBREL), c.next(PacketType.PUBCOMP)]);
    expect(acks.map((p) => ("reasonCodes" in p ? p.reasonCodes[0] : "reasonCode" in p ? p.reasonCode : -1))).toEqual([
      ReasonCode.NoSubscriptionExisted,
      ReasonCode.PacketIdentifierNotFound,
      ReasonCode.PacketIdentifierNotFound,
    ]);
    for (const p of acks as Extract<Packet, { properties: object }>[]) expect(p.properties).toEqual({});
  });
});

// ---- Will Delay Interval and Session Expiry, with MQTT.js as the client ------------------------

describe("Will Delay Interval and Session Expiry with MQTT.js", () => {
  /** MQTT.js options of a client with a kept session and a will delayed by `delay` seconds. */
  const delayed = (clientId: string, payload: string, delay: number): IClientOptions => ({
    protocolVersion: 5,
    clientId,
    clean: false,
    properties: { sessionExpiryInterval: 60 },
    will: { topic: "will/delayed", payload: Buffer.from(payload), qos: 1, retain: false, properties: { willDelayInterval: delay } },
  });

  /** Ends an MQTT.js client without DISCONNECT (a network failure, to the broker) and waits until the broker has noticed. */
  async function kill(h: RawHarness, client: MqttClient, clientId: string): Promise<void> {
    await client.endAsync(true);
    await waitUntil(() => !h.broker.clients.has(clientId), `the broker noticed '${clientId}' went away`);
  }

  test("the will is published once the Will Delay Interval has passed, not at the close [MQTT-3.1.3-9] [MQTT-3.1.2-8]", async () => {
    const h = await start();
    const watcher = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "watcher" });
    await watcher.client.subscribeAsync("will/#", { qos: 1 });
    const dying = await peers.mqttjs(urlOf(h), delayed("dying", "after the delay", 1));
    await kill(h, dying.client, "dying");
    await watcher.client.publishAsync("will/marker", "marker", { qos: 1 }); // published right after the close: it must come first
    const got = await watcher.receive(2);
    expect(got.map((m) => [m.topic, m.payload])).toEqual([
      ["will/marker", "marker"],
      ["will/delayed", "after the delay"],
    ]);
  });

  test("a client that reconnects within the Will Delay Interval stops its will [MQTT-3.1.3-9]", async () => {
    const h = await start();
    const watcher = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "watcher" });
    await watcher.client.subscribeAsync("will/#", { qos: 1 });
    const first = await peers.mqttjs(urlOf(h), delayed("returning", "must not appear", 1));
    await kill(h, first.client, "returning");
    const back = await peers.mqttjs(urlOf(h), delayed("returning", "must not appear either", 3600));
    expect(back.connack.sessionPresent).toBe(true);
    // a witness with the same delay, dropped later: its will comes after the first one would have
    const witness = await peers.mqttjs(urlOf(h), delayed("witness", "witness will", 1));
    await kill(h, witness.client, "witness");
    const [m] = await watcher.receive(1);
    expect(m!.payload).toBe("witness will");
    await watcher.client.publishAsync("will/marker", "marker", { qos: 1 });
    expect((await watcher.receive(2)).map((x) => x.payload)).toEqual(["witness will", "marker"]);
  });

  test("the session and its queued messages are removed once the Session Expiry Interval has passed [MQTT-4.1.0-2]", async () => {
    const h = await start();
    const away = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "expiring", clean: false, properties: { sessionExpiryInterval: 1 } });
    await away.client.subscribeAsync("expiry/#", { qos: 1 });
    await away.client.endAsync();
    await waitUntil(() => !h.broker.clients.has("expiring"), "the broker let 'expiring' go");
    const pub = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("expiry/queued", "queued while away", { qos: 1 });
    expect(h.broker.sessions.get("expiring")?.queued).toBe(1);
    await waitUntil(() => !h.broker.sessions.has("expiring"), "the session expired");
    const back = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "expiring", clean: false, properties: { sessionExpiryInterval: 1 } });
    expect(back.connack.sessionPresent).toBe(false);
    await back.client.subscribeAsync("expiry/#", { qos: 1 });
    await pub.client.publishAsync("expiry/after", "after", { qos: 1 });
    const [m] = await back.receive(1);
    expect(m!.payload).toBe("after"); // the queued message went with the session
    expect(back.inbox).toHaveLength(1);
  });

  test("Session Expiry Interval 0xFFFFFFFF never expires: the session is still there after a shorter interval ran out on another client, with its queue", async () => {
    const h = await start();
    const forever = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "forever", clean: false, properties: { sessionExpiryInterval: 0xffffffff } });
    await forever.client.subscribeAsync("never/#", { qos: 1 });
    await forever.client.endAsync();
    const brief = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "brief", clean: false, properties: { sessionExpiryInterval: 1 } });
    await brief.client.endAsync();
    const pub = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "pub" });
    await pub.client.publishAsync("never/queued", "still here", { qos: 1 });
    await waitUntil(() => !h.broker.sessions.has("brief"), "the one-second session expired");
    expect(h.broker.sessions.has("forever")).toBe(true);
    const back = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "forever", clean: false, properties: { sessionExpiryInterval: 0xffffffff } });
    expect(back.connack.sessionPresent).toBe(true);
    const [m] = await back.receive(1);
    expect([m!.topic, m!.payload]).toEqual(["never/queued", "still here"]);
  });

  test("raw v5: Session Expiry Interval 0xFFFFFFFF, given in CONNECT or in DISCONNECT, never expires", async () => {
    const h = await start();
    const a = await h.connect({ clientId: "forever-connect", cleanStart: false, properties: { sessionExpiryInterval: 0xffffffff } });
    const b = await h.connect({ clientId: "forever-disconnect", cleanStart: false, properties: { sessionExpiryInterval: 1 } });
    const brief = await h.connect({ clientId: "brief", cleanStart: false, properties: { sessionExpiryInterval: 1 } });
    for (const c of [a, b, brief]) await rawSubscribe(c, "never/#", 1);
    b.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: { sessionExpiryInterval: 0xffffffff } });
    a.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    await Promise.all([a.closed.promise, b.closed.promise]);
    await drop(h, brief, "brief");
    await waitUntil(() => !h.broker.sessions.has("brief"), "the one-second session expired");
    for (const clientId of ["forever-connect", "forever-disconnect"]) {
      const { connack } = await h.connectAck({ clientId, cleanStart: false, properties: { sessionExpiryInterval: 0xffffffff } });
      expect(connack.sessionPresent).toBe(true);
    }
  });
});

// ---- denied topic filters -------------------------------------------------------------------------

describe("filterCovers (the rule behind deniedTopicFilters)", () => {
  test.each([
    ["secret/#", "secret/a", true],
    ["secret/#", "secret/#", true],
    ["secret/#", "secret/+/x", true],
    ["secret/#", "secret/a/b/c", true],
    ["secret/#", "secret", true], // 'secret/#' matches the topic 'secret' [MQTT-4.7.1-1]
    ["secret/#", "public/a", false],
    ["secret/#", "secretive/a", false],
    ["secret/#", "#", false],
    ["secret/#", "+/a", false],
    ["secret/#", "+/#", false],
    ["a/+", "a/b", true],
    ["a/+", "a/+", true],
    ["a/+", "a/#", false],
    ["a/+", "a", false],
    ["a/+", "a/b/c", false],
    ["a/+/#", "a/+", true],
    ["a/+/#", "a/#", false], // 'a/#' matches 'a', which 'a/+/#' does not
    ["#", "a/b", true],
    ["#", "#", true],
    ["#", "$SYS/x", false], // [MQTT-4.7.2-1]
    ["#", "$SYS/#", false],
    ["+/x", "$SYS/x", false],
    ["$SYS/#", "$SYS/x", true],
    ["$SYS/#", "$SYS", true],
    ["+/#", "#", true], // every topic has a first level, so '+/#' matches whatever '#' does
    ["+/+/#", "#", false],
    ["a/b", "a/b", true],
    ["a/b", "a/c", false],
  ])("filterCovers(%p, %p) is %p", (cover, filter, expected) => {
    expect(filterCovers(cover, filter)).toBe(expected);
  });

  test("agrees with the reference matcher on every pair of filters up to three levels: covers exactly when each topic the filter matches is matched by the cover", () => {
    // topics of up to four levels over {a, b, '', z} ('$s' as a first level); 'z' is in no filter, so it stands for any other name
    const levels = ["a", "b", "", "z"];
    let topics: string[] = ["a", "b", "z", "$s"];
    for (let n = 2, last = ["a", "b", "", "z", "$s"]; n <= 4; n++) {
      last = last.flatMap((t) => levels.map((l) => `${t}/${l}`));
      topics = topics.concat(last);
    }
    // filters of up to three levels over {a, b, '', +, #} ('$s' as a first level), '#' only last
    const filterLevels = ["a", "b", "", "+"];
    let filters: string[] = ["a", "b", "", "+", "#", "$s"].filter((f) => f !== "");
    for (let n = 2, open = ["a", "b", "", "+", "$s"]; n <= 3; n++) {
      filters = filters.concat(open.map((f) => `${f}/#`));
      open = open.flatMap((f) => filterLevels.map((l) => `${f}/${l}`));
      filters = filters.concat(open);
    }
    const matched = filters.map((f) => topics.map((t) => topicMatches(f, t)));
    const wrong: string[] = [];
    for (let i = 0; i < filters.length; i++) {
      for (let j = 0; j < filters.length; j++) {
        const truth = matched[j]!.every((m, t) => !m || matched[i]![t]);
        if (filterCovers(filters[i]!, filters[j]!) !== truth) wrong.push(`filterCovers('${filters[i]}', '${filters[j]}') should be ${truth}`);
      }
    }
    expect(filters.length).toBeGreaterThan(100);
    expect(wrong).toEqual([]);
  });
});

describe("deniedTopicFilters", () => {
  test.each([5, 4] as const)("v%d: SUBACK 0x80 for every filter 'secret/#' covers ('secret' included), a granted QoS for the others in the same SUBSCRIBE; denied ones deliver nothing, not even retained messages", async (version) => {
    const h = await start({ deniedTopicFilters: ["secret/#"] });
    const pub = await h.connect({ clientId: "pub" });
    for (const [topic, i] of [["secret/a", 1], ["public/a", 2], ["secret", 3]] as const) {
      pub.send(publishPacket(topic, `retained ${topic}`, { qos: 1, packetId: i, retain: true }));
      await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === i);
    }
    const c = await h.connect({ protocolVersion: version, clientId: "c" });
    const filters: [string, QoS][] = [["secret/a", 1], ["public/a", 1], ["secret/#", 0], ["secret/+/x", 2], ["secret", 1], ["open/#", 2], ["secretive", 0]];
    const ack = await subscribeAll(c, filters.map(([f, qos]) => subscription(f, { qos })));
    expect(ack.reasonCodes).toEqual([0x80, 1, 0x80, 0x80, 0x80, 2, 0]);
    await settle(c);
    expect(takePublishes(c).map((p) => text(p.topic))).toEqual(["public/a"]); // the only retained message an allowed filter matches
    for (const topic of ["secret/a", "secret", "secret/b/x", "public/a", "secretive", "open/x"]) pub.send(publishPacket(topic, "live"));
    await settle(pub, c);
    expect(takePublishes(c).map((p) => text(p.topic))).toEqual(["public/a", "secretive", "open/x"]);
    expect(c.isClosed).toBe(false);
  });

  test("a broader filter ('#', '+/a', a shared '#') is granted, but receives nothing on a denied topic: live, retained or a will", async () => {
    const h = await start({ deniedTopicFilters: ["secret/#"] });
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("secret/kept", "retained secret", { qos: 1, packetId: 1, retain: true }));
    await pub.next(PacketType.PUBACK);
    pub.send(publishPacket("public/kept", "retained public", { qos: 1, packetId: 2, retain: true }));
    await pub.next(PacketType.PUBACK);
    const c = await h.connect({ clientId: "c" });
    const ack = await subscribeAll(c, [subscription("#", { qos: 1 }), subscription("+/a", { qos: 1 }), subscription("$share/g/#", { qos: 1 })]);
    expect(ack.reasonCodes).toEqual([1, 1, 1]);
    await settle(c);
    expect(takePublishes(c).map((p) => text(p.topic))).toEqual(["public/kept"]);
    const willing = await h.connect({ clientId: "willing", will: { topic: "secret/will", payload: utf8("gone"), qos: 0, retain: false, properties: {} } });
    for (const topic of ["secret/a", "secret", "public/a"]) pub.send(publishPacket(topic, "live"));
    willing.end(); // no DISCONNECT: the will is published, to nobody
    await waitUntil(() => !h.broker.clients.has("willing"), "the willing client is gone");
    pub.send(publishPacket("public/last", "live"));
    await settle(pub, c);
    // public/a: once for '#' and '+/a' together, once for the shared group; public/last likewise through '#' and the group
    expect(takePublishes(c).map((p) => text(p.topic))).toEqual(["public/a", "public/a", "public/last", "public/last"]);
  });

  test("a shared subscription to a denied filter is denied too: SUBACK 0x80", async () => {
    const h = await start({ deniedTopicFilters: ["secret/#"] });
    const c = await h.connect({ clientId: "c" });
    const ack = await subscribeAll(c, [subscription("$share/g/secret/a"), subscription("$share/g/public/a")]);
    expect(ack.reasonCodes).toEqual([0x80, 0]);
  });

  test("MQTT.js is granted 128 (0x80) for a denied filter and its QoS for an allowed one", async () => {
    const h = await start({ deniedTopicFilters: ["secret/#"] });
    const c = await peers.mqttjs(urlOf(h), { protocolVersion: 5, clientId: "c" });
    // MQTT.js rejects a SUBSCRIBE with any failure in its SUBACK, and hands over the SUBACK with the error
    const error = await c.client.subscribeAsync({ "secret/a": { qos: 1 }, "public/a": { qos: 1 } }).then(
      () => null,
      (e: Error & { packet?: ISubackPacket }) => e,
    );
    expect(error?.packet?.granted).toEqual([0x80, 1]);
  });
});
