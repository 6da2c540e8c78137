/**
 * The client against a broker that misbehaves: malformed packets, protocol errors, a DISCONNECT,
 * and a broker that stops reading. The broker is a FakeBroker (Bun.listen and the codec, scripted
 * by the test), since no real broker does these things on purpose.
 *
 * Bad input from a broker ends the connection, never the process: nothing may escape as an
 * uncaught exception or an unhandled rejection. bun test itself fails the test during which
 * either happens (it sees them before any process listener); the listeners below record them
 * too, for the explicit check at the end of each test, should a runner let them through.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Client, type ClientOptions } from "../../lib/client/client";
import { ClientError, ProtocolError } from "../../lib/client/errors";
import { Message } from "../../lib/client/message";
import { PacketType, ReasonCode } from "../../lib/codec";
import { encodePacket } from "../../lib/codec/packet";
import { MALFORMED } from "../fixtures/malformed";
import { waitUntil } from "../broker/helpers";
import { FakeBroker, type FakeConnection } from "./helpers";

/** The packet types a broker sends (and 0, reserved): malformed ones of these are bad input from a broker. */
const BROKER_TYPES = new Set<number>([0, PacketType.CONNACK, PacketType.PUBLISH, PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP, PacketType.SUBACK, PacketType.UNSUBACK, PacketType.PINGRESP, PacketType.DISCONNECT, PacketType.AUTH]);

/** The MQTT 5.0 cases of the malformed-input table whose packet a broker could send. */
const FROM_BROKER = MALFORMED.filter((c) => c.version === 5 && BROKER_TYPES.has(c.bytes[0]! >> 4));

/** A valid PUBLISH (QoS 0, 'after/malformed'): sent right behind a bad packet, it must never be delivered. */
const TRAILING_PUBLISH = encodePacket({ type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic: "after/malformed", packetId: 0, properties: {}, payload: new Uint8Array([0x78]) }, 5);

/**
 * What client.ts buffers before publish() of QoS 0 waits for the socket to drain (its HIGH_WATER,
 * 1 MiB). The bound checked is that plus one message: the message that crosses it is still taken.
 */
const OUTPUT_HIGH_WATER = 1024 * 1024;

let fake: FakeBroker;
let clients: Client[] = [];
const escaped: unknown[] = [];
const onEscaped = (e: unknown) => escaped.push(e);

beforeEach(() => {
  fake = FakeBroker.start();
  escaped.length = 0;
  process.on("uncaughtException", onEscaped);
  process.on("unhandledRejection", onEscaped);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  losses.clear();
  fake.stop();
  process.off("uncaughtException", onEscaped);
  process.off("unhandledRejection", onEscaped);
});

/** For each client, client.lastError as it was when null went on its queue (a reconnect resets it). */
const losses = new Map<Client, (Error | null)[]>();

/** Why the client's last connection was lost: its lastError when it queued null. */
function lostBecause(c: Client): Error | null {
  return losses.get(c)?.at(-1) ?? null;
}

/** A client of the fake broker, stopped after the test; reconnects at once (10 ms). */
function client(options: ClientOptions = {}): Client {
  const c = new Client("127.0.0.1", fake.port, { connectDelays: [0.01], keepAliveS: 0, ...options });
  clients.push(c);
  losses.set(c, []);
  c.onMessage = (m) => {
    if (m === null) losses.get(c)!.push(c.lastError);
    c.messages.put(m);
  };
  return c;
}

/** Starts `c` against the fake broker, which accepts it; resolves with the broker's side of the connection. */
async function connected(c: Client, connack: Parameters<FakeBroker["accept"]>[0] = {}): Promise<FakeConnection> {
  const started = c.start();
  const { conn } = await fake.accept(connack);
  await started;
  return conn;
}

/** The broker's side of the client's next connection, accepted: the client reconnected. */
async function reconnected(c: Client): Promise<FakeConnection> {
  const { conn } = await fake.accept();
  await waitUntil(() => c.isConnected, `client ${c.clientId} is connected again`);
  return conn;
}

/** Waits for the client's DISCONNECT and close; resolves with its reason code, checking that the client sent nothing else. */
async function disconnectedBy(conn: FakeConnection): Promise<number> {
  const d = await conn.next(PacketType.DISCONNECT);
  await conn.closed.promise;
  expect(conn.received).toEqual([]); // nothing else, and nothing after it [MQTT-3.14.4-1]
  return d.reasonCode;
}

describe("bad input from a broker", () => {
  test.each(FROM_BROKER.map((c) => [c.name, c] as const))(
    "%s: the client sends DISCONNECT with the reason code, closes, queues null, ignores what follows and reconnects (section 4.13.1)",
    async (_name, c) => {
      const sub = client();
      const conn = await connected(sub);
      conn.send([...c.bytes, ...TRAILING_PUBLISH]);
      expect(await disconnectedBy(conn)).toBe(c.reasonCode);
      expect(await sub.messages.get()).toBeNull();
      expect(lostBecause(sub)).toBeInstanceOf(ProtocolError);
      expect((lostBecause(sub) as ProtocolError).reasonCode).toBe(c.reasonCode);
      // the client lives on: a new connection, and what arrives on it is delivered
      const again = await reconnected(sub);
      again.send({ type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic: "after/reconnect", packetId: 0, properties: {}, payload: new Uint8Array([0x79]) });
      expect(`${await sub.messages.get()}`).toBe("Message('after/reconnect', 'y')");
      expect(escaped).toEqual([]);
    },
  );

  test("[MQTT-3.3.1-4] PUBLISH QoS 3 at protocol level 4: the client closes without DISCONNECT (which would discard its will) and reconnects", async () => {
    const sub = client({ protocolVersion: 4 });
    const conn = await connected(sub);
    conn.send([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]); // PUBLISH QoS 3, topic "a", packet id 1
    await conn.closed.promise;
    expect(conn.take(PacketType.DISCONNECT)).toEqual([]);
    expect(await sub.messages.get()).toBeNull();
    expect((lostBecause(sub) as ProtocolError).reasonCode).toBe(ReasonCode.MalformedPacket);
    await reconnected(sub);
    expect(escaped).toEqual([]);
  });

  test("(section 3.9.3) a SUBACK with a reason code not defined for SUBACK fails subscribe() and the connection (0x81)", async () => {
    const sub = client();
    const conn = await connected(sub);
    const subscribed = sub.subscribe("t/#", { qos: 1 }).then(() => null, (e: unknown) => e);
    const s = await conn.next(PacketType.SUBSCRIBE);
    conn.send([0x90, 0x04, s.packetId >> 8, s.packetId & 0xff, 0x00, 0x03]); // SUBACK, no properties, reason code 0x03
    expect(await disconnectedBy(conn)).toBe(ReasonCode.MalformedPacket);
    expect(await subscribed).toBeInstanceOf(Error);
    expect(await sub.messages.get()).toBeNull();
    await reconnected(sub);
    expect(escaped).toEqual([]);
  });
});

describe("protocol errors by a broker", () => {
  const CONNACK_BYTES = [0x20, 0x03, 0x00, 0x00, 0x00]; // CONNACK accepted, no properties

  test.each([
    ["a second CONNACK on one connection", "0x82", CONNACK_BYTES, ReasonCode.ProtocolError],
    ["(section 3.3.2.3.4) PUBLISH with an empty topic and a Topic Alias never set", "0x82", [0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01], ReasonCode.ProtocolError],
    ["[MQTT-3.3.2-10] PUBLISH with Topic Alias 11, above the client's Topic Alias Maximum (10)", "0x94", [0x30, 0x09, 0x00, 0x01, 0x61, 0x03, 0x23, 0x00, 0x0b, 0x78, 0x78], ReasonCode.TopicAliasInvalid],
    ["(section 4.12) AUTH although CONNECT had no Authentication Method", "0x82", [0xf0, 0x00], ReasonCode.ProtocolError],
    ["(section 3.8) SUBSCRIBE, a packet only a client sends", "0x82", [0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, 0x00], ReasonCode.ProtocolError],
    ["(section 3.12) PINGREQ, a packet only a client sends", "0x82", [0xc0, 0x00], ReasonCode.ProtocolError],
  ] as const)("%s: DISCONNECT %s, then a reconnect", async (_name, _hex, bytes, code) => {
    const sub = client();
    const conn = await connected(sub);
    conn.send([...bytes]);
    expect(await disconnectedBy(conn)).toBe(code);
    expect(await sub.messages.get()).toBeNull();
    expect((lostBecause(sub) as ProtocolError).reasonCode).toBe(code);
    await reconnected(sub);
    expect(escaped).toEqual([]);
  });

  test("a packet other than CONNACK first: start() with connectDelays [] throws ProtocolError (0x82) after DISCONNECT", async () => {
    const sub = client({ connectDelays: [] });
    const started = sub.start().then(() => null, (e: unknown) => e);
    const conn = await fake.nextConnection();
    await conn.next(PacketType.CONNECT);
    conn.send([0xd0, 0x00]); // PINGRESP before CONNACK
    expect(await disconnectedBy(conn)).toBe(ReasonCode.ProtocolError);
    const error = await started;
    expect(error).toBeInstanceOf(ProtocolError);
    expect((error as ProtocolError).reasonCode).toBe(ReasonCode.ProtocolError);
    expect(escaped).toEqual([]);
  });

  test("acknowledgements for unknown packet identifiers are no error: PUBACK and PUBCOMP ignored, PUBREC and PUBREL answered with 0x92 (sections 3.6.2.1, 3.7.2.1)", async () => {
    const sub = client();
    const conn = await connected(sub);
    conn.send({ type: PacketType.PUBACK, packetId: 77, reasonCode: 0, properties: {} });
    conn.send({ type: PacketType.PUBCOMP, packetId: 78, reasonCode: 0, properties: {} });
    conn.send({ type: PacketType.PUBREC, packetId: 79, reasonCode: 0, properties: {} });
    conn.send({ type: PacketType.PUBREL, packetId: 80, reasonCode: 0, properties: {} });
    const pubrel = await conn.next(PacketType.PUBREL);
    expect([pubrel.packetId, pubrel.reasonCode]).toEqual([79, ReasonCode.PacketIdentifierNotFound]);
    const pubcomp = await conn.next(PacketType.PUBCOMP);
    expect([pubcomp.packetId, pubcomp.reasonCode]).toEqual([80, ReasonCode.PacketIdentifierNotFound]);
    // the connection is still up: a QoS 1 message is delivered and acknowledged on it
    conn.send({ type: PacketType.PUBLISH, dup: false, qos: 1, retain: false, topic: "still/up", packetId: 5, properties: {}, payload: new Uint8Array([0x7a]) });
    expect((await conn.next(PacketType.PUBACK)).packetId).toBe(5);
    expect(`${await sub.messages.get()}`).toBe("Message('still/up', 'z')");
    expect(conn.isClosed).toBe(false);
    expect(conn.take(PacketType.DISCONNECT)).toEqual([]);
    expect(escaped).toEqual([]);
  });

  test("(section 3.14) a DISCONNECT from the broker ends the connection without a DISCONNECT in answer; the reason is kept and the client reconnects", async () => {
    const sub = client();
    const conn = await connected(sub);
    conn.send({ type: PacketType.DISCONNECT, reasonCode: ReasonCode.ServerShuttingDown, properties: { reasonString: "maintenance" } });
    await conn.closed.promise; // the client closes: the fake broker leaves its side open
    expect(conn.take(PacketType.DISCONNECT)).toEqual([]);
    expect(await sub.messages.get()).toBeNull();
    expect(lostBecause(sub)?.message).toContain("maintenance");
    expect((lostBecause(sub) as ClientError).reasonCode).toBe(ReasonCode.ServerShuttingDown);
    await reconnected(sub);
    expect(escaped).toEqual([]);
  });
});

describe("a broker that stops reading", () => {
  test("QoS 0 publishing in an awaited loop stays within the output bound, waits, and completes once the broker reads again", async () => {
    const pub = client();
    const conn = await connected(pub);
    conn.socket.pause(); // the kernel buffers fill, then the client's own
    const payload = new Uint8Array(16 * 1024);
    const count = 2048; // 32 MiB: more than the kernel buffers and the client's bound together
    let published = 0;
    let maxPending = 0;
    const loop = (async () => {
      for (let i = 0; i < count; i++) {
        await pub.publish(new Message("load", payload));
        published++;
        maxPending = Math.max(maxPending, pub.pending);
      }
    })();
    await waitUntil(() => pub.pending >= OUTPUT_HIGH_WATER, "the client's output buffer reached its high-water mark");
    expect(published).toBeLessThan(count); // the loop waits for room
    expect(maxPending).toBeLessThanOrEqual(OUTPUT_HIGH_WATER + payload.length + 64);
    expect(pub.pending).toBeLessThanOrEqual(OUTPUT_HIGH_WATER + payload.length + 64);
    conn.socket.resume();
    await loop;
    let arrived = 0;
    await waitUntil(() => (arrived += conn.take(PacketType.PUBLISH).length) === count, `all ${count} messages arrived (${arrived} so far)`);
    expect(pub.pending).toBe(0);
    expect(maxPending).toBeLessThanOrEqual(OUTPUT_HIGH_WATER + payload.length + 64);
    expect(escaped).toEqual([]);
  });
});
