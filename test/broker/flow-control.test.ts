/**
 * Flow control towards publishers (issue 11, MQTT 5.0 section 4.9 and TCP underneath it): at the
 * default slowConsumerPolicy "backpressure" a QoS 1/2 message for an online subscriber whose queue
 * is full is queued and its publisher is held back (its socket is not read) until the queue is
 * down to half, so no acknowledged message is lost and memory stays bounded. A subscriber that
 * makes no progress for slowConsumerTimeoutMs is disconnected (0x97); offline sessions and QoS 0
 * never hold a publisher back; "drop" and "disconnect" are the other policies.
 *
 * The load tests run bench/loadgen.ts (count mode) in a process of its own against a broker in
 * this one, so the broker's queues and heap can be watched while it works.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { encodePacket, PacketType, ReasonCode, type DisconnectPacket, type PublishPacket } from "../../lib/codec";
import type { Broker } from "../../lib/broker/broker";
import { leaveOffline, finished, nextPublish, publishPacket, rawSubscribe, roundTrip, settle, takePublishes, text, useHarness, waitUntil, type RawClient } from "./helpers";

const { start, peers } = useHarness();
const LOADGEN = join(import.meta.dir, "../../bench/loadgen.ts");

/** What bench/loadgen.ts reports in count mode. */
interface CountResult {
  delivered: number;
  expected: number;
  disconnected: number;
  rate: number;
  p50: number;
  p99: number;
  perSubscriber: number[];
  error?: string;
}

/**
 * Runs the load generator in count mode against `broker` while sampling the broker's state every
 * 20 ms: the longest queue of any session, and this process's heap (the broker's, plus the test's).
 */
async function countRun(broker: Broker, port: number, args: (string | number)[]): Promise<{ result: CountResult; maxQueued: number; heapGrowth: number }> {
  Bun.gc(true);
  const heapBefore = process.memoryUsage().heapUsed;
  let maxQueued = 0;
  let maxHeap = heapBefore;
  const sampler = setInterval(() => {
    for (const s of broker.sessions.values()) if (s.queued > maxQueued) maxQueued = s.queued;
    const heap = process.memoryUsage().heapUsed;
    if (heap > maxHeap) maxHeap = heap;
  }, 20);
  try {
    const proc = Bun.spawn([process.execPath, LOADGEN, "--port", String(port), "--mode", "count", ...args.map(String)], { stdout: "pipe", stderr: "pipe" });
    const out = await finished(proc as Parameters<typeof finished>[0]);
    const result = JSON.parse(out.stdout.trim().split("\n").pop() ?? "{}") as CountResult;
    if (result.error !== undefined) throw new Error(`load generator: ${result.error} ${out.stderr}`);
    return { result, maxQueued, heapGrowth: maxHeap - heapBefore };
  } finally {
    clearInterval(sampler);
  }
}

/** Publishes `n` QoS `qos` messages on `topic` from `pub` (packet ids from `firstId`), without waiting. */
function publishMany(pub: RawClient, topic: string, n: number, qos: 1 | 2, firstId = 1): void {
  for (let i = 0; i < n; i++) pub.send(publishPacket(topic, `m${firstId + i}`, { qos, packetId: firstId + i }));
}

/** True once `pub`'s connection on the broker is held back by a full queue. */
const heldBack = (broker: Broker, clientId: string) => broker.clients.get(clientId)?.heldBack === true;

describe("backpressure at default settings", () => {
  test("300 000 QoS 1 messages 1 -> 1, the publisher keeping 100 unacknowledged and the subscriber PUBACKing each as it arrives: all delivered, nobody disconnected, queue and heap bounded", async () => {
    const h = await start();
    const { maxQueuedMessages } = h.broker.options;
    const { result, maxQueued, heapGrowth } = await countRun(h.broker, h.port, ["--pubs", 1, "--subs", 1, "--qos", 1, "--count", 300_000, "--inflight", 100, "--ack-each", 1]);
    expect(result.delivered).toBe(300_000);
    expect(result.disconnected).toBe(0);
    // the queue passes its bound by at most one message per publisher held back
    expect(maxQueued).toBeLessThanOrEqual(maxQueuedMessages + 1);
    // the bound the README states: queues plus what held publishers had sent; 300 000 messages queued would be well over 100 MB
    expect(heapGrowth).toBeLessThan(64 * 1024 * 1024);
  }, 120_000);

  test("30 000 QoS 1 messages 1 -> 10, one subscriber acknowledging at most 3000 a second (ten times slower than the others can): all delivered, nobody disconnected, the publisher held to the slow one's pace", async () => {
    const h = await start();
    const { maxQueuedMessages } = h.broker.options;
    const { result, maxQueued, heapGrowth } = await countRun(h.broker, h.port, ["--pubs", 1, "--subs", 10, "--qos", 1, "--count", 30_000, "--slow-subs", 1, "--slow-ack-rate", 3000]);
    expect(result.perSubscriber).toEqual(Array(10).fill(30_000));
    expect(result.disconnected).toBe(0);
    expect(maxQueued).toBeLessThanOrEqual(maxQueuedMessages + 1);
    expect(heapGrowth).toBeLessThan(64 * 1024 * 1024);
  }, 120_000);

  test("QoS 2 1 -> 1 with a slow subscriber: every message exactly once, nobody disconnected", async () => {
    const h = await start({ maxQueuedMessages: 100 });
    const { result, maxQueued } = await countRun(h.broker, h.port, ["--pubs", 1, "--subs", 1, "--qos", 2, "--count", 5000, "--slow-subs", 1, "--slow-ack-rate", 5000]);
    expect(result.delivered).toBe(5000);
    expect(result.disconnected).toBe(0);
    expect(maxQueued).toBeLessThanOrEqual(101);
  }, 60_000);
});

describe("a subscriber that stops acknowledging", () => {
  test("its publishers are held back (PUBACK for the message that filled the queue, then nothing read: no PINGRESP), a publisher to another topic keeps going; after slowConsumerTimeoutMs it is disconnected with 0x97 and the held publisher goes on", async () => {
    const log: string[] = [];
    const h = await start({ maxInflight: 5, maxQueuedMessages: 10, slowConsumerTimeoutMs: 2500, logLevel: "info", logger: (l) => log.push(l) });
    const stuck = await h.connect({ clientId: "stuck" });
    await rawSubscribe(stuck, "stuck/t", 1);
    const other = await h.connect({ clientId: "other" });
    await rawSubscribe(other, "free/t", 1);
    // keep alive 1 s: held back for longer than 1.5 times that, it must not be timed out, since we are the ones not reading
    const pub = await h.connect({ clientId: "pub", keepAlive: 1 });
    const pub2 = await h.connect({ clientId: "pub2" });

    publishMany(pub, "stuck/t", 16, 1); // 5 in flight, 10 queued, the 16th over the bound
    await waitUntil(() => heldBack(h.broker, "pub"), "the publisher is held back");
    const acked = await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === 16);
    expect(acked.type).toBe(PacketType.PUBACK); // the 16th is queued, so it is acknowledged
    expect(h.broker.sessions.get("stuck")!.queued).toBe(11);
    pub.send({ type: PacketType.PINGREQ });
    publishMany(pub, "stuck/t", 1, 1, 17); // read only once the hold ends

    // meanwhile another publisher to another topic is not slowed
    for (let round = 0; round < 20; round++) {
      pub2.send(publishPacket("free/t", `f${round}`, { qos: 1, packetId: round + 1 }));
      const p = (await nextPublish(other, "free/t")) as PublishPacket;
      other.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      await pub2.next(PacketType.PUBACK, (a) => a.type === PacketType.PUBACK && a.packetId === round + 1);
    }
    expect(heldBack(h.broker, "pub")).toBe(true);
    expect(pub.received.some((p) => p.type === PacketType.PINGRESP)).toBe(false);

    // the stuck subscriber is disconnected once it made no progress for the timeout
    const d = (await stuck.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.QuotaExceeded);
    // and the held publisher goes on: its PINGREQ is answered, its next message acknowledged
    await pub.next(PacketType.PINGRESP);
    await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === 17);
    expect(pub.isClosed).toBe(false);
    expect(heldBack(h.broker, "pub")).toBe(false);
    expect(log.some((l) => l.includes("closing client 'pub'"))).toBe(false);
    await roundTrip(pub);
  }, 30_000);

  test("acknowledgements let it go on: once the queue is down to half its bound the held publisher is read again, and every message arrives once, in order", async () => {
    const h = await start({ maxInflight: 5, maxQueuedMessages: 10 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "t", 1);
    const pub = await h.connect({ clientId: "pub" });
    publishMany(pub, "t", 40, 1);
    await waitUntil(() => heldBack(h.broker, "pub"), "the publisher is held back");
    const got: string[] = [];
    while (got.length < 40) {
      const p = (await nextPublish(sub)) as PublishPacket;
      got.push(text(p.payload));
      sub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
    }
    expect(got).toEqual(Array.from({ length: 40 }, (_, i) => `m${i + 1}`));
    await settle(pub, sub);
    expect(takePublishes(sub)).toEqual([]);
    expect(heldBack(h.broker, "pub")).toBe(false);
  });

  test("QoS 2: the PUBREC of messages after the one that filled the queue is withheld (they are not read) until the subscriber completes its exchanges", async () => {
    const h = await start({ maxInflight: 2, maxQueuedMessages: 4 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "q2", 2);
    const pub = await h.connect({ clientId: "pub" });
    publishMany(pub, "q2", 10, 2); // 2 in flight, 4 queued, the 7th over the bound: 8..10 wait unread
    await waitUntil(() => heldBack(h.broker, "pub"), "the publisher is held back");
    await pub.next(PacketType.PUBREC, (p) => p.type === PacketType.PUBREC && p.packetId === 7);
    await settle(sub);
    expect(pub.received.some((p) => p.type === PacketType.PUBREC && p.packetId >= 8)).toBe(false);
    const got: string[] = [];
    while (got.length < 10) {
      const p = (await nextPublish(sub)) as PublishPacket;
      got.push(text(p.payload));
      sub.send({ type: PacketType.PUBREC, packetId: p.packetId, reasonCode: 0, properties: {} });
      await sub.next(PacketType.PUBREL, (r) => r.type === PacketType.PUBREL && r.packetId === p.packetId);
      sub.send({ type: PacketType.PUBCOMP, packetId: p.packetId, reasonCode: 0, properties: {} });
    }
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `m${i + 1}`)); // exactly once, in order
    for (let id = 8; id <= 10; id++) await pub.next(PacketType.PUBREC, (p) => p.type === PacketType.PUBREC && p.packetId === id);
  });

  test("QoS 0 never holds a publisher back: to a subscriber whose output is full it is dropped and counted", async () => {
    const h = await start({ maxOutputBytes: 1000 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "zero", 0);
    const pub = await h.connect({ clientId: "pub" });
    // one write: the broker handles it in one go, so the output fills before any of it is flushed
    pub.send(Buffer.concat(Array.from({ length: 10 }, () => encodePacket(publishPacket("zero", new Uint8Array(400)), 5))));
    await settle(pub);
    expect(heldBack(h.broker, "pub")).toBe(false);
    expect(h.broker.counters.dropped.output_full).toBeGreaterThan(0);
  });
});

describe("offline sessions and the other policies", () => {
  test("an offline session's full queue drops new messages and counts them ($SYS/broker/publish/messages/dropped, a warning); the publisher is never held back", async () => {
    const log: string[] = [];
    const h = await start({ maxQueuedMessages: 5, sysIntervalMs: 50, logLevel: "warning", logger: (l) => log.push(l) });
    await leaveOffline(h, "away", "off", 1);
    const pub = await h.connect({ clientId: "pub" });
    publishMany(pub, "off", 12, 1);
    for (let id = 1; id <= 12; id++) await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === id);
    await roundTrip(pub);
    expect(heldBack(h.broker, "pub")).toBe(false);
    expect(h.broker.sessions.get("away")!.queued).toBe(5);
    expect(h.broker.counters.dropped.queue_full).toBe(7);
    expect(log.filter((l) => l.includes("warning:") && l.includes("'away'"))).toHaveLength(1); // once, not once per message
    const watcher = await h.connect({ clientId: "watcher" });
    await rawSubscribe(watcher, "$SYS/broker/publish/messages/dropped", 0);
    let value = "";
    while (value !== "7") value = text((await nextPublish(watcher, "$SYS/broker/publish/messages/dropped")).payload); // retained, then each change
  });

  test("slowConsumerPolicy \"drop\": an online subscriber's full queue drops and counts new messages; nobody is held back or disconnected", async () => {
    const h = await start({ slowConsumerPolicy: "drop", maxInflight: 2, maxQueuedMessages: 3 });
    const sub = await h.connect({ clientId: "sub" });
    await rawSubscribe(sub, "d", 1);
    const pub = await h.connect({ clientId: "pub" });
    publishMany(pub, "d", 10, 1);
    for (let id = 1; id <= 10; id++) await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === id);
    expect(heldBack(h.broker, "pub")).toBe(false);
    expect(h.broker.counters.dropped.queue_full).toBe(5);
    expect(h.broker.sessions.get("sub")!.queued).toBe(3);
    expect(sub.isClosed).toBe(false);
  });

  test("a client publishing to its own full queue is not held back (that would stop its acknowledgements too): the queue takes up to twice its bound, then the client is disconnected with 0x97", async () => {
    const h = await start({ maxInflight: 2, maxQueuedMessages: 3 });
    const self = await h.connect({ clientId: "self" });
    await rawSubscribe(self, "me", 1);
    publishMany(self, "me", 9, 1); // 2 in flight, 6 queued, the 9th past twice the bound
    const d = (await self.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.QuotaExceeded);
  });
});

describe("real peers", () => {
  test("MQTT.js publishing 20 000 QoS 1 messages as fast as it can to mosquitto_sub -q 1, both at their defaults: none lost", async () => {
    const h = await start();
    const n = 20_000;
    const sub = peers.mosquitto("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(h.port), "-V", "5", "-q", "1", "-t", "flood/q1", "-C", String(n), "-i", "msub"]);
    await waitUntil(() => h.broker.sessions.get("msub")?.subscriptions.size === 1, "mosquitto_sub subscribed");
    const pub = await peers.mqttjs(`mqtt://127.0.0.1:${h.port}`, { clientId: "mqttjs-pub", protocolVersion: 5 });
    await Promise.all(Array.from({ length: n }, (_, i) => pub.client.publishAsync("flood/q1", `m${i}`, { qos: 1 })));
    const out = await finished(sub);
    expect(out.code).toBe(0);
    const lines = out.stdout.trim().split("\n");
    expect(lines).toHaveLength(n);
    expect(new Set(lines).size).toBe(n); // each of them, none twice
  }, 60_000);
});
