/**
 * Will messages as raw conversations with a broker on port 0: when a will is published (abnormal
 * close, DISCONNECT 0x04, keep-alive timeout, a protocol error, session takeover) and when not
 * (DISCONNECT 0x00), its QoS and retain, the Will Delay Interval, and the will properties that
 * must reach subscribers.
 *
 * That a will was NOT published is shown with a marker: something published after the moment
 * the will would have been published, which the watcher must receive first.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { PacketType, ReasonCode, type ConnectPacket, type DisconnectPacket, type QoS, type Will } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { nextPublish, publishPacket, rawSubscribe, RawHarness, roundTrip, text, utf8, waitUntil, type RawClient } from "./helpers";

let h: RawHarness | null = null;
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

/** A will on `topic` saying `payload`. */
const will = (topic: string, payload: string, fields: Partial<Will> = {}): Will => ({ topic, payload: utf8(payload), qos: 0, retain: false, properties: {}, ...fields });

/** A v5 client subscribed to `filter` at QoS 2. */
async function watcher(h: RawHarness, filter: string, clientId = "watcher"): Promise<RawClient> {
  const c = await h.connect({ clientId });
  await rawSubscribe(c, filter, 2);
  return c;
}

/** Publishes a QoS 0 marker from a fresh client, after everything that happened so far. */
async function marker(h: RawHarness, topic: string): Promise<void> {
  const c = await h.connect({ clientId: "marker" });
  c.send(publishPacket(topic, "marker"));
  await roundTrip(c);
}

/** Ends a connection without DISCONNECT and waits until the broker has noticed. */
async function drop(h: RawHarness, c: RawClient, clientId: string): Promise<void> {
  c.end();
  await waitUntil(() => !h.broker.clients.has(clientId), `the broker noticed '${clientId}' went away`);
}

describe("published", () => {
  test.each([
    [5, 1, true],
    [5, 2, false],
    [5, 0, true],
    [4, 1, true],
    [4, 2, false],
  ] as [4 | 5, QoS, boolean][])("v%d: on an abnormal close, at will QoS %d, retained %p [MQTT-3.1.2-8] [MQTT-3.1.2-14] [MQTT-3.1.2-15]", async (version, qos, retain) => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect({ protocolVersion: version, clientId: "dying", will: will("will/dying", "gone", { qos, retain }) });
    c.end();
    const p = await nextPublish(w, "will/dying");
    expect([text(p.payload), p.qos, p.retain]).toEqual(["gone", qos, false]); // retain is not kept for an existing subscription [MQTT-3.3.1-12]

    // a later subscriber sees it as retained only when the will was retained
    const late = await h.connect({ clientId: "late" });
    await rawSubscribe(late, "will/dying", 2);
    await roundTrip(late);
    const retained = late.received.filter((x) => x.type === PacketType.PUBLISH);
    if (retain) {
      expect(retained).toHaveLength(1);
      expect(retained[0]).toMatchObject({ retain: true, qos });
      expect(h.broker.retained.has("will/dying")).toBe(true);
    } else {
      expect(retained).toEqual([]);
    }
  });

  test("v5: after DISCONNECT 0x04 Disconnect with Will Message (section 3.14.2.1)", async () => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect({ clientId: "leaving", will: will("will/leaving", "asked for") });
    c.send({ type: PacketType.DISCONNECT, reasonCode: ReasonCode.DisconnectWithWillMessage, properties: {} });
    expect(text((await nextPublish(w, "will/leaving")).payload)).toBe("asked for");
    await c.closed.promise;
  });

  test.each([5, 4] as const)("v%d: on keep-alive timeout", async (version) => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect({ protocolVersion: version, clientId: "silent", keepAlive: 1, will: will("will/silent", "timed out") });
    expect(text((await nextPublish(w, "will/silent")).payload)).toBe("timed out");
    if (version === 5) expect(((await c.next(PacketType.DISCONNECT)) as DisconnectPacket).reasonCode).toBe(ReasonCode.KeepAliveTimeout);
    await c.closed.promise;
  });

  test("v5: when the broker closes the connection for a protocol error", async () => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect({ clientId: "erring", will: will("will/erring", "broken") });
    c.send({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: "erring", will: null, username: null, password: null, properties: {} });
    expect(((await c.next(PacketType.DISCONNECT)) as DisconnectPacket).reasonCode).toBe(ReasonCode.ProtocolError);
    expect(text((await nextPublish(w, "will/erring")).payload)).toBe("broken");
  });

  test("v5: will properties reach subscribers: content type, response topic, correlation data, user properties, payload format, expiry", async () => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const properties = {
      payloadFormatIndicator: 1,
      messageExpiryInterval: 3600,
      contentType: "text/plain",
      responseTopic: "will/reply",
      correlationData: new Uint8Array([0xde, 0xad, 0xbe, 0xef]),
      userProperties: [["origin", "sensor-7"], ["origin", "again"], ["k", "v"]] as [string, string][],
    };
    const c = await h.connect({ clientId: "propertied", will: will("will/propertied", "with properties", { qos: 1, properties }) });
    c.end();
    const p = await nextPublish(w, "will/propertied");
    expect(p.properties.payloadFormatIndicator).toBe(1);
    expect(p.properties.contentType).toBe("text/plain");
    expect(p.properties.responseTopic).toBe("will/reply");
    expect([...p.properties.correlationData!]).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(p.properties.userProperties).toEqual(properties.userProperties); // order and repeats kept [MQTT-3.3.2-18]
    expect(p.properties.messageExpiryInterval).toBeGreaterThan(0);
    expect(p.properties.messageExpiryInterval).toBeLessThanOrEqual(3600);
    expect(p.properties.topicAlias).toBeUndefined();
  });
});

describe("not published", () => {
  test.each([5, 4] as const)("v%d: after DISCONNECT 0x00 the will is discarded [MQTT-3.1.2-10] [MQTT-3.14.4-3]", async (version) => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect({ protocolVersion: version, clientId: "polite", will: will("will/polite", "should not appear") });
    c.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    await c.closed.promise;
    await waitUntil(() => !h.broker.clients.has("polite"), "the broker let the client go");
    await marker(h, "will/marker");
    expect(text((await nextPublish(w)).topic)).toBe("will/marker");
  });
});

describe("Will Delay Interval", () => {
  /** CONNECT fields of a v5 client with a kept session and a delayed will. */
  const delayed = (clientId: string, payload: string, delay: number, expiry = 60): Partial<ConnectPacket> => ({
    clientId,
    cleanStart: false,
    properties: { sessionExpiryInterval: expiry },
    will: will("will/delayed", payload, { properties: { willDelayInterval: delay } }),
  });

  test("v5: the will is published after the delay, not at the close [MQTT-3.1.3-9]", async () => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect(delayed("late-will", "after the delay", 1));
    await drop(h, c, "late-will");
    await marker(h, "will/marker"); // published right after the close: it must come first
    expect(text((await nextPublish(w)).topic)).toBe("will/marker");
    const p = await nextPublish(w, "will/delayed");
    expect(text(p.payload)).toBe("after the delay");
  });

  test("v5: a client that reconnects within the delay stops its will [MQTT-3.1.3-9]", async () => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect(delayed("returning", "should not appear", 1));
    await drop(h, c, "returning");
    const { connack } = await h.connectAck({ clientId: "returning", cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    expect(connack.sessionPresent).toBe(true);

    // a witness with the same delay, dropped later: its will comes after the first one would have
    const witness = await h.connect(delayed("witness", "witness will", 1));
    await drop(h, witness, "witness");
    const p = await nextPublish(w, "will/delayed");
    expect(text(p.payload)).toBe("witness will");
  });

  test("v5: a delay longer than the Session Expiry Interval: the will is published when the session ends [MQTT-3.1.2-8]", async () => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect(delayed("expiring", "session ended", 3600, 1));
    await drop(h, c, "expiring");
    const p = await nextPublish(w, "will/delayed");
    expect(text(p.payload)).toBe("session ended");
    await waitUntil(() => !h.broker.sessions.has("expiring"), "the session ended");
  });

  test("v5: a reconnect with clean start ends the session, so the pending will is published (section 3.1.3.2.2)", async () => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect(delayed("restarting", "session ended by clean start", 3600));
    await drop(h, c, "restarting");
    const { connack } = await h.connectAck({ clientId: "restarting", cleanStart: true });
    expect(connack.sessionPresent).toBe(false);
    const p = await nextPublish(w, "will/delayed");
    expect(text(p.payload)).toBe("session ended by clean start");
  });

  test("v5: Session Expiry Interval 0: the session ends at the close, so a delayed will is published at once", async () => {
    const h = await start();
    const w = await watcher(h, "will/#");
    const c = await h.connect(delayed("brief", "no session to wait in", 3600, 0));
    await drop(h, c, "brief");
    await marker(h, "will/marker");
    expect(text((await nextPublish(w)).payload)).toBe("no session to wait in");
  });
});
