/**
 * Delivery guarantees of the client across lost connections, against two real brokers (ours and
 * Mosquitto) and, where the exact packets matter, a FakeBroker scripted by the test.
 *
 * A forced disconnect ends the client's connection from the broker's side, mid-stream:
 * - our Broker: the connection's socket is terminated (`broker.clients.get(id).socket.terminate()`);
 * - Mosquitto: a raw second connection with the same client identifier takes the session over
 *   (Mosquitto closes the client's connection with DISCONNECT 0x8E), then goes away at once.
 * Either way the client sees its connection lost, puts null on its queue and reconnects.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Client, ClientOptions } from "../../lib/client/client";
import { SessionResumeError, TimeoutError } from "../../lib/client/errors";
import { Message } from "../../lib/client/message";
import { encodePacket, PacketType } from "../../lib/codec";
import type { PublishPacket } from "../../lib/codec/packets/publish";
import type { Broker } from "../../lib/broker/broker";
import { publishPacket, RawClient, rawSubscribe, receivePublishes, startBroker, text, waitUntil } from "../broker/helpers";
import { Clients, FakeBroker, type FakeConnection, messagesUntil, nextMessage, startMosquitto } from "./helpers";

/** One turn of the event loop: lets acknowledgements and deliveries interleave with a publishing loop. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A client identifier unique to this run. */
const id = (prefix: string) => `${prefix}-${crypto.randomUUID().slice(0, 8)}`;

/** Reconnect quickly: 50 ms between attempts. */
const FAST: ClientOptions = { connectDelays: [0.05] };

/** A broker under test, and how to cut a client's connection from its side. */
interface Target {
  port: number;
  /** Ours, for tests that look inside it; null for Mosquitto. */
  broker: Broker | null;
  /**
   * Ends the connection of `clientId` from the broker's side, without the client's DISCONNECT.
   * With `keepSession` the broker keeps the client's session (when the client asked for one).
   */
  cut(clientId: string, keepSession: boolean): Promise<void>;
  stop(): Promise<void>;
}

async function ourBroker(): Promise<Target> {
  const { broker, port, stop } = await startBroker();
  return {
    port,
    broker,
    async cut(clientId) {
      const conn = broker.clients.get(clientId);
      if (conn === undefined) throw new Error(`${clientId} is not connected to the broker`);
      conn.socket.terminate();
    },
    stop,
  };
}

async function mosquitto(): Promise<Target> {
  const m = await startMosquitto();
  return {
    port: m.port,
    broker: null,
    async cut(clientId, keepSession) {
      // session takeover [MQTT-3.1.4-3]: Mosquitto ends the client's connection; this one then
      // leaves at once (with the session kept when the client had one) so the client can come back
      const raw = await RawClient.connect(m.port, { clientId, cleanStart: !keepSession, properties: keepSession ? { sessionExpiryInterval: 60 } : {} });
      raw.end();
      await raw.closed.promise;
    },
    stop: () => m.stop(),
  };
}

describe.each([
  ["our Broker", ourBroker],
  ["Mosquitto", mosquitto],
] as const)("against %s", (_name, start) => {
  let target: Target;
  const clients = new Clients();

  beforeEach(async () => {
    target = await start();
  });

  afterEach(async () => {
    await clients.stopAll();
    await target.stop();
  });

  test.each([1, 2] as const)(
    "QoS %d: 300 publishes across two forced disconnects: every promise resolves, every message arrives (QoS 2: exactly once, QoS 1: at least once) [MQTT-4.4.0-1] (sections 4.3.2, 4.3.3)",
    async (qos) => {
      const n = 300;
      const sub = clients.make(target.port, FAST);
      await sub.start();
      await sub.subscribe("exactly/#", { qos });
      const counts = new Map<string, number>();
      let subLost = 0;
      sub.onMessage = (m) => {
        if (m === null) subLost++;
        else counts.set(m.text, (counts.get(m.text) ?? 0) + 1);
      };
      const pub = clients.make(target.port, { ...FAST, clientId: id("pub"), sessionExpiryInterval: 60 });
      await pub.start();
      const done: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        done.push(pub.publish(new Message("exactly/t", String(i), { qos })));
        if (i % 10 === 9) await turn();
        if (i === n / 3 || i === (2 * n) / 3) {
          await waitUntil(() => pub.isConnected, "the publisher is connected");
          await target.cut(pub.clientId, true);
        }
      }
      await Promise.all(done);
      // the publisher saw both connections lost
      expect(await pub.messages.get()).toBeNull();
      expect(await pub.messages.get()).toBeNull();
      // a last message: once it arrives, every duplicate the broker could have routed has arrived too
      await pub.publish(new Message("exactly/t", "end", { qos }));
      await waitUntil(() => counts.has("end"), "the last message arrived");
      const missing = Array.from({ length: n }, (_, i) => String(i)).filter((k) => !counts.has(k));
      expect(missing).toEqual([]);
      if (qos === 2) expect([...counts.entries()].filter(([, c]) => c !== 1)).toEqual([]);
      expect(subLost).toBe(0);
    },
  );

  test("a lost connection puts null on client.messages; the session resumes and the QoS 1 messages published meanwhile arrive after it [MQTT-4.4.0-1]", async () => {
    const sub = clients.make(target.port, { ...FAST, clientId: id("sub"), sessionExpiryInterval: 60 });
    await sub.start();
    await sub.subscribe("resume/#", { qos: 1 });
    const pub = clients.make(target.port);
    await pub.start();
    await pub.publish(new Message("resume/t", "before", { qos: 1 }));
    expect(`${await nextMessage(sub)}`).toBe("Message('resume/t', 'before')");
    await sub.subscribe("resume/barrier"); // its SUBACK: the broker has the PUBACK sent before it
    await target.cut(sub.clientId, true);
    expect(await sub.messages.get()).toBeNull();
    await pub.publish(new Message("resume/t", "during", { qos: 1 }));
    await pub.publish(new Message("resume/t", "after", { qos: 1 }));
    expect(await messagesUntil(sub, "after")).toEqual(["resume/t:during", "resume/t:after"]);
  });

  test("without a session (sessionExpiryInterval 0) the client subscribes again after a reconnect, both the subscriptions option and subscribe() calls", async () => {
    const pub = clients.make(target.port);
    await pub.start();
    await pub.publish(new Message("again/option", "r1", { qos: 1, retain: true }));
    await pub.publish(new Message("also/called", "r2", { qos: 1, retain: true }));
    const sub = clients.make(target.port, { ...FAST, clientId: id("sub"), subscriptions: ["again/#"] });
    await sub.start();
    await sub.subscribe("also/#", { qos: 1 });
    // retained messages come with each new subscription [MQTT-3.3.1-9]: first the ones made now
    expect(await messagesUntil(sub, "r2")).toEqual(["again/option:r1", "also/called:r2"]);
    await target.cut(sub.clientId, false);
    expect(await sub.messages.get()).toBeNull();
    // then again once the client has subscribed anew on its new session
    expect(await messagesUntil(sub, "r2")).toEqual(["again/option:r1", "also/called:r2"]);
    await pub.publish(new Message("again/live", "l1", { qos: 1 }));
    await pub.publish(new Message("also/live", "l2", { qos: 1 }));
    expect(await messagesUntil(sub, "l2")).toEqual(["again/live:l1", "also/live:l2"]);
  });

  test("[MQTT-3.2.2-2] start({ resumeSession: true }) with a session on the broker resumes it: its subscription delivers what was published meanwhile, without subscribing", async () => {
    const clientId = id("resume");
    const first = clients.make(target.port, { clientId, sessionExpiryInterval: 60 });
    await first.start();
    await first.subscribe("kept/#", { qos: 1 });
    await first.stop();
    const pub = clients.make(target.port);
    await pub.start();
    await pub.publish(new Message("kept/t", "while away", { qos: 1 }));
    const second = clients.make(target.port, { clientId, sessionExpiryInterval: 60 });
    await second.start({ resumeSession: true });
    expect(`${await nextMessage(second)}`).toBe("Message('kept/t', 'while away')");
    await pub.publish(new Message("kept/t", "now", { qos: 1 }));
    expect(`${await nextMessage(second)}`).toBe("Message('kept/t', 'now')");
  });

  test("[MQTT-3.2.2-3] start({ resumeSession: true }) without a session throws SessionResumeError; the client stays connected and usable", async () => {
    const c = clients.make(target.port, { clientId: id("fresh"), sessionExpiryInterval: 60 });
    const error = await c.start({ resumeSession: true }).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(SessionResumeError);
    expect(c.isConnected).toBe(true);
    expect(await c.subscribe("usable/#", { qos: 1 })).toBe(1);
    await c.publish(new Message("usable/t", "yes", { qos: 1 }));
    expect(`${await nextMessage(c)}`).toBe("Message('usable/t', 'yes')");
  });

  test("[MQTT-3.3.2-9] topics named in topicAliases are published with an alias; a subscriber gets every topic right", async () => {
    const sub = clients.make(target.port);
    await sub.start();
    await sub.subscribe("alias/#", { qos: 1 });
    const pub = clients.make(target.port, { topicAliases: ["alias/a"] });
    await pub.start();
    for (const [topic, payload] of [["alias/a", "1"], ["alias/a", "2"], ["alias/b", "3"], ["alias/a", "4"]] as const) {
      await pub.publish(new Message(topic, payload, { qos: 1 }));
    }
    expect(await messagesUntil(sub, "4")).toEqual(["alias/a:1", "alias/a:2", "alias/b:3", "alias/a:4"]);
  });

  test("[MQTT-3.1.2-8] the will is published when the client's connection is cut; [MQTT-3.1.2-10] not after stop()", async () => {
    const sub = clients.make(target.port);
    await sub.start();
    await sub.subscribe("will/#", { qos: 1 });
    const pub = clients.make(target.port);
    await pub.start();
    const cut = clients.make(target.port, { ...FAST, clientId: id("cut"), willTopic: "will/cut", willMessage: "gone", willQos: 1 });
    await cut.start();
    await target.cut(cut.clientId, false);
    expect(`${await nextMessage(sub)}`).toBe("Message('will/cut', 'gone')");
    const stopped = clients.make(target.port, { clientId: id("stopped"), willTopic: "will/stopped", willMessage: "gone", willQos: 1 });
    await stopped.start();
    await stopped.stop();
    if (target.broker !== null) await waitUntil(() => !target.broker!.clients.has(stopped.clientId), "the broker let the stopped client go");
    // a marker published afterwards is the next message: no will came before it
    await pub.publish(new Message("will/marker", "after stop", { qos: 1 }));
    expect(`${await nextMessage(sub)}`).toBe("Message('will/marker', 'after stop')");
  });
});

describe("against our Broker only", () => {
  const clients = new Clients();
  let target: Target;
  let raw: RawClient | null = null;

  beforeEach(async () => {
    target = await ourBroker();
  });

  afterEach(async () => {
    raw?.end();
    raw = null;
    await clients.stopAll();
    await target.stop();
  });

  test("[MQTT-3.3.2-10] topic aliases the broker assigns (our topicAliasMaximum, 10 by default) resolve to the right topics on the received Messages", async () => {
    const sub = clients.make(target.port);
    await sub.start();
    await sub.subscribe("in/#");
    // a raw subscriber with the same Topic Alias Maximum shows that the broker does use aliases here
    raw = await RawClient.connect(target.port, { properties: { topicAliasMaximum: 10 } });
    await rawSubscribe(raw, "in/#", 0);
    const pub = clients.make(target.port);
    await pub.start();
    const sent = ["in/one", "in/two", "in/one", "in/two", "in/one"];
    for (const [i, topic] of sent.entries()) await pub.publish(new Message(topic, String(i)));
    const wire = (await receivePublishes(raw, sent.length)).map((p) => [text(p.topic), p.properties.topicAlias]);
    expect(wire).toEqual([["in/one", 1], ["in/two", 2], ["", 1], ["", 2], ["", 1]]);
    expect(await messagesUntil(sub, "4")).toEqual(sent.map((t, i) => `${t}:${i}`));
  });

  test("a received Message holds its own payload, not the whole read it came in with others (a Buffer's slice() is a view)", async () => {
    const sub = clients.make(target.port);
    await sub.start();
    await sub.subscribe("both/#");
    // 2000 small PUBLISH packets in one raw write: the broker sends them on in one write, read in chunks of many
    raw = await RawClient.connect(target.port);
    const one = encodePacket(publishPacket("both/small", "tiny"), 5);
    const all = new Uint8Array(one.length * 2000);
    for (let i = 0; i < 2000; i++) all.set(one, i * one.length);
    raw.send(all);
    const first = await nextMessage(sub);
    expect(first?.text).toBe("tiny");
    expect(first!.payload.buffer.byteLength).toBeLessThan(1024);
  });
});

describe("against a scripted broker", () => {
  let fake: FakeBroker;
  const clients = new Clients();

  beforeEach(() => {
    fake = FakeBroker.start();
  });

  afterEach(async () => {
    await clients.stopAll();
    fake.stop();
  });

  /** A client of the fake broker that reconnects at once; no keep alive unless `options` say so. */
  function client(options: ClientOptions = {}): Client {
    return clients.make(fake.port, { connectDelays: [0.01], keepAliveS: 0, ...options });
  }

  /** Starts `c`; the fake broker accepts it with `connack`. Resolves with the broker's side. */
  async function connected(c: Client, connack: Parameters<FakeBroker["accept"]>[0] = {}): Promise<FakeConnection> {
    const started = c.start();
    const { conn } = await fake.accept(connack);
    await started;
    return conn;
  }

  const publishes = async (conn: FakeConnection, n: number): Promise<PublishPacket[]> => {
    const got: PublishPacket[] = [];
    while (got.length < n) got.push(await conn.next(PacketType.PUBLISH));
    return got;
  };

  test("[MQTT-3.3.1-1] [MQTT-4.4.0-1] after a lost connection, unacknowledged QoS 1 and 2 PUBLISHes are re-sent with DUP and their packet identifiers, and a released QoS 2 message with PUBREL", async () => {
    const pub = client({ sessionExpiryInterval: 60 });
    const conn = await connected(pub);
    const done = [
      pub.publish(new Message("dup/1", "a", { qos: 1 })),
      pub.publish(new Message("dup/2", "b", { qos: 2 })),
      pub.publish(new Message("dup/3", "c", { qos: 2 })),
    ];
    const [a, b, c] = await publishes(conn, 3);
    expect([a!.dup, b!.dup, c!.dup]).toEqual([false, false, false]);
    conn.send({ type: PacketType.PUBREC, packetId: c!.packetId, reasonCode: 0, properties: {} });
    expect((await conn.next(PacketType.PUBREL)).packetId).toBe(c!.packetId);
    conn.end(); // lost before any other acknowledgement
    expect(await pub.messages.get()).toBeNull();

    const { conn: again, connect } = await fake.accept({ sessionPresent: true });
    expect([connect.cleanStart, connect.properties.sessionExpiryInterval]).toEqual([false, 60]);
    expect((await again.next(PacketType.PUBREL)).packetId).toBe(c!.packetId);
    const [a2, b2] = await publishes(again, 2); // in their original order [MQTT-4.6.0-1]
    expect([a2!.dup, a2!.packetId, a2!.qos, text(a2!.topic), text(a2!.payload)]).toEqual([true, a!.packetId, 1, "dup/1", "a"]);
    expect([b2!.dup, b2!.packetId, b2!.qos, text(b2!.topic), text(b2!.payload)]).toEqual([true, b!.packetId, 2, "dup/2", "b"]);
    again.send({ type: PacketType.PUBACK, packetId: a!.packetId, reasonCode: 0, properties: {} });
    again.send({ type: PacketType.PUBREC, packetId: b!.packetId, reasonCode: 0, properties: {} });
    expect((await again.next(PacketType.PUBREL)).packetId).toBe(b!.packetId);
    again.send({ type: PacketType.PUBCOMP, packetId: b!.packetId, reasonCode: 0, properties: {} });
    again.send({ type: PacketType.PUBCOMP, packetId: c!.packetId, reasonCode: 0, properties: {} });
    await Promise.all(done);
    expect(again.take(PacketType.PUBLISH)).toEqual([]); // c, released, was never published again
  });

  test("(section 3.2.2.1.1) when the broker has lost the session, unacknowledged messages are published anew (DUP 0) and a released QoS 2 message is not published again", async () => {
    const pub = client({ sessionExpiryInterval: 60 });
    const conn = await connected(pub);
    const done = [pub.publish(new Message("lost/1", "a", { qos: 1 })), pub.publish(new Message("lost/2", "b", { qos: 2 }))];
    const [, b] = await publishes(conn, 2);
    conn.send({ type: PacketType.PUBREC, packetId: b!.packetId, reasonCode: 0, properties: {} }); // the broker has b
    await conn.next(PacketType.PUBREL);
    conn.end();
    const { conn: again } = await fake.accept({ sessionPresent: false });
    const [a2] = await publishes(again, 1);
    expect([a2!.dup, text(a2!.topic)]).toEqual([false, "lost/1"]);
    again.send({ type: PacketType.PUBACK, packetId: a2!.packetId, reasonCode: 0, properties: {} });
    await Promise.all(done);
    expect(again.take(PacketType.PUBLISH)).toEqual([]);
    expect(again.take(PacketType.PUBREL)).toEqual([]);
  });

  test("[MQTT-3.3.4-7] the broker's Receive Maximum bounds the unacknowledged QoS 1 PUBLISHes; each PUBACK lets the next one go", async () => {
    const pub = client();
    const conn = await connected(pub, { properties: { receiveMaximum: 2 } });
    const done = [1, 2, 3, 4].map((i) => pub.publish(new Message("window/t", String(i), { qos: 1 })));
    const [p1, p2] = await publishes(conn, 2);
    conn.send({ type: PacketType.PUBACK, packetId: p1!.packetId, reasonCode: 0, properties: {} });
    const [p3] = await publishes(conn, 1);
    expect(text(p3!.payload)).toBe("3");
    // a round trip through the client: everything it sent before its PUBACK has arrived
    conn.send({ type: PacketType.PUBLISH, dup: false, qos: 1, retain: false, topic: "probe", packetId: 9, properties: {}, payload: new Uint8Array(0) });
    await conn.next(PacketType.PUBACK);
    expect(conn.take(PacketType.PUBLISH)).toEqual([]); // not the 4th: two are unacknowledged
    for (const p of [p2!, p3!]) conn.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
    const [p4] = await publishes(conn, 1);
    conn.send({ type: PacketType.PUBACK, packetId: p4!.packetId, reasonCode: 0, properties: {} });
    await Promise.all(done);
  });

  test("(section 3.3.2.3.4) [MQTT-3.3.2-9] on the wire: a topic in topicAliases goes once with its alias, then as an empty topic with the alias; other topics go without one", async () => {
    const pub = client({ topicAliases: ["t/a"] });
    const conn = await connected(pub, { properties: { topicAliasMaximum: 5 } });
    for (const topic of ["t/a", "t/a", "t/b", "t/a"]) await pub.publish(new Message(topic, "x"));
    const wire = (await publishes(conn, 4)).map((p) => [text(p.topic), p.properties.topicAlias]);
    expect(wire).toEqual([["t/a", 1], ["", 1], ["t/b", undefined], ["", 1]]);
  });

  test("[MQTT-3.3.2-7] aliases do not carry over to a new connection: the first PUBLISH after a reconnect names the topic again", async () => {
    const pub = client({ topicAliases: ["t/a"] });
    const conn = await connected(pub, { properties: { topicAliasMaximum: 5 } });
    await pub.publish(new Message("t/a", "1"));
    await pub.publish(new Message("t/a", "2"));
    expect((await publishes(conn, 2)).map((p) => text(p.topic))).toEqual(["t/a", ""]);
    conn.end();
    expect(await pub.messages.get()).toBeNull();
    const { conn: again } = await fake.accept({ properties: { topicAliasMaximum: 5 } });
    await waitUntil(() => pub.isConnected, "the client is connected again");
    await pub.publish(new Message("t/a", "3"));
    await pub.publish(new Message("t/a", "4"));
    expect((await publishes(again, 2)).map((p) => [text(p.topic), p.properties.topicAlias])).toEqual([["t/a", 1], ["", 1]]);
  });

  test("[MQTT-3.3.2-9] no alias is used when the broker's CONNACK allows none", async () => {
    const pub = client({ topicAliases: ["t/a"] });
    const conn = await connected(pub);
    await pub.publish(new Message("t/a", "1"));
    await pub.publish(new Message("t/a", "2"));
    expect((await publishes(conn, 2)).map((p) => [text(p.topic), p.properties.topicAlias])).toEqual([["t/a", undefined], ["t/a", undefined]]);
  });

  test("[MQTT-3.3.2-10] an alias the broker sets with a topic resolves later PUBLISHes with an empty topic; CONNECT offers topicAliasMaximum (section 3.1.2.11.5)", async () => {
    const sub = client({ topicAliasMaximum: 3 });
    const started = sub.start();
    const { conn, connect } = await fake.accept();
    await started;
    expect(connect.properties.topicAliasMaximum).toBe(3);
    const publish = (topic: string, alias: number, payload: string) =>
      conn.send({ type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic, packetId: 0, properties: { topicAlias: alias }, payload: new TextEncoder().encode(payload) });
    publish("x/y", 3, "1");
    publish("", 3, "2");
    publish("x/z", 3, "3"); // an alias may be set again to another topic (section 3.3.2.3.4)
    publish("", 3, "4");
    expect(await messagesUntil(sub, "4")).toEqual(["x/y:1", "x/y:2", "x/z:3", "x/z:4"]);
  });

  test("[MQTT-3.1.2-20] keep alive: the client sends PINGREQ when idle; without an answer it closes the dead connection, queues null and reconnects", async () => {
    const c = client({ keepAliveS: 1 });
    let lostBecause: Error | null = null;
    c.onMessage = (m) => {
      if (m === null) lostBecause = c.lastError; // the reconnect that follows resets lastError
      c.messages.put(m);
    };
    const conn = await connected(c); // CONNACK, and then nothing
    await conn.next(PacketType.PINGREQ);
    await conn.closed.promise;
    expect(await c.messages.get()).toBeNull();
    expect(lostBecause).toBeInstanceOf(TimeoutError);
    const { connect } = await fake.accept();
    expect(connect.keepAlive).toBe(1);
  });

  test("[MQTT-3.1.2-20] keep alive answered: the connection stays up over several PINGREQ / PINGRESP rounds", async () => {
    const c = client({ keepAliveS: 1 });
    const conn = await connected(c);
    for (let i = 0; i < 3; i++) {
      await conn.next(PacketType.PINGREQ);
      conn.send({ type: PacketType.PINGRESP });
    }
    // three rounds span more than 1.5 x keep alive: the answers kept the connection alive
    expect(conn.isClosed).toBe(false);
    expect(fake.connections.length).toBe(1);
    expect(c.messages.size).toBe(0);
  });
});
