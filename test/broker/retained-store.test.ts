/**
 * The retained store (lib/broker/retained.ts) against the reference matcher (topicMatches): the
 * shared case table, generated filters and topics, `$`-topics, expiry, clearing, walks in slices,
 * the retained bounds, and the persistence round trip through a broker restarted on its file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker } from "../../lib/broker/broker";
import type { Message } from "../../lib/broker/message";
import { RetainedStore } from "../../lib/broker/retained";
import { topicMatches } from "../../lib/topic/match";
import { prng } from "../fixtures/prng";
import { CASES } from "../fixtures/topics";

const utf8 = new TextEncoder();

/** A retained message on `topic`. */
function message(topic: string, payload = "x", expiresAt = 0): Message {
  return { topic, topicBytes: utf8.encode(topic), payload: utf8.encode(payload), qos: 1, retain: true, properties: {}, expiresAt, persisted: true, ownTopic: true, forms: null, formsShared: true };
}

/** The topics a walk of `filter` finds, sorted; `budget` nodes per step. */
function found(store: RetainedStore, filter: string, now = Date.now(), budget = 1_000_000): string[] {
  const cursor = store.walk(filter);
  const topics: string[] = [];
  let steps = 0;
  while (!cursor.next(budget, now, (bytes) => topics.push(new TextDecoder().decode(bytes.subarray(4, 4 + ((bytes[2]! << 8) | bytes[3]!)))))) steps++;
  expect(steps).toBeLessThan(1_000_000);
  return topics.sort();
}

/** The topics among `topics` the reference matcher gives for `filter`, sorted. */
const reference = (filter: string, topics: string[]): string[] => topics.filter((t) => topicMatches(filter, t)).sort();

describe("the shared case table", () => {
  for (const [filter, topic, expected] of CASES) {
    test(`'${filter}' ${expected ? "finds" : "does not find"} '${topic}'`, () => {
      expect(topicMatches(filter, topic)).toBe(expected);
      const store = new RetainedStore();
      store.set(message(topic));
      expect(found(store, filter)).toEqual(expected ? [topic] : []);
    });
  }

  test("every topic of the table in one store: each filter finds what the reference matcher does, also one node per step", () => {
    const topics = [...new Set(CASES.map(([, t]) => t))];
    const store = new RetainedStore();
    for (const t of topics) store.set(message(t));
    expect(store.size).toBe(topics.length);
    for (const filter of new Set(CASES.map(([f]) => f))) {
      expect(found(store, filter)).toEqual(reference(filter, topics));
      expect(found(store, filter, Date.now(), 1)).toEqual(reference(filter, topics));
    }
  });
});

describe("against the reference matcher on generated filters and topics", () => {
  const LEVELS = ["a", "b", "", "$x", "c"];
  for (const seed of [1, 2, 3]) {
    test(`seed ${seed}`, () => {
      const rand = prng(seed);
      const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const topics = new Set<string>();
      for (let i = 0; i < 300; i++) topics.add(Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pick(LEVELS)).join("/"));
      const store = new RetainedStore();
      for (const t of topics) store.set(message(t));
      for (let i = 0; i < 300; i++) {
        const n = 1 + Math.floor(rand() * 4);
        const levels = Array.from({ length: n }, () => pick([...LEVELS, "+", "+"]));
        if (rand() < 0.3) levels[n - 1] = "#";
        const filter = levels.join("/");
        expect(found(store, filter, Date.now(), 1 + Math.floor(rand() * 5))).toEqual(reference(filter, [...topics]));
      }
    });
  }
});

describe("$-topics, expiry and clearing", () => {
  test("a filter starting with a wildcard finds no $-topic; one starting with $ does [MQTT-4.7.2-1]", () => {
    const store = new RetainedStore();
    for (const t of ["$SYS/broker/uptime", "$SYS", "a/b", "a"]) store.set(message(t));
    expect(found(store, "#")).toEqual(["a", "a/b"]);
    expect(found(store, "+")).toEqual(["a"]);
    expect(found(store, "+/b")).toEqual(["a/b"]);
    expect(found(store, "$SYS/#")).toEqual(["$SYS", "$SYS/broker/uptime"]);
    expect(found(store, "$SYS/+/uptime")).toEqual(["$SYS/broker/uptime"]);
  });

  test("an expired message is not found, and the walk deletes it and reports it", () => {
    const gone: string[] = [];
    const store = new RetainedStore((t) => gone.push(t));
    const now = Date.now();
    store.set(message("e/old", "x", now - 1));
    store.set(message("e/new", "x", now + 60_000));
    store.set(message("e/never"));
    expect(store.get("e/old", now)).toBeUndefined();
    expect(found(store, "e/+", now)).toEqual(["e/never", "e/new"]);
    expect(gone).toEqual(["e/old"]);
    expect(store.has("e/old")).toBe(false);
    expect(store.size).toBe(2);
    expect(found(store, "e/+", now + 120_000)).toEqual(["e/never"]);
    expect(gone.sort()).toEqual(["e/new", "e/old"]);
  });

  test("an empty payload clears [MQTT-3.3.1-6]; replacing keeps one message; empty nodes are pruned; size and bytes follow", () => {
    const store = new RetainedStore();
    store.set(message("p/q/r", "12345"));
    store.set(message("p/q", "1"));
    expect([store.size, store.bytes]).toEqual([2, 5 + 5 + 3 + 1]);
    store.set(message("p/q/r", "12"));
    expect([store.size, store.bytes]).toEqual([2, 5 + 2 + 3 + 1]);
    expect(store.get("p/q/r")!.payload).toEqual(utf8.encode("12"));
    store.set(message("p/q/r", ""));
    expect([store.size, store.bytes]).toEqual([1, 4]);
    expect(found(store, "#")).toEqual(["p/q"]);
    store.set(message("p/q", ""));
    expect([store.size, store.bytes]).toEqual([0, 0]);
    expect([...store.topics()]).toEqual([]);
    expect(store.delete("p/q")).toBe(false);
  });

  test("a stored message is sent as it was published: QoS, properties, payload; RETAIN set", () => {
    const store = new RetainedStore();
    store.set({ ...message("m/1", "hello"), qos: 2, properties: { contentType: "text/plain", userProperties: [["k", "v"]] } });
    const m = store.get("m/1")!;
    expect([m.topic, m.qos, m.retain, m.properties.contentType, new TextDecoder().decode(m.payload)]).toEqual(["m/1", 2, true, "text/plain", "hello"]);
    expect(m.properties.userProperties).toEqual([["k", "v"]]);
  });

  test("the bounds refuse a new topic only: a topic that has a message may always be replaced", () => {
    const store = new RetainedStore();
    store.set(message("a", "123"));
    expect(store.refuses("b", 2, 1, 1000)).toBe("messages");
    expect(store.refuses("a", 2, 1, 1000)).toBeNull();
    expect(store.refuses("b", 2, 10, 5)).toBe("bytes");
    expect(store.refuses("b", 1, 10, 5)).toBeNull();
  });
});

describe("leaves, expiry and cost kept apart from the trie", () => {
  test("a topic below a message's topic, added and deleted in either order: both stay found", () => {
    const store = new RetainedStore();
    store.set(message("a/b"));
    store.set(message("a/b/c"));
    expect(found(store, "a/b/#")).toEqual(["a/b", "a/b/c"]);
    store.set(message("a/b/c", ""));
    expect(found(store, "a/b/#")).toEqual(["a/b"]);
    expect(found(store, "a/+")).toEqual(["a/b"]);
    store.set(message("a/b/c/d"));
    store.set(message("a/b", ""));
    expect(found(store, "#")).toEqual(["a/b/c/d"]);
    expect(store.has("a/b")).toBe(false);
    store.set(message("a/b/c/d", ""));
    expect([...store.topics()]).toEqual([]);
  });

  test("a message's expiry goes with it: replaced by one that never expires, the topic stays; and the other way", () => {
    const gone: string[] = [];
    const store = new RetainedStore((t) => gone.push(t));
    const now = Date.now();
    store.set(message("x/1", "old", now + 1000));
    store.set(message("x/1", "new"));
    store.set(message("x/2", "old"));
    store.set(message("x/2", "new", now + 1000));
    store.set(message("x/2/below", "y", now + 1000));
    expect(store.get("x/1", now + 2000)?.expiresAt).toBe(0);
    expect(store.get("x/2", now)?.expiresAt).toBe(now + 1000);
    expect(found(store, "x/#", now + 2000)).toEqual(["x/1"]);
    expect(gone.sort()).toEqual(["x/2", "x/2/below"]);
    expect(store.size).toBe(1);
    expect((store as unknown as { expiry: Map<unknown, number> }).expiry.size).toBe(0); // nothing left of the replaced or expired
  });

  test("bytes counts topic and payload whatever the QoS, properties and lengths", () => {
    const store = new RetainedStore();
    const topic = `long/${"t".repeat(200)}`;
    const payload = "p".repeat(20_000);
    store.set({ ...message(topic, payload), qos: 0, properties: { userProperties: [["k", "v".repeat(300)]] } });
    store.set({ ...message("q2", "12"), qos: 2, properties: { contentType: "text/plain" } });
    expect(store.bytes).toBe(topic.length + payload.length + 2 + 2);
    store.set(message(topic, ""));
    store.set(message("q2", ""));
    expect([store.size, store.bytes]).toEqual([0, 0]);
  });

  test("random sets, clears and expiries: every filter finds what a reference map has live; size and bytes agree", () => {
    const rand = prng(7);
    const LEVELS = ["a", "b", "", "$x"];
    const live = new Map<string, { payload: string; expiresAt: number }>();
    const store = new RetainedStore((t) => live.delete(t));
    const now = Date.now();
    for (let step = 0; step < 3000; step++) {
      const topic = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => LEVELS[Math.floor(rand() * LEVELS.length)]!).join("/");
      const payload = rand() < 0.3 ? "" : "v".repeat(1 + Math.floor(rand() * 3));
      const expiresAt = rand() < 0.2 ? now - 1 : 0;
      store.set(message(topic, payload, expiresAt));
      if (payload === "") live.delete(topic);
      else live.set(topic, { payload, expiresAt });
      if (step % 100 === 99) {
        const filter = rand() < 0.5 ? "#" : `${LEVELS[Math.floor(rand() * 3)]}/#`;
        const expected = [...live].filter(([t, m]) => m.expiresAt === 0 && topicMatches(filter, t)).map(([t]) => t);
        expect(found(store, filter, now)).toEqual(expected.sort());
        const kept = [...live].filter(([t]) => store.has(t));
        expect(kept.length).toBe(live.size);
        expect(store.size).toBe(live.size);
        expect(store.bytes).toBe(kept.reduce((n, [t, m]) => n + utf8.encode(t).length + m.payload.length, 0));
      }
    }
  });
});

describe("persistence round trip", () => {
  const dir = mkdtempSync(join(tmpdir(), "mqtttools-retained-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a broker restarted on its file finds the same retained messages by every filter; cleared and expired ones stay gone", async () => {
    const file = join(dir, "retained.db");
    const topics = ["r/a", "r/a/b", "r/c", "x", "deep/1/2/3/4"];
    const first = new Broker([["127.0.0.1", 0]], { persistenceFile: file, sysIntervalMs: 0 });
    await first.start();
    // r/expired is stored with its expiry passed already: recovery must leave it out
    for (const t of [...topics, "r/cleared", "r/expired"]) first.retain(message(t, `v-${t}`, t === "r/expired" ? Date.now() - 1 : 0));
    first.retain(message("r/cleared", ""));
    expect(first.retained.has("r/expired")).toBe(true);
    await first.stop();
    const second = new Broker([["127.0.0.1", 0]], { persistenceFile: file, sysIntervalMs: 0 });
    await second.start();
    try {
      expect([...second.retained.topics()].sort()).toEqual([...topics].sort());
      for (const filter of ["#", "r/+", "r/#", "+", "deep/+/2/#", "x"]) expect(found(second.retained, filter)).toEqual(reference(filter, topics));
      for (const t of topics) expect(new TextDecoder().decode(second.retained.get(t)!.payload)).toBe(`v-${t}`);
    } finally {
      await second.stop();
    }
  });
});
