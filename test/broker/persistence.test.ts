/**
 * Retained messages and sessions kept in a SQLite file (persistenceFile) survive a broker restart:
 * with their QoS and properties, without the ones cleared or expired, and each change is in the
 * file by the time it is acknowledged (crash-test.test.ts kills the process to prove it).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodePacket, PacketType, type ConnectPacket, type PublishPacket } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { RESTART_BYTES } from "../../lib/broker/store/checkpointer";
import { PersistenceError } from "../../lib/broker/store/journal";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { BrokerThread } from "../../lib/thread/broker-thread";
import { removeDir, tempDir } from "../client/helpers";
import { finished, leaveOffline, Peers, publishPacket, RawHarness, rawSubscribe, receivePublishes, settle, startErrors, takePublishes, text, waitUntil } from "./helpers";

let dir: string;
let n = 0;
beforeAll(() => {
  dir = tempDir("mqtttools-persist-");
});
afterAll(() => removeDir(dir));

/** A new file name for one test. */
const freshFile = () => join(dir, `retained-${++n}.db`);

/** The rows a query returns from a persistence file, read while a broker may have it open. */
function rows<T>(file: string, sql: string): T[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.query(sql).all() as T[];
  } finally {
    db.close();
  }
}

/** The sessions saved in a persistence file. */
const savedSessions = (file: string) => rows<{ client_id: string; disconnected_at: number }>(file, "SELECT client_id, disconnected_at FROM session");

/** Runs `body` with a broker on `file`, then stops it (which writes what is pending). */
async function withBroker(options: BrokerInit, body: (h: RawHarness) => Promise<void>): Promise<void> {
  const h = await RawHarness.start(options);
  try {
    await body(h);
  } finally {
    await h.cleanup();
  }
}

/** Publishes retained messages (QoS 1 unless `fields` say 2), each acknowledged before the next. */
async function retain(h: RawHarness, messages: [string, string, Partial<PublishPacket>?][]): Promise<void> {
  const c = await h.connect({ clientId: "publisher" });
  for (const [i, [topic, payload, fields]] of messages.entries()) {
    const packetId = i + 1;
    const p = publishPacket(topic, payload, { qos: 1, packetId, retain: true, ...fields });
    c.send(p);
    if (p.qos === 2) {
      await c.next(PacketType.PUBREC, (a) => a.type === PacketType.PUBREC && a.packetId === packetId);
      c.send({ type: PacketType.PUBREL, packetId, reasonCode: 0, properties: {} });
      await c.next(PacketType.PUBCOMP, (a) => a.type === PacketType.PUBCOMP && a.packetId === packetId);
    } else await c.next(PacketType.PUBACK, (a) => a.type === PacketType.PUBACK && a.packetId === packetId);
  }
}

/** The retained messages a new subscriber to '#' gets, by topic. */
async function retained(h: RawHarness, count: number): Promise<Map<string, PublishPacket>> {
  const c = await h.connect({ clientId: `reader-${++n}` });
  await rawSubscribe(c, "#", 2);
  const got = await receivePublishes(c, count);
  await settle(c);
  expect(takePublishes(c)).toEqual([]); // no more than `count`
  return new Map(got.map((p) => [text(p.topic), p]));
}

describe("retained messages across a restart (persistenceFile)", () => {
  test("they come back with their payload, QoS and properties; a cleared one stays cleared", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      await retain(h, [
        ["a/plain", "one"],
        ["a/props", "two", { qos: 2, properties: { contentType: "text/plain", userProperties: [["k", "v"]], correlationData: new Uint8Array([1, 2]) } }],
        ["a/cleared", "three"],
        ["a/cleared", ""],
        ["a/replaced", "old"],
        ["a/replaced", "new"],
      ]);
    });
    await withBroker({ persistenceFile: file }, async (h) => {
      const got = await retained(h, 3);
      expect([...got.keys()].sort()).toEqual(["a/plain", "a/props", "a/replaced"]);
      expect(text(got.get("a/plain")!.payload)).toBe("one");
      expect(text(got.get("a/replaced")!.payload)).toBe("new");
      const props = got.get("a/props")!;
      expect(props.qos).toBe(2);
      expect(props.retain).toBe(true);
      expect(props.properties).toMatchObject({ contentType: "text/plain", userProperties: [["k", "v"]] });
      expect(Array.from(props.properties.correlationData!)).toEqual([1, 2]);
    });
  });

  test("[MQTT-3.3.2-5] a message whose expiry passed while the broker was down is not sent; one still valid is sent with the interval reduced", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      await retain(h, [["e/short", "gone", { properties: { messageExpiryInterval: 1 } }], ["e/long", "kept", { properties: { messageExpiryInterval: 3600 } }]]);
    });
    // the short one's expiry passes while no broker runs
    const expiresAt = rows<{ expires_at: number }>(file, "SELECT expires_at FROM retained WHERE topic = 'e/short'")[0]!.expires_at;
    await waitUntil(() => Date.now() > expiresAt, "the message expired", 5000);
    await withBroker({ persistenceFile: file }, async (h) => {
      const got = await retained(h, 1);
      expect([...got.keys()]).toEqual(["e/long"]);
      expect(got.get("e/long")!.properties.messageExpiryInterval).toBeLessThanOrEqual(3600);
    });
  });

  test("a retained message is in the file once its PUBACK has arrived, not only on stop()", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      await retain(h, [["live/t", "written"]]);
      expect(rows<{ topic: string }>(file, "SELECT topic FROM retained").map((r) => r.topic)).toEqual(["live/t"]);
    });
  });

  test("checkpoints run beside the broker: writes of three times RESTART_BYTES leave a WAL under twice it, and stop() merges and removes it", async () => {
    const file = freshFile();
    const payload = "x".repeat(256 * 1024);
    const count = Math.ceil((3 * RESTART_BYTES) / payload.length);
    await withBroker({ persistenceFile: file }, async (h) => {
      const client = new Client("127.0.0.1", h.port, { connectDelays: [] });
      try {
        await client.start();
        // all published at once, the PUBACKs awaited after: the broker commits without a pause for the Worker to catch up in
        await Promise.all(Array.from({ length: count }, (_, i) => client.publish(new Message("big/t", `${i} ${payload}`, { qos: 1, retain: true }))));
      } finally {
        await client.stop();
      }
      expect(statSync(`${file}-wal`).size).toBeLessThan(2 * RESTART_BYTES);
    });
    expect(existsSync(`${file}-wal`)).toBe(false);
    await withBroker({ persistenceFile: file }, async (h) => {
      const got = await retained(h, 1);
      expect(text(got.get("big/t")!.payload)).toBe(`${count - 1} ${payload}`);
    });
  });

  test("a BrokerThread keeps them too: SQLite works inside the Worker", async () => {
    const file = freshFile();
    for (const round of [1, 2]) {
      const thread = new BrokerThread([["127.0.0.1", 0]], { persistenceFile: file });
      const [port] = await thread.start();
      const client = new Client("127.0.0.1", port!, { connectDelays: [] });
      try {
        await client.start();
        if (round === 1) await client.publish(new Message("thread/kept", "from the worker", { qos: 1, retain: true }));
        else {
          await client.subscribe("thread/#");
          expect((await client.messages.get())?.text).toBe("from the worker");
        }
      } finally {
        await client.stop();
        await thread.stop();
      }
    }
  });

  test("a damaged file (a page overwritten): start() rejects with PersistenceError saying so", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      await retain(h, Array.from({ length: 200 }, (_, i): [string, string] => [`big/${i}`, "x".repeat(200)]));
    });
    const bytes = new Uint8Array(await Bun.file(file).arrayBuffer());
    const header = (bytes[16]! << 8) | bytes[17]!; // the header's page size, big-endian (1 stands for 65536)
    const pageSize = header === 1 ? 65536 : header;
    expect(bytes.length).toBeGreaterThan(4 * pageSize);
    bytes.fill(0xa5, 2 * pageSize, 3 * pageSize); // the third page: table contents, not the header
    writeFileSync(file, bytes);
    const [main, thread] = await startErrors({ persistenceFile: file });
    expect(main).toBeInstanceOf(PersistenceError);
    expect(thread).toBeInstanceOf(PersistenceError);
    expect(main.message).toContain(file);
    expect(main.message).toMatch(/damaged|malformed/);
  });

  test("another program's SQLite database: PersistenceError naming its tables, and the file is left as it was", async () => {
    const file = freshFile();
    const db = new Database(file, { create: true });
    db.run("CREATE TABLE users (name TEXT)");
    db.run("INSERT INTO users VALUES ('alice')");
    db.close();
    const before = await Bun.file(file).bytes();
    const [main, thread] = await startErrors({ persistenceFile: file });
    expect(main).toBeInstanceOf(PersistenceError);
    expect(thread).toBeInstanceOf(PersistenceError);
    expect(main.message).toBe(`the persistence file ${file} is not an mqtttools persistence file (it holds the tables users)`);
    expect(await Bun.file(file).bytes()).toEqual(before); // not switched to WAL, nothing created
  });

  test("a file of the previous format (sessions as JSON) opens without loss: retained messages, the session, its subscription, queued and in-flight messages, incoming QoS 2 identifiers", async () => {
    const file = freshFile();
    const b64 = (topic: string, payload: string, qos: 0 | 1 | 2, retain = false) =>
      Buffer.from(encodePacket(publishPacket(topic, payload, { qos, retain, packetId: qos > 0 ? 1 : 0 }), 5)).toString("base64");
    const db = new Database(file, { create: true });
    db.run("PRAGMA journal_mode = WAL");
    db.run("CREATE TABLE retained (topic TEXT PRIMARY KEY, publish BLOB NOT NULL, expires_at INTEGER NOT NULL)");
    db.run("CREATE TABLE sessions (client_id TEXT PRIMARY KEY, state TEXT NOT NULL)");
    db.query("INSERT INTO retained VALUES (?, ?, 0)").run("old/r", encodePacket(publishPacket("old/r", "kept retained", { qos: 1, retain: true, packetId: 1 }), 5));
    const state = {
      clientId: "old-timer", expiryInterval: 3600, protocolVersion: 5, username: null, savedAt: Date.now(),
      subscriptions: [{ key: "old/#", filter: "old/#", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 2, shareName: null }],
      queue: [{ message: { publish: b64("old/q", "queued", 1), expiresAt: 0 }, qos: 1, retain: false, subscriptionIds: null }],
      inflight: [{ packetId: 9, message: { publish: b64("old/f", "in flight", 1), expiresAt: 0 }, qos: 1, retain: false, subscriptionIds: null, released: false, held: false }],
      incomingQos2: [4],
    };
    db.query("INSERT INTO sessions VALUES (?, ?)").run("old-timer", JSON.stringify(state));
    db.close();
    await withBroker({ persistenceFile: file }, async (h) => {
      expect(h.broker.recovery).toMatchObject({ sessions: 1, subscriptions: 1, queued: 1, inflight: 1, incomingQos2: 1, retained: 1, wills: 0 });
      const { client, connack } = await h.connectAck({ clientId: "old-timer", cleanStart: false, properties: { sessionExpiryInterval: 3600 } });
      expect(connack.sessionPresent).toBe(true);
      const got = await receivePublishes(client, 2);
      expect(got.map((p) => [text(p.topic), text(p.payload), p.packetId === 9 && p.dup])).toEqual([["old/f", "in flight", true], ["old/q", "queued", false]]);
      client.send({ type: PacketType.PUBREL, packetId: 4, reasonCode: 0, properties: {} });
      expect(await client.next(PacketType.PUBCOMP)).toMatchObject({ packetId: 4, reasonCode: 0 });
      expect(text((await retained(h, 1)).get("old/r")!.payload)).toBe("kept retained");
    });
    expect(rows<{ name: string }>(file, "SELECT name FROM sqlite_master WHERE name = 'sessions'")).toEqual([]);
  });

  test("a file of format 2 (queued and in-flight messages in two tables) opens without loss: in-flight messages in send order with their packet identifiers, then the queue", async () => {
    const file = freshFile();
    const publish = (topic: string, payload: string) => encodePacket(publishPacket(topic, payload, { qos: 1, packetId: 1 }), 5);
    const db = new Database(file, { create: true });
    db.run("PRAGMA journal_mode = WAL");
    for (const sql of [
      "CREATE TABLE retained (topic TEXT PRIMARY KEY, publish BLOB NOT NULL, expires_at INTEGER NOT NULL)",
      "CREATE TABLE session (client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, protocol_version INTEGER NOT NULL, username TEXT, disconnected_at INTEGER NOT NULL) WITHOUT ROWID",
      "CREATE TABLE subscription (client_id TEXT NOT NULL, key TEXT NOT NULL, filter TEXT NOT NULL, qos INTEGER NOT NULL, no_local INTEGER NOT NULL, retain_as_published INTEGER NOT NULL, retain_handling INTEGER NOT NULL, subscription_id INTEGER, share_name TEXT, PRIMARY KEY (client_id, key)) WITHOUT ROWID",
      "CREATE TABLE queued (client_id TEXT NOT NULL, seq INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, subscription_ids TEXT, publish BLOB NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (client_id, seq)) WITHOUT ROWID",
      "CREATE TABLE inflight (client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, seq INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, subscription_ids TEXT, released INTEGER NOT NULL, publish BLOB NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID",
      "CREATE TABLE incoming_qos2 (client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID",
      "CREATE TABLE will (client_id TEXT PRIMARY KEY, publish BLOB NOT NULL, due_at INTEGER NOT NULL) WITHOUT ROWID",
    ]) db.run(sql);
    db.run(`PRAGMA application_id = ${0x4d515454}`); // "MQTT"
    db.run("PRAGMA user_version = 2");
    db.query("INSERT INTO session VALUES (?, 3600, 5, NULL, ?)").run("two-tables", Date.now());
    db.query("INSERT INTO subscription VALUES (?, 'two/#', 'two/#', 1, 0, 0, 2, NULL, NULL)").run("two-tables");
    // sent second but with the lower packet identifier: the order is the send order (seq), not the identifiers'
    db.query("INSERT INTO inflight VALUES (?, 3, 8, 1, 0, NULL, 0, ?, 0)").run("two-tables", publish("two/f2", "sent second"));
    db.query("INSERT INTO inflight VALUES (?, 7, 5, 1, 0, NULL, 0, ?, 0)").run("two-tables", publish("two/f1", "sent first"));
    db.query("INSERT INTO queued VALUES (?, 12, 1, 0, NULL, ?, 0)").run("two-tables", publish("two/q1", "queued first"));
    db.query("INSERT INTO queued VALUES (?, 13, 1, 0, NULL, ?, 0)").run("two-tables", publish("two/q2", "queued second"));
    db.close();
    await withBroker({ persistenceFile: file }, async (h) => {
      expect(h.broker.recovery).toMatchObject({ sessions: 1, subscriptions: 1, queued: 2, inflight: 2 });
      const { client, connack } = await h.connectAck({ clientId: "two-tables", cleanStart: false, properties: { sessionExpiryInterval: 3600 } });
      expect(connack.sessionPresent).toBe(true);
      const got = await receivePublishes(client, 4);
      expect(got.map((p) => [text(p.payload), p.dup])).toEqual([["sent first", true], ["sent second", true], ["queued first", false], ["queued second", false]]);
      expect(got.slice(0, 2).map((p) => p.packetId)).toEqual([7, 3]); // [MQTT-4.4.0-1]
    });
    expect(rows<{ name: string }>(file, "SELECT name FROM sqlite_master WHERE name IN ('queued', 'inflight')")).toEqual([]);
    expect(rows<{ user_version: number }>(file, "PRAGMA user_version")).toEqual([{ user_version: 3 }]);
  });

  test("a file that is not SQLite: start() rejects with PersistenceError, on the main thread and in a BrokerThread alike", async () => {
    const file = freshFile();
    writeFileSync(file, "this is not a database, and long enough to be looked at as one ".repeat(20));
    const [main, thread] = await startErrors({ persistenceFile: file });
    expect(main).toBeInstanceOf(PersistenceError);
    expect(thread).toBeInstanceOf(PersistenceError);
    expect(thread.message).toBe(main.message);
    expect(main.message).toContain(file);
  });
});

describe("sessions across a restart (persistenceFile)", () => {
  const persistent = (clientId: string, fields: Partial<ConnectPacket> = {}) => ({ clientId, cleanStart: false, properties: { sessionExpiryInterval: 300 }, ...fields });

  test("[MQTT-3.1.2-5] a session with an expiry interval comes back: session present, its subscription, and the QoS 1 messages queued while it was offline", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      const sub = await h.connect(persistent("sleeper"));
      await rawSubscribe(sub, "q/#", 1);
      sub.end();
      await waitUntil(() => !h.broker.clients.has("sleeper"), "the subscriber is offline");
      await retain(h, [["q/1", "while away", { retain: false }], ["q/2", "also away", { retain: false }]]);
    });
    await withBroker({ persistenceFile: file }, async (h) => {
      const { client, connack } = await h.connectAck(persistent("sleeper"));
      expect(connack.sessionPresent).toBe(true);
      const queued = await receivePublishes(client, 2);
      expect(queued.map((p) => `${text(p.topic)} ${text(p.payload)} q${p.qos}`)).toEqual(["q/1 while away q1", "q/2 also away q1"]);
      for (const p of queued) client.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      // the subscription itself came back
      const pub = await h.connect({ clientId: "later" });
      pub.send(publishPacket("q/3", "after the restart"));
      expect(text((await receivePublishes(client, 1))[0]!.payload)).toBe("after the restart");
    });
  });

  test("[MQTT-4.4.0-1] a QoS 1 message sent but not acknowledged before the restart is sent again with DUP and its packet identifier", async () => {
    const file = freshFile();
    let packetId = 0;
    await withBroker({ persistenceFile: file }, async (h) => {
      const sub = await h.connect(persistent("unacked"));
      await rawSubscribe(sub, "u/#", 1);
      await retain(h, [["u/1", "not acknowledged", { retain: false }]]);
      packetId = (await receivePublishes(sub, 1))[0]!.packetId; // no PUBACK
    });
    await withBroker({ persistenceFile: file }, async (h) => {
      const client = await h.connect(persistent("unacked"));
      const [again] = await receivePublishes(client, 1);
      expect({ topic: text(again!.topic), dup: again!.dup, packetId: again!.packetId }).toEqual({ topic: "u/1", dup: true, packetId });
    });
  });

  test("[MQTT-4.4.0-1] messages queued while offline and sent on reconnect (one UPDATE a run of them): after a restart each unacknowledged one is sent again with DUP and its packet identifier, a released one as PUBREL", async () => {
    const file = freshFile();
    const count = 6;
    let sent: PublishPacket[] = [];
    await withBroker({ persistenceFile: file }, async (h) => {
      const persistent = await leaveOffline(h, "queued-then-sent", "q/#", 2);
      await retain(h, Array.from({ length: count }, (_, i): [string, string, Partial<PublishPacket>] => [`q/${i}`, `m${i}`, { retain: false, qos: 2 }]));
      const sub = await h.connect(persistent);
      sent = await receivePublishes(sub, count); // no PUBREC yet: all in flight, sent from the queue
      sub.send({ type: PacketType.PUBREC, packetId: sent[2]!.packetId, reasonCode: 0, properties: {} });
      await sub.next(PacketType.PUBREL, (p) => p.type === PacketType.PUBREL && p.packetId === sent[2]!.packetId);
    });
    expect(new Set(sent.map((p) => p.packetId)).size).toBe(count);
    await withBroker({ persistenceFile: file }, async (h) => {
      const sub = await h.connect({ clientId: "queued-then-sent", cleanStart: false, properties: { sessionExpiryInterval: 60 } });
      const again = await receivePublishes(sub, count - 1);
      const expected = sent.filter((_, i) => i !== 2);
      expect(again.map((p) => ({ topic: text(p.topic), dup: p.dup, packetId: p.packetId }))).toEqual(expected.map((p) => ({ topic: text(p.topic), dup: true, packetId: p.packetId })));
      const rel = await sub.next(PacketType.PUBREL);
      expect(rel.type === PacketType.PUBREL && rel.packetId).toBe(sent[2]!.packetId);
    });
  });

  test("[MQTT-4.3.3-9] a QoS 2 message received before the restart and not yet released: the PUBREL after it gets PUBCOMP 0, and the message is delivered once", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      const sub = await h.connect(persistent("watcher"));
      await rawSubscribe(sub, "x/#", 2);
      sub.end();
      const pub = await h.connect(persistent("sender"));
      pub.send(publishPacket("x/once", "exactly once", { qos: 2, packetId: 7 }));
      await pub.next(PacketType.PUBREC); // no PUBREL yet
    });
    await withBroker({ persistenceFile: file }, async (h) => {
      const pub = await h.connect(persistent("sender"));
      pub.send({ type: PacketType.PUBREL, packetId: 7, reasonCode: 0, properties: {} });
      expect(await pub.next(PacketType.PUBCOMP)).toMatchObject({ packetId: 7, reasonCode: 0 });
      const watcher = await h.connect(persistent("watcher"));
      const got = await receivePublishes(watcher, 1);
      expect(text(got[0]!.payload)).toBe("exactly once");
      watcher.send({ type: PacketType.PUBREC, packetId: got[0]!.packetId, reasonCode: 0, properties: {} });
      await settle(watcher);
      expect(takePublishes(watcher).filter((p) => text(p.topic) === "x/once")).toEqual([]);
    });
  });

  test("a shared subscription comes back: the group delivers to its member once it reconnects", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      const member = await h.connect(persistent("member"));
      await rawSubscribe(member, "$share/g/s/#", 1);
    });
    await withBroker({ persistenceFile: file }, async (h) => {
      const member = await h.connect(persistent("member"));
      const pub = await h.connect({ clientId: "p" });
      pub.send(publishPacket("s/1", "to the group", { qos: 1, packetId: 1 }));
      expect(text((await receivePublishes(member, 1))[0]!.payload)).toBe("to the group");
    });
  });

  test("a session is in the file once its CONNACK has arrived, and a subscription once its SUBACK has", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      const c = await h.connect(persistent("saved-live"));
      expect(savedSessions(file).map((s) => s.client_id)).toEqual(["saved-live"]);
      await rawSubscribe(c, "live/#", 1);
      expect(rows<{ key: string }>(file, "SELECT key FROM subscription WHERE client_id = 'saved-live'").map((r) => r.key)).toEqual(["live/#"]);
    });
  });

  test("sessions without an expiry interval, and ones that expired while the broker was down, do not come back", async () => {
    const file = freshFile();
    await withBroker({ persistenceFile: file }, async (h) => {
      await h.connect({ clientId: "ephemeral", cleanStart: false });
      await h.connect(persistent("brief", { properties: { sessionExpiryInterval: 1 } }));
    });
    const saved = savedSessions(file);
    expect(saved.map((s) => s.client_id)).toEqual(["brief"]);
    await waitUntil(() => Date.now() > saved[0]!.disconnected_at + 1000, "the session's expiry passed", 5000);
    await withBroker({ persistenceFile: file }, async (h) => {
      expect((await h.connectAck(persistent("brief"))).connack.sessionPresent).toBe(false);
      expect((await h.connectAck({ clientId: "ephemeral", cleanStart: false })).connack.sessionPresent).toBe(false);
    });
  });

  test("MQTT.js (v5, clean: false, Session Expiry Interval 300) resumes its session on the restarted broker: session present, and the QoS 2 message published meanwhile arrives once", async () => {
    const file = freshFile();
    const peers = new Peers();
    const options = { protocolVersion: 5 as const, clientId: "js-durable", clean: false, properties: { sessionExpiryInterval: 300 } };
    try {
      await withBroker({ persistenceFile: file }, async (h) => {
        const js = await peers.mqttjs(`mqtt://127.0.0.1:${h.port}`, options);
        await js.client.subscribeAsync("js/#", { qos: 2 });
        await js.client.endAsync();
        const pub = await peers.mqttjs(`mqtt://127.0.0.1:${h.port}`, { protocolVersion: 5, clientId: "js-pub" });
        await pub.client.publishAsync("js/t", "while away", { qos: 2 });
      });
      await peers.closeAll();
      await withBroker({ persistenceFile: file }, async (h) => {
        const js = await peers.mqttjs(`mqtt://127.0.0.1:${h.port}`, options);
        expect(js.connack.sessionPresent).toBe(true);
        const [m] = await js.receive(1);
        expect([m!.topic, m!.payload, m!.packet.qos]).toEqual(["js/t", "while away", 2]);
      });
    } finally {
      await peers.closeAll();
    }
  });

  test("mosquitto_sub -c (a persistent 3.1.1 session) gets what was published while it and the broker were down", async () => {
    const file = freshFile();
    const peers = new Peers();
    try {
      await withBroker({ persistenceFile: file }, async (h) => {
        const at = ["-h", "127.0.0.1", "-p", String(h.port)];
        // subscribe once, with a persistent session, and leave
        expect((await finished(peers.mosquitto("mosquitto_sub", [...at, "-c", "-i", "durable", "-q", "1", "-t", "d/#", "-E"]))).code).toBe(0); // -E: exit once subscribed
        expect((await finished(peers.mosquitto("mosquitto_pub", [...at, "-q", "1", "-t", "d/t", "-m", "kept for durable"]))).code).toBe(0);
      });
      await withBroker({ persistenceFile: file }, async (h) => {
        const at = ["-h", "127.0.0.1", "-p", String(h.port)];
        const got = await finished(peers.mosquitto("mosquitto_sub", [...at, "-c", "-i", "durable", "-q", "1", "-t", "d/#", "-C", "1"]));
        expect(got).toMatchObject({ code: 0, stdout: "kept for durable\n" });
      });
    } finally {
      await peers.closeAll();
    }
  });
});

