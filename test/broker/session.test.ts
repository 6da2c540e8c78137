/**
 * Sessions as raw conversations with a broker on port 0: what a session keeps while its client is
 * away (subscriptions, queued QoS 1/2 messages), what it does not (QoS 0), clean start, expiry and
 * the DISCONNECT that changes it, and the re-sending of unacknowledged messages on resume.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { PacketType, ReasonCode, type ConnectPacket, type DisconnectPacket, type PublishPacket } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { nextPublish, publishPacket, rawSubscribe, RawHarness, roundTrip, text, waitUntil, type RawClient } from "./helpers";

let h: RawHarness | null = null;
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

/** CONNECT fields that keep a session after the connection: v5 Session Expiry 60 s, 3.1.1 clean session 0. */
const persistent = (version: 4 | 5, clientId: string): Partial<ConnectPacket> =>
  version === 5 ? { protocolVersion: 5, cleanStart: false, clientId, properties: { sessionExpiryInterval: 60 } } : { protocolVersion: 4, cleanStart: false, clientId };

/** Ends a connection with DISCONNECT and waits until the broker has let the client go. */
async function disconnect(h: RawHarness, c: RawClient, clientId: string, properties: DisconnectPacket["properties"] = {}): Promise<void> {
  c.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties });
  await c.closed.promise;
  await waitUntil(() => !h.broker.clients.has(clientId), `the broker let '${clientId}' go`);
}

/** Ends a connection without DISCONNECT and waits until the broker has noticed. */
async function drop(h: RawHarness, c: RawClient, clientId: string): Promise<void> {
  c.end();
  await waitUntil(() => !h.broker.clients.has(clientId), `the broker noticed '${clientId}' went away`);
}

/** Publishes at QoS 1 or 2 and waits for the broker's PUBACK or PUBREC (the message has been routed). */
async function publishAcked(c: RawClient, topic: string, payload: string, qos: 1 | 2, packetId: number): Promise<void> {
  c.send(publishPacket(topic, payload, { qos, packetId }));
  await c.next(qos === 1 ? PacketType.PUBACK : PacketType.PUBREC, (p) => "packetId" in p && p.packetId === packetId);
  if (qos === 2) {
    c.send({ type: PacketType.PUBREL, packetId, reasonCode: 0, properties: {} });
    await c.next(PacketType.PUBCOMP, (p) => "packetId" in p && p.packetId === packetId);
  }
}

/** PUBLISH packets received so far and not yet taken. */
const publishes = (c: RawClient): PublishPacket[] => c.received.filter((p): p is PublishPacket => p.type === PacketType.PUBLISH);

describe("a session outlives its connection", () => {
  test.each([5, 4] as const)("v%d: subscriptions and queued QoS 1 and QoS 2 messages are kept and delivered on reconnect [MQTT-3.1.2-23]", async (version) => {
    const h = await start();
    const sub = await h.connect(persistent(version, "keeper"));
    expect(await rawSubscribe(sub, "keep/#", 2)).toBe(2);
    await disconnect(h, sub, "keeper");

    const pub = await h.connect({ clientId: "keep-pub" });
    await publishAcked(pub, "keep/1", "one", 1, 1);
    await publishAcked(pub, "keep/2", "two", 2, 2);

    const { client: back, connack } = await h.connectAck(persistent(version, "keeper"));
    expect(connack.sessionPresent).toBe(true);
    const one = await nextPublish(back);
    const two = await nextPublish(back);
    expect([text(one.topic), text(one.payload), one.qos, one.dup]).toEqual(["keep/1", "one", 1, false]);
    expect([text(two.topic), text(two.payload), two.qos, two.dup]).toEqual(["keep/2", "two", 2, false]);
    expect(one.packetId).not.toBe(two.packetId);

    // the subscription itself survived: a new message arrives without subscribing again
    await publishAcked(pub, "keep/3", "three", 1, 3);
    expect(text((await nextPublish(back, "keep/3")).payload)).toBe("three");
  });

  test.each([5, 4] as const)("v%d: QoS 0 messages are not queued for a client that is away", async (version) => {
    const h = await start();
    const sub = await h.connect(persistent(version, "away"));
    await rawSubscribe(sub, "away/#", 2);
    await disconnect(h, sub, "away");

    const pub = await h.connect({ clientId: "away-pub" });
    pub.send(publishPacket("away/zero", "lost"));
    await publishAcked(pub, "away/one", "kept", 1, 1);

    const back = await h.connect(persistent(version, "away"));
    const first = await nextPublish(back);
    expect(text(first.topic)).toBe("away/one");
    await roundTrip(back);
    expect(publishes(back)).toEqual([]);
  });

  test.each([5, 4] as const)("v%d: clean start discards the session: its subscriptions and queued messages are gone [MQTT-3.1.2-4]", async (version) => {
    const h = await start();
    const sub = await h.connect(persistent(version, "discarded"));
    await rawSubscribe(sub, "gone/#", 1);
    await disconnect(h, sub, "discarded");
    const pub = await h.connect({ clientId: "gone-pub" });
    await publishAcked(pub, "gone/queued", "queued", 1, 1);

    const { client: back, connack } = await h.connectAck({ ...persistent(version, "discarded"), cleanStart: true });
    expect(connack.sessionPresent).toBe(false);
    await rawSubscribe(back, "marker", 1);
    await publishAcked(pub, "gone/after", "after", 1, 2);
    await publishAcked(pub, "marker", "marker", 1, 3);
    const first = await nextPublish(back);
    expect(text(first.topic)).toBe("marker"); // neither the queued message nor the one after
    await roundTrip(back);
    expect(publishes(back)).toEqual([]);
  });
});

describe("session expiry", () => {
  test("v5: the session is removed once its Session Expiry Interval has passed after the disconnect", async () => {
    const h = await start();
    const c = await h.connect({ cleanStart: false, clientId: "expiring", properties: { sessionExpiryInterval: 1 } });
    await rawSubscribe(c, "expiring/#", 1);
    await disconnect(h, c, "expiring");
    expect(h.broker.sessions.has("expiring")).toBe(true);
    await waitUntil(() => !h.broker.sessions.has("expiring"), "the session expired");
    const { connack } = await h.connectAck({ cleanStart: false, clientId: "expiring", properties: { sessionExpiryInterval: 1 } });
    expect(connack.sessionPresent).toBe(false);
  });

  test("v5: a Session Expiry Interval longer than one setTimeout can take (30 days) keeps the session", async () => {
    const h = await start();
    const long = await h.connect({ cleanStart: false, clientId: "month", properties: { sessionExpiryInterval: 30 * 86400 } });
    await disconnect(h, long, "month");
    // a session of 1 s disconnected after it expires first: the long one must still be there then
    const short = await h.connect({ cleanStart: false, clientId: "second", properties: { sessionExpiryInterval: 1 } });
    await disconnect(h, short, "second");
    await waitUntil(() => !h.broker.sessions.has("second"), "the 1 s session expired");
    expect(h.broker.sessions.has("month")).toBe(true);
  });

  test("v5: Session Expiry Interval 0 (or absent): the session ends with the connection", async () => {
    const h = await start();
    const c = await h.connect({ cleanStart: false, clientId: "no-expiry" });
    await disconnect(h, c, "no-expiry");
    await waitUntil(() => !h.broker.sessions.has("no-expiry"), "the session ended");
  });

  test("v5: DISCONNECT can shorten the Session Expiry Interval (60 s to 1 s): the session expires", async () => {
    const h = await start();
    const c = await h.connect({ cleanStart: false, clientId: "shortened", properties: { sessionExpiryInterval: 60 } });
    await disconnect(h, c, "shortened", { sessionExpiryInterval: 1 });
    await waitUntil(() => !h.broker.sessions.has("shortened"), "the session expired");
  });

  test("v5: DISCONNECT can set the Session Expiry Interval to 0: the session ends with the connection", async () => {
    const h = await start();
    const c = await h.connect({ cleanStart: false, clientId: "zeroed", properties: { sessionExpiryInterval: 60 } });
    await disconnect(h, c, "zeroed", { sessionExpiryInterval: 0 });
    await waitUntil(() => !h.broker.sessions.has("zeroed"), "the session ended");
  });

  test("v5: DISCONNECT can lengthen the Session Expiry Interval (1 s to 60 s): the session outlives the first interval", async () => {
    const h = await start();
    const c = await h.connect({ cleanStart: false, clientId: "lengthened", properties: { sessionExpiryInterval: 1 } });
    await disconnect(h, c, "lengthened", { sessionExpiryInterval: 60 });
    // a witness with the old interval, disconnected later: once its session is gone, 1 s has passed for both
    const witness = await h.connect({ cleanStart: false, clientId: "witness", properties: { sessionExpiryInterval: 1 } });
    await disconnect(h, witness, "witness");
    await waitUntil(() => !h.broker.sessions.has("witness"), "the witness session expired");
    expect(h.broker.sessions.has("lengthened")).toBe(true);
    const { connack } = await h.connectAck({ cleanStart: false, clientId: "lengthened", properties: { sessionExpiryInterval: 60 } });
    expect(connack.sessionPresent).toBe(true);
  });

  test("v5: DISCONNECT setting a non-zero Session Expiry Interval when CONNECT had 0 is a Protocol Error: DISCONNECT 0x82 [MQTT-3.14.2-2]", async () => {
    const h = await start();
    const c = await h.connect({ cleanStart: false, clientId: "not-allowed" });
    c.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: { sessionExpiryInterval: 30 } });
    const d = (await c.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.ProtocolError);
    await c.closed.promise;
    await waitUntil(() => !h.broker.sessions.has("not-allowed"), "the session ended");
  });
});

describe("re-sending on resume", () => {
  /** A subscriber with a kept session and a publisher; the subscriber holds one message it did not acknowledge. */
  async function unacknowledged(version: 4 | 5, qos: 1 | 2): Promise<{ h: RawHarness; pub: RawClient; sub: RawClient; first: PublishPacket }> {
    const h = await start();
    const sub = await h.connect(persistent(version, "resumer"));
    await rawSubscribe(sub, "resend/#", 2);
    const pub = await h.connect({ clientId: "resend-pub" });
    await publishAcked(pub, "resend/t", `qos ${qos}`, qos, 1);
    const first = await nextPublish(sub, "resend/t");
    expect([first.qos, first.dup]).toEqual([qos, false]);
    return { h, pub, sub, first };
  }

  test.each([
    [5, 1],
    [5, 2],
    [4, 1],
    [4, 2],
  ] as const)("v%d: an unacknowledged QoS %d PUBLISH is re-sent with DUP and its packet identifier [MQTT-4.4.0-1] [MQTT-3.3.1-1]", async (version, qos) => {
    const { h, sub, first } = await unacknowledged(version, qos);
    await drop(h, sub, "resumer");
    const { client: back, connack } = await h.connectAck(persistent(version, "resumer"));
    expect(connack.sessionPresent).toBe(true);
    const again = await nextPublish(back);
    expect([text(again.topic), text(again.payload), again.qos, again.dup, again.packetId]).toEqual(["resend/t", `qos ${qos}`, qos, true, first.packetId]);

    // acknowledged now: a further resume re-sends nothing
    if (qos === 1) back.send({ type: PacketType.PUBACK, packetId: again.packetId, reasonCode: 0, properties: {} });
    else {
      back.send({ type: PacketType.PUBREC, packetId: again.packetId, reasonCode: 0, properties: {} });
      await back.next(PacketType.PUBREL, (p) => "packetId" in p && p.packetId === again.packetId);
      back.send({ type: PacketType.PUBCOMP, packetId: again.packetId, reasonCode: 0, properties: {} });
    }
    await disconnect(h, back, "resumer");
    const last = await h.connect(persistent(version, "resumer"));
    await roundTrip(last);
    expect(last.received.filter((p) => p.type === PacketType.PUBLISH || p.type === PacketType.PUBREL)).toEqual([]);
  });

  test.each([5, 4] as const)("v%d: a QoS 2 message whose PUBREC was received resumes with PUBREL, not the PUBLISH [MQTT-4.4.0-1]", async (version) => {
    const { h, sub, first } = await unacknowledged(version, 2);
    sub.send({ type: PacketType.PUBREC, packetId: first.packetId, reasonCode: 0, properties: {} });
    await sub.next(PacketType.PUBREL, (p) => "packetId" in p && p.packetId === first.packetId);
    await drop(h, sub, "resumer");

    const back = await h.connect(persistent(version, "resumer"));
    const rel = await back.next(PacketType.PUBREL);
    expect("packetId" in rel && rel.packetId).toBe(first.packetId);
    await roundTrip(back);
    expect(publishes(back)).toEqual([]);
    back.send({ type: PacketType.PUBCOMP, packetId: first.packetId, reasonCode: 0, properties: {} });
    await disconnect(h, back, "resumer");
    const last = await h.connect(persistent(version, "resumer"));
    await roundTrip(last);
    expect(last.received).toEqual([]); // completed: nothing left to re-send
  });
});
