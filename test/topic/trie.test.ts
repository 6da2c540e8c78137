/**
 * Topic matching: one shared case table run against the reference matcher (topicMatches) and the
 * TopicTrie, a seeded random comparison of the two, pruning of the trie, and the filter and
 * shared-subscription validators.
 */
import { describe, expect, test } from "bun:test";
import { topicMatches } from "../../lib/topic/match";
import { sameMatch, TopicTrie, type TrieNode } from "../../lib/topic/trie";
import { parseShared, topicFilterError } from "../../lib/topic/validate";
import { prng } from "../fixtures/prng";
import { CASES } from "../fixtures/topics";

const encoder = new TextEncoder();

/**
 * The subscribers a trie's walk over an ASCII topic's bytes (matchAsciiNodes) finds, sorted; null
 * for a topic that is not ASCII, which that walk does not take.
 */
function asciiMatchSet<V>(trie: TopicTrie<string, V>, topic: string): string[] | null {
  if (!/^[\x00-\x7f]*$/.test(topic)) return null;
  const bytes = encoder.encode(`xx${topic}yy`); // the topic in the middle of a larger buffer
  const nodes: TrieNode<string, V>[] = [];
  trie.matchAsciiNodes(bytes, 2, bytes.length - 2, nodes);
  expect(new Set(nodes).size).toBe(nodes.length); // each node once
  return nodes.flatMap((n) => [...n.subscribers!.keys()]).sort();
}

/** The trie's answer for one filter and topic; its walk over bytes must give the same. */
function trieMatches(filter: string, topic: string): boolean {
  const trie = new TopicTrie<string, number>();
  trie.add(filter, "s", 1);
  let hit = false;
  trie.match(topic, () => (hit = true));
  const bytewise = asciiMatchSet(trie, topic);
  if (bytewise !== null) expect({ filter, topic, bytewise: bytewise.length > 0 }).toEqual({ filter, topic, bytewise: hit });
  return hit;
}

/** The filters of `trie` (keys are the filters) that match `topic`, sorted; its walk over bytes must find the same. */
function trieMatchSet(trie: TopicTrie<string, string>, topic: string): string[] {
  const found: string[] = [];
  trie.match(topic, (key) => found.push(key));
  found.sort();
  const bytewise = asciiMatchSet(trie, topic);
  if (bytewise !== null) expect({ topic, bytewise }).toEqual({ topic, bytewise: found });
  return found;
}

describe("the shared case table", () => {
  test.each(CASES)("reference matcher: '%s' against '%s' is %p", (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });

  test.each(CASES)("trie: '%s' against '%s' is %p", (filter, topic, expected) => {
    expect(trieMatches(filter, topic)).toBe(expected);
  });

  test("every filter of the table in one trie: each topic finds exactly the filters the reference matcher accepts", () => {
    const trie = new TopicTrie<string, string>();
    const filters = [...new Set(CASES.map(([f]) => f))];
    for (const f of filters) trie.add(f, f, f);
    for (const topic of new Set(CASES.map(([, t]) => t))) {
      expect({ topic, matched: trieMatchSet(trie, topic) }).toEqual({ topic, matched: filters.filter((f) => topicMatches(f, topic)).sort() });
    }
  });
});


const TOPIC_LEVELS = ["a", "b", "c", "", "$s", "é", "日本", "🌍"];

function randomTopic(rand: () => number): string {
  const n = 1 + Math.floor(rand() * 4);
  const levels: string[] = [];
  for (let i = 0; i < n; i++) levels.push(TOPIC_LEVELS[Math.floor(rand() * TOPIC_LEVELS.length)]!);
  const topic = levels.join("/");
  return topic.length === 0 ? "a" : topic; // a topic name is at least one character [MQTT-4.7.3-1]
}

function randomFilter(rand: () => number): string {
  const n = 1 + Math.floor(rand() * 4);
  const levels: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (i === n - 1 && r < 0.15) levels.push("#");
    else if (r < 0.4) levels.push("+");
    else levels.push(TOPIC_LEVELS[Math.floor(rand() * TOPIC_LEVELS.length)]!);
  }
  const filter = levels.join("/");
  return filter.length === 0 ? "+" : filter;
}

describe("trie against the reference matcher on generated filters and topics", () => {
  test.each([1, 2, 3, 0xc0ffee])("seed %d: 300 filters, 500 topics, then half of the filters removed", (seed) => {
    const rand = prng(seed);
    const trie = new TopicTrie<string, string>();
    const filters = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const f = randomFilter(rand);
      expect(topicFilterError(f)).toBeNull();
      filters.add(f);
      trie.add(f, f, f);
    }
    expect(trie.size).toBe(filters.size);
    const topics = Array.from({ length: 500 }, () => randomTopic(rand));
    const compare = () => {
      for (const topic of topics) {
        const expected = [...filters].filter((f) => topicMatches(f, topic)).sort();
        expect({ seed, topic, matched: trieMatchSet(trie, topic) }).toEqual({ seed, topic, matched: expected });
      }
    };
    compare();
    for (const f of [...filters]) {
      if (rand() < 0.5) {
        expect(trie.remove(f, f)).toBe(true);
        filters.delete(f);
      }
    }
    expect(trie.size).toBe(filters.size);
    compare();
  });

  test.each([4, 5, 6, 7])("seed %d: sparse tries (a level with one child is compared in place), checked after each filter added or removed", (seed) => {
    const rand = prng(seed);
    const topics = Array.from({ length: 200 }, () => randomTopic(rand));
    for (let round = 0; round < 20; round++) {
      const trie = new TopicTrie<string, string>();
      const filters = new Set<string>();
      const compare = () => {
        for (const topic of topics) {
          const expected = [...filters].filter((f) => topicMatches(f, topic)).sort();
          expect({ seed, round, topic, matched: trieMatchSet(trie, topic) }).toEqual({ seed, round, topic, matched: expected });
        }
      };
      for (let i = 0; i < 4; i++) {
        const f = randomFilter(rand);
        filters.add(f);
        trie.add(f, f, f);
        compare();
      }
      for (const f of [...filters]) {
        trie.remove(f, f);
        filters.delete(f);
        compare();
      }
    }
  });

  test("a level compared in place matches it exactly, not a prefix or an extension of it", () => {
    const trie = new TopicTrie<string, string>();
    trie.add("dev/+/state", "f", "f");
    for (const [topic, hit] of [["dev/1/state", true], ["dev/1/stat", false], ["dev/1/states", false], ["dev/1/state/x", false], ["de/1/state", false], ["dev/1/", false], ["dev//state", true]] as const) {
      expect({ topic, matched: trieMatchSet(trie, topic).length > 0 }).toEqual({ topic, matched: hit });
    }
  });

  test("a level with thousands of children (its map split into shards) is looked up by the level's string, in both walks", () => {
    const trie = new TopicTrie<string, string>();
    for (let i = 0; i < 6000; i++) trie.add(`dev/${i}/state`, `dev/${i}/state`, "f");
    trie.add("dev/+/state", "dev/+/state", "f");
    trie.add("dev/#", "dev/#", "f");
    for (const i of [0, 1, 4095, 4096, 5999]) expect(trieMatchSet(trie, `dev/${i}/state`)).toEqual(["dev/#", "dev/+/state", `dev/${i}/state`]);
    expect(trieMatchSet(trie, "dev/6000/state")).toEqual(["dev/#", "dev/+/state"]);
    expect(trieMatchSet(trie, "dev/59/stat")).toEqual(["dev/#"]);
    expect(trieMatchSet(trie, "dev")).toEqual(["dev/#"]);
    expect(trieMatchSet(trie, "$dev/1/state")).toEqual([]);
  });

  test("several subscribers on one filter are each visited once per matching filter", () => {
    const trie = new TopicTrie<string, string>();
    trie.add("a/+", "s1", "a/+");
    trie.add("a/+", "s2", "a/+");
    trie.add("a/#", "s1", "a/#");
    const visits: string[] = [];
    trie.match("a/b", (k, v) => visits.push(`${k} ${v}`));
    expect(visits.sort()).toEqual(["s1 a/#", "s1 a/+", "s2 a/+"]);
  });

  test("adding a subscriber's filter again replaces its value", () => {
    const trie = new TopicTrie<string, number>();
    trie.add("a/b", "s", 1);
    const generation = trie.generation;
    trie.add("a/b", "s", 2);
    expect(trie.size).toBe(1);
    expect(trie.generation).not.toBe(generation);
    const values: number[] = [];
    trie.match("a/b", (_k, v) => values.push(v));
    expect(values).toEqual([2]);
  });
});

describe("sameMatch: a topic that differs only in levels the walk did not read matches the same nodes", () => {
  /** The nodes `topic` matches by its bytes, and the levels the walk read. */
  const walk = (trie: TopicTrie<string, string>, topic: string): { nodes: TrieNode<string, string>[]; read: number } => {
    const nodes: TrieNode<string, string>[] = [];
    trie.matchAsciiNodes(encoder.encode(topic), 0, topic.length, nodes);
    return { nodes, read: trie.read };
  };
  const same = (trie: TopicTrie<string, string>, before: string, after: string): boolean => sameMatch(encoder.encode(before), encoder.encode(after), walk(trie, before).read);

  test("one wildcard subscription: device topics of any length are the same match; other shapes are not", () => {
    const trie = new TopicTrie<string, string>();
    trie.add("dev/+/state", "s", "f");
    expect(same(trie, "dev/1/state", "dev/1/state")).toBe(true);
    expect(same(trie, "dev/1/state", "dev/22/state")).toBe(true);
    expect(same(trie, "dev/22/state", "dev/3/state")).toBe(true);
    expect(same(trie, "dev/1/state", "dev//state")).toBe(true);
    expect(same(trie, "dev/1/state", "dev/1/stat")).toBe(false); // a level read
    expect(same(trie, "dev/1/state", "dev/1/x/state")).toBe(false); // a level more
    expect(same(trie, "dev/1/state", "dev/1state")).toBe(false);
    expect(same(trie, "dev/1/state", "dex/1/state")).toBe(false);
  });

  test("an exact subscription beside the wildcard makes the device level read; '#' or '+' at the root makes the first level read ($)", () => {
    const trie = new TopicTrie<string, string>();
    trie.add("dev/+/state", "s", "f");
    trie.add("dev/7/state", "t", "f");
    expect(same(trie, "dev/1/state", "dev/2/state")).toBe(false);
    const rooted = new TopicTrie<string, string>();
    rooted.add("+/x", "s", "f");
    expect(same(rooted, "dev/x", "dew/x")).toBe(false);
    expect(same(rooted, "dev/x", "$ev/x")).toBe(false);
    const deep = new TopicTrie<string, string>();
    deep.add("a/b/c/+/e", "s", "f");
    expect(same(deep, "a/b/c/1/e", "a/b/c/2345/e")).toBe(true);
    expect(same(deep, "a/b/c/1/e", "a/b/d/1/e")).toBe(false);
  });

  test.each([8, 9, 10, 11])("seed %d: whenever sameMatch says so, the second topic matches exactly the first one's nodes", (seed) => {
    const rand = prng(seed);
    const LEVELS = ["a", "b", "ab", "", "$s", "xyz"];
    const pick = () => LEVELS[Math.floor(rand() * LEVELS.length)]!;
    const topic = () => {
      const levels = Array.from({ length: 1 + Math.floor(rand() * 4) }, pick);
      return levels.join("/") || "a";
    };
    let agreed = 0;
    for (let round = 0; round < 30; round++) {
      const trie = new TopicTrie<string, string>();
      for (let i = 0, n = 1 + Math.floor(rand() * 5); i < n; i++) {
        const levels = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => (rand() < 0.5 ? "+" : pick()));
        if (rand() < 0.2) levels.push("#");
        const f = levels.join("/") || "+";
        trie.add(f, f, f);
      }
      const topics = Array.from({ length: 40 }, topic);
      for (const before of topics) {
        const first = walk(trie, before);
        for (const after of topics) {
          if (!sameMatch(encoder.encode(before), encoder.encode(after), first.read)) continue;
          if (before !== after) agreed++;
          expect({ before, after, nodes: walk(trie, after).nodes.map((n) => [...n.subscribers!.keys()]).sort() }).toEqual({ before, after, nodes: first.nodes.map((n) => [...n.subscribers!.keys()]).sort() });
        }
      }
    }
    expect(agreed).toBeGreaterThan(100); // different topics, not only a topic with itself
  });
});

describe("pruning", () => {
  test("removing every subscription leaves the root with no children", () => {
    const rand = prng(42);
    const trie = new TopicTrie<string, number>();
    const entries: [string, string][] = [];
    for (let i = 0; i < 200; i++) {
      const f = randomFilter(rand);
      const key = `s${i % 7}`;
      trie.add(f, key, i);
      entries.push([f, key]);
    }
    for (const [f, key] of entries) trie.remove(f, key);
    expect(trie.size).toBe(0);
    expect(trie.root.children?.size ?? 0).toBe(0);
    let hit = false;
    trie.match("a/b", () => (hit = true));
    expect(hit).toBe(false);
  });

  test("removeAt() with the node add() returned prunes the branch", () => {
    const trie = new TopicTrie<string, number>();
    const deep = trie.add("a/b/c/d", "s", 1);
    const shallow = trie.add("a/b", "s", 2);
    expect(trie.removeAt(deep, "s")).toBe(true);
    expect(trie.find("a/b/c")).toBeUndefined(); // the empty levels below a/b went with it
    expect(trie.find("a/b")).toBe(shallow);
    expect(trie.removeAt(shallow, "s")).toBe(true);
    expect(trie.find("a")).toBeUndefined();
    expect(trie.root.children?.size ?? 0).toBe(0);
  });

  test("a node that still has children or other subscribers is kept", () => {
    const trie = new TopicTrie<string, number>();
    trie.add("a/b", "s1", 1);
    trie.add("a/b", "s2", 1);
    trie.add("a/b/c", "s1", 1);
    expect(trie.remove("a/b", "s1")).toBe(true);
    expect(trie.find("a/b")?.subscribers?.size).toBe(1);
    expect(trie.remove("a/b", "s2")).toBe(true);
    expect(trie.find("a/b")).toBeDefined(); // still the parent of a/b/c
    expect(trie.remove("a/b/c", "s1")).toBe(true);
    expect(trie.find("a")).toBeUndefined();
  });

  test("removing what is not there changes nothing and returns false", () => {
    const trie = new TopicTrie<string, number>();
    const node = trie.add("a/b", "s", 1);
    const generation = trie.generation;
    expect(trie.remove("a/b", "other")).toBe(false);
    expect(trie.remove("a/c", "s")).toBe(false);
    expect(trie.remove("a/b/c", "s")).toBe(false);
    expect(trie.generation).toBe(generation);
    expect(trie.removeAt(node, "s")).toBe(true);
    expect(trie.removeAt(node, "s")).toBe(false);
    expect(trie.size).toBe(0);
  });
});

describe("topicFilterError", () => {
  test.each([
    "a", "a/b", "#", "+", "+/+", "a/+/b", "a/#", "+/#", "/", "//", "/a", "a/", "$SYS/#", "$share", "日本/+", "🌍/#", "a b/c",
  ])("'%s' is a valid filter", (filter) => {
    expect(topicFilterError(filter)).toBeNull();
  });

  test.each([
    ["", "[MQTT-4.7.3-1] an empty filter"],
    ["a/#/b", "[MQTT-4.7.1-1] '#' not last"],
    ["#/a", "[MQTT-4.7.1-1] '#' not last"],
    ["a#", "[MQTT-4.7.1-1] '#' not a whole level"],
    ["#a", "[MQTT-4.7.1-1] '#' not a whole level"],
    ["a/b#", "[MQTT-4.7.1-1] '#' not a whole level"],
    ["##", "[MQTT-4.7.1-1] '#' twice in a level"],
    ["a+", "[MQTT-4.7.1-2] '+' not a whole level"],
    ["+a", "[MQTT-4.7.1-2] '+' not a whole level"],
    ["a/+b/c", "[MQTT-4.7.1-2] '+' not a whole level"],
    ["++", "[MQTT-4.7.1-2] '+' twice in a level"],
    ["+#", "[MQTT-4.7.1-1] [MQTT-4.7.1-2] '+' and '#' in one level"],
  ])("'%s' is invalid: %s", (filter) => {
    expect(topicFilterError(filter)).toBeString();
  });

  test("[MQTT-4.7.3-2] a filter containing U+0000 is invalid", () => {
    expect(topicFilterError("a\u0000b")).toBeString();
  });

  test("a filter of 65535 characters is valid, one of 65536 is not", () => {
    expect(topicFilterError("a".repeat(65535))).toBeNull();
    expect(topicFilterError("a".repeat(65536))).toBeString();
  });
});

describe("parseShared (section 4.8.2)", () => {
  test.each([
    ["$share/g/a/b", "g", "a/b"],
    ["$share/g/#", "g", "#"],
    ["$share/g/+/x", "g", "+/x"],
    ["$share/group-1/$SYS/#", "group-1", "$SYS/#"],
    ["$share/g//a", "g", "/a"],
    ["$share/日本/🌍", "日本", "🌍"],
  ])("'%s': share name '%s', filter '%s'", (filter, shareName, rest) => {
    expect(parseShared(filter)).toEqual({ shareName, filter: rest });
  });

  test.each(["a/b", "#", "$SYS/#", "$SHARE/g/a", "share/g/a", "$sharex/g/a", "$share"])("'%s' is not a shared subscription", (filter) => {
    expect(parseShared(filter)).toBeNull();
  });

  test.each([
    ["$share/", "[MQTT-4.8.2-1] no share name"],
    ["$share//a", "[MQTT-4.8.2-1] an empty share name"],
    ["$share/g", "[MQTT-4.8.2-2] no filter after the share name"],
    ["$share/g/", "[MQTT-4.8.2-2] an empty filter after the share name"],
    ["$share/g+/a", "[MQTT-4.8.2-2] '+' in the share name"],
    ["$share/+/a", "[MQTT-4.8.2-2] '+' as the share name"],
    ["$share/#/a", "[MQTT-4.8.2-2] '#' as the share name"],
    ["$share/g#/a", "[MQTT-4.8.2-2] '#' in the share name"],
  ])("'%s' is malformed: %s", (filter) => {
    expect(parseShared(filter)).toBeString();
  });
});
