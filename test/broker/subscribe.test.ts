/**
 * SUBSCRIBE and UNSUBSCRIBE as raw conversations with a broker on port 0: wildcard delivery,
 * SUBACK reason codes, '$' topics, overlapping subscriptions and their identifiers, replacing a
 * subscription, UNSUBACK, and the No Local and Retain As Published options.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { PacketType, type PublishPacket, type QoS, type UnsubackPacket } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { topicMatches } from "../../lib/topic/match";
import { leaveOffline, nextPublish, publishPacket, rawSubscribe, RawHarness, settle, subscribeAll, subscription, takePublishes, text, type RawClient } from "./helpers";

let h: RawHarness | null = null;
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

/** Publishes one QoS 0 message per topic from `pub`, then settles `pub` and `subs`. */
async function publishAll(pub: RawClient, topics: string[], subs: RawClient[]): Promise<void> {
  for (const t of topics) pub.send(publishPacket(t, t));
  await settle(pub, ...subs);
}

/** Topics of the PUBLISH packets `c` received since the last call, in order. */
const topicsOf = (c: RawClient): string[] => takePublishes(c).map((p) => text(p.topic));

/** Sends UNSUBSCRIBE and waits for its UNSUBACK. */
async function unsubscribe(c: RawClient, filters: string[], packetId = 2): Promise<UnsubackPacket> {
  c.send({ type: PacketType.UNSUBSCRIBE, packetId, topicFilters: filters, properties: {} });
  return (await c.next(PacketType.UNSUBACK, (p) => p.type === PacketType.UNSUBACK && p.packetId === packetId)) as UnsubackPacket;
}

describe("wildcards", () => {
  test.each([5, 4] as const)("v%d: '+' matches one level and '#' any number, the parent included [MQTT-4.7.1-1] [MQTT-4.7.1-2]", async (version) => {
    const h = await start();
    const plus = await h.connect({ protocolVersion: version, clientId: "plus" });
    const hash = await h.connect({ protocolVersion: version, clientId: "hash" });
    const exact = await h.connect({ protocolVersion: version, clientId: "exact" });
    await rawSubscribe(plus, "sport/+/player", 0);
    await rawSubscribe(hash, "sport/#", 0);
    await rawSubscribe(exact, "sport/tennis/player", 0);
    const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
    await publishAll(pub, ["sport", "sport/tennis/player", "sport/golf/player", "sport/tennis/player/ranking", "sport//player", "sports/x", "other"], [plus, hash, exact]);
    expect(topicsOf(plus)).toEqual(["sport/tennis/player", "sport/golf/player", "sport//player"]);
    expect(topicsOf(hash)).toEqual(["sport", "sport/tennis/player", "sport/golf/player", "sport/tennis/player/ranking", "sport//player"]);
    expect(topicsOf(exact)).toEqual(["sport/tennis/player"]);
  });

  test("[MQTT-4.7.2-1] topics starting with '$' are not matched by '#' or '+/...', but are by filters that name the '$' level", async () => {
    const h = await start();
    const hash = await h.connect({ clientId: "hash" });
    const plus = await h.connect({ clientId: "plus" });
    const dollar = await h.connect({ clientId: "dollar" });
    await rawSubscribe(hash, "#", 0);
    await rawSubscribe(plus, "+/info", 0);
    expect((await subscribeAll(dollar, [subscription("$app/#"), subscription("$app/+")])).reasonCodes).toEqual([0, 0]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, ["$app/info", "app/info"], [hash, plus, dollar]);
    expect(topicsOf(hash)).toEqual(["app/info"]);
    expect(topicsOf(plus)).toEqual(["app/info"]);
    expect(topicsOf(dollar)).toEqual(["$app/info"]); // once, for two matching subscriptions
  });
});

describe("SUBACK", () => {
  const filters: [string, QoS][] = [
    ["ok/+", 1],
    ["a/#/b", 2],
    ["ok/#", 2],
    ["a+", 0],
    ["ok/exact", 0],
    ["#/a", 1],
    ["a/b#", 1],
  ];

  test.each([
    [5, "0x8F", 0x8f],
    [4, "0x80", 0x80],
  ] as const)("v%d: one reason code per filter, in order [MQTT-3.9.3-1], with the same packet identifier [MQTT-3.8.4-2]; invalid filters get %s", async (version, _name, failure) => {
    const h = await start();
    const c = await h.connect({ protocolVersion: version, clientId: "c" });
    const ack = await subscribeAll(c, filters.map(([f, qos]) => subscription(f, { qos })), 42);
    expect(ack.packetId).toBe(42);
    expect(ack.reasonCodes).toEqual([1, failure, 2, failure, 0, failure, failure]);
    // the valid ones are in force, the invalid ones are not
    const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
    await publishAll(pub, ["ok/exact", "a/x/b"], [c]);
    expect(topicsOf(c)).toEqual(["ok/exact"]);
    expect(c.isClosed).toBe(false);
  });

  test("sharedSubscriptionAvailable false: v5 gets 0x9E for a shared subscription, 0x8F for a malformed one; 3.1.1 gets 0x80 for both", async () => {
    const h = await start({ sharedSubscriptionAvailable: false });
    const v5 = await h.connect({ clientId: "v5" });
    expect((await subscribeAll(v5, [subscription("$share/g/a"), subscription("$share//a"), subscription("x")])).reasonCodes).toEqual([0x9e, 0x8f, 0]);
    const v4 = await h.connect({ protocolVersion: 4, clientId: "v4" });
    expect((await subscribeAll(v4, [subscription("$share/g/a"), subscription("$share//a"), subscription("x")])).reasonCodes).toEqual([0x80, 0x80, 0]);
  });
});

describe("overlapping subscriptions of one client", () => {
  test.each([5, 4] as const)("v%d: a message matching several subscriptions is delivered once, at the highest granted QoS [MQTT-3.3.4-2]", async (version) => {
    const h = await start();
    const c = await h.connect({ protocolVersion: version, clientId: "c" });
    await subscribeAll(c, [subscription("o/+", { qos: 0 }), subscription("o/#", { qos: 2 }), subscription("o/x", { qos: 1 })]);
    const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
    pub.send(publishPacket("o/x", "once", { qos: 2, packetId: 1 }));
    await settle(pub, c);
    const got = takePublishes(c);
    expect(got.map((p) => [text(p.topic), p.qos])).toEqual([["o/x", 2]]);
  });

  test("v5: the one delivery carries the identifier of every matching subscription that has one [MQTT-3.3.4-3]", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    await subscribeAll(c, [subscription("o/+", { qos: 1 })], 1, { subscriptionIdentifiers: [11] });
    await subscribeAll(c, [subscription("o/#", { qos: 0 })], 2, { subscriptionIdentifiers: [268435455] });
    await subscribeAll(c, [subscription("o/x", { qos: 2 })], 3); // no identifier
    await subscribeAll(c, [subscription("o/y", { qos: 2 })], 4, { subscriptionIdentifiers: [5] }); // does not match
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("o/x", "m", { qos: 1, packetId: 1 }));
    await settle(pub, c);
    const got = takePublishes(c);
    expect(got.length).toBe(1);
    expect(got[0]!.qos).toBe(1);
    expect([...(got[0]!.properties.subscriptionIdentifiers ?? [])].sort((a, b) => a - b)).toEqual([11, 268435455]);
  });

  test("v5: a single matching subscription's identifier comes with the message; one without an identifier adds none", async () => {
    const h = await start();
    const withId = await h.connect({ clientId: "with-id" });
    const withoutId = await h.connect({ clientId: "without-id" });
    await subscribeAll(withId, [subscription("i/+")], 1, { subscriptionIdentifiers: [300] });
    await subscribeAll(withoutId, [subscription("i/+")]);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("i/x", "m"));
    expect((await nextPublish(withId, "i/x")).properties.subscriptionIdentifiers).toEqual([300]);
    expect((await nextPublish(withoutId, "i/x")).properties.subscriptionIdentifiers).toBeUndefined();
  });
});

describe("replacing a subscription", () => {
  test.each([5, 4] as const)("v%d: subscribing to the same filter again replaces the subscription: its QoS applies and there is still one delivery [MQTT-3.8.4-3]", async (version) => {
    const h = await start();
    const c = await h.connect({ protocolVersion: version, clientId: "c" });
    expect(await rawSubscribe(c, "r/x", 2, 1)).toBe(2);
    expect(await rawSubscribe(c, "r/x", 0, 2)).toBe(0);
    const pub = await h.connect({ protocolVersion: version, clientId: "pub" });
    pub.send(publishPacket("r/x", "m", { qos: 2, packetId: 1 }));
    await settle(pub, c);
    expect(takePublishes(c).map((p) => p.qos)).toEqual([0]);
  });

  test("v5: the replacing subscription's options and identifier replace the old ones [MQTT-3.8.4-3]", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    await subscribeAll(c, [subscription("r/x", { qos: 1, noLocal: true })], 1, { subscriptionIdentifiers: [1] });
    await subscribeAll(c, [subscription("r/x", { qos: 1 })], 2, { subscriptionIdentifiers: [2] });
    c.send(publishPacket("r/x", "own message", { qos: 1, packetId: 1 }));
    const p = await nextPublish(c, "r/x"); // No Local was replaced too
    expect(p.properties.subscriptionIdentifiers).toEqual([2]);
    await subscribeAll(c, [subscription("r/x", { qos: 1 })], 3); // and now none
    c.send(publishPacket("r/x", "again", { qos: 0 }));
    expect((await nextPublish(c, "r/x")).properties.subscriptionIdentifiers).toBeUndefined();
  });
});

describe("UNSUBSCRIBE", () => {
  test("v5: UNSUBACK carries 0x00 for a removed subscription and 0x11 for none, in order [MQTT-3.11.3-1] [MQTT-3.10.4-5]; nothing more is delivered for it [MQTT-3.10.4-2]", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    await subscribeAll(c, [subscription("u/a"), subscription("u/+")]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, ["u/a"], [c]);
    expect(topicsOf(c)).toEqual(["u/a"]);
    const ack = await unsubscribe(c, ["u/a", "u/none", "u/+", "u/a"], 9);
    expect(ack.packetId).toBe(9);
    expect(ack.reasonCodes).toEqual([0x00, 0x11, 0x00, 0x11]);
    await publishAll(pub, ["u/a", "u/b"], [c]);
    expect(topicsOf(c)).toEqual([]);
  });

  test("3.1.1: UNSUBACK has no reason codes, and nothing more is delivered [MQTT-3.10.4-2]", async () => {
    const h = await start();
    const c = await h.connect({ protocolVersion: 4, clientId: "c" });
    await rawSubscribe(c, "u/a", 1);
    const ack = await unsubscribe(c, ["u/a", "u/none"], 3);
    expect(ack.packetId).toBe(3);
    expect(ack.reasonCodes).toEqual([]);
    const pub = await h.connect({ protocolVersion: 4, clientId: "pub" });
    await publishAll(pub, ["u/a"], [c]);
    expect(topicsOf(c)).toEqual([]);
  });

  test("[MQTT-3.10.4-1] filters are compared character by character: unsubscribing 'u/+' leaves 'u/a' in place", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    await subscribeAll(c, [subscription("u/a")]);
    expect((await unsubscribe(c, ["u/+", "u/#"])).reasonCodes).toEqual([0x11, 0x11]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, ["u/a"], [c]);
    expect(topicsOf(c)).toEqual(["u/a"]);
  });

  test("unsubscribing one client leaves another's subscription to the same filter in place", async () => {
    const h = await start();
    const a = await h.connect({ clientId: "a" });
    const b = await h.connect({ clientId: "b" });
    await rawSubscribe(a, "shared/topic", 0);
    await rawSubscribe(b, "shared/topic", 0);
    await unsubscribe(a, ["shared/topic"]);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, ["shared/topic"], [a, b]);
    expect(topicsOf(a)).toEqual([]);
    expect(topicsOf(b)).toEqual(["shared/topic"]);
  });
});

describe("subscription options", () => {
  test("[MQTT-3.8.3-3] No Local: a client's own messages are not sent back to it, other subscribers get them", async () => {
    const h = await start();
    const self = await h.connect({ clientId: "self" });
    const other = await h.connect({ clientId: "other" });
    await subscribeAll(self, [subscription("nl/x", { qos: 1, noLocal: true })]);
    await rawSubscribe(other, "nl/x", 1);
    self.send(publishPacket("nl/x", "mine", { qos: 1, packetId: 1 }));
    await self.next(PacketType.PUBACK);
    expect(text((await nextPublish(other, "nl/x")).payload)).toBe("mine");
    other.send(publishPacket("nl/x", "theirs"));
    expect(text((await nextPublish(self, "nl/x")).payload)).toBe("theirs");
    await settle(self, other);
    expect(takePublishes(self)).toEqual([]);
  });

  test("[MQTT-3.8.3-3] No Local on one of two overlapping subscriptions: the other one still delivers the client's own message", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    await subscribeAll(c, [subscription("nl/+", { qos: 1, noLocal: true }), subscription("nl/#", { qos: 0 })]);
    c.send(publishPacket("nl/x", "mine", { qos: 1, packetId: 1 }));
    const p = await nextPublish(c, "nl/x");
    expect(p.qos).toBe(0); // only the subscription without No Local counts
    await settle(c);
    expect(takePublishes(c)).toEqual([]);
  });

  test.each([
    [true, true],
    [false, false],
  ])("Retain As Published %p: a live retained message is forwarded with RETAIN %p [MQTT-3.3.1-12] [MQTT-3.3.1-13]", async (retainAsPublished, expected) => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    await subscribeAll(c, [subscription("rap/x", { qos: 1, retainAsPublished })]);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("rap/x", "retained", { qos: 1, packetId: 1, retain: true }));
    pub.send(publishPacket("rap/x", "not retained", { qos: 1, packetId: 2 }));
    const got: PublishPacket[] = [await nextPublish(c, "rap/x"), await nextPublish(c, "rap/x")];
    expect(got.map((p) => [text(p.payload), p.retain])).toEqual([
      ["retained", expected],
      ["not retained", false],
    ]);
  });
});

describe.each([
  ["matched by their bytes (no string, no cache)", {}],
  ["matched as strings, the match cache set aside (a denied filter reads them)", { deniedTopicFilters: ["secret/#"] }],
] as [string, BrokerInit][])("many distinct topics, %s", (_, options) => {
  test("after 25 000 topics seen once each, subscribing and unsubscribing still change who gets what at once", async () => {
    const h = await start(options);
    const router = h.broker.router as unknown as { cacheBypass: number; matchCache: Map<string, unknown> };
    const wide = await h.connect({ clientId: "wide" });
    const narrow = await h.connect({ clientId: "narrow" });
    const pub = await h.connect({ clientId: "pub" });
    await rawSubscribe(wide, "dev/+/state", 0);
    const topics = Array.from({ length: 25_000 }, (_, i) => `dev/${i}/state`);
    for (let i = 0; i < topics.length; i += 1000) await publishAll(pub, topics.slice(i, i + 1000), [wide]);
    expect(takePublishes(wide).length).toBe(topics.length);
    if (options.deniedTopicFilters === undefined) {
      expect(router.matchCache.size).toBe(0); // no topic went through the string path
    } else {
      // topics that do not come back filled the cache: it is set aside for a while
      expect(router.cacheBypass).toBeGreaterThan(0);
    }
    await rawSubscribe(narrow, "dev/7/state", 0);
    await publishAll(pub, ["dev/7/state", "dev/8/state"], [wide, narrow]);
    expect(topicsOf(wide)).toEqual(["dev/7/state", "dev/8/state"]);
    expect(topicsOf(narrow)).toEqual(["dev/7/state"]);
    expect((await unsubscribe(wide, ["dev/+/state"])).reasonCodes).toEqual([0]);
    await publishAll(pub, ["dev/7/state", "dev/9/state"], [wide, narrow]);
    expect(topicsOf(wide)).toEqual([]);
    expect(topicsOf(narrow)).toEqual(["dev/7/state"]);
  });
});

describe("a publisher's topics of one length, written over the bytes of the one before (no copy) unless a message holds them", () => {
  test("messages queued for an offline session keep their topics while the topics that follow, forwarded as they came, are written over each other", async () => {
    const h = await start();
    const offline = await leaveOffline(h, "offline", "k/+", 1);
    const online = await h.connect({ clientId: "online" });
    await rawSubscribe(online, "k/+", 0);
    const pub = await h.connect({ clientId: "pub" });
    const sent: [string, 0 | 1][] = [["k/a", 1], ["k/b", 0], ["k/c", 0], ["k/d", 1], ["k/e", 1], ["k/f", 0], ["k/g", 0], ["k/h", 1]];
    for (const [i, [t, qos]] of sent.entries()) pub.send(publishPacket(t, `${t}!`, qos === 1 ? { qos, packetId: i + 1 } : {}));
    await settle(pub, online);
    expect(takePublishes(online).map((p) => `${text(p.topic)} ${text(p.payload)}`)).toEqual(sent.map(([t]) => `${t} ${t}!`));
    const back = await h.connect(offline);
    const got = await Promise.all(sent.filter(([, q]) => q === 1).map(([t]) => nextPublish(back, t)));
    expect(got.map((p) => `${text(p.topic)} ${text(p.payload)}`)).toEqual(sent.filter(([, q]) => q === 1).map(([t]) => `${t} ${t}!`));
  });

  test("topics that are not ASCII are copied, never written over: a subscription to one of them gets it", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "c" });
    await rawSubscribe(c, "é/b", 0);
    const pub = await h.connect({ clientId: "pub" });
    await publishAll(pub, ["é/a", "é/b", "é/c", "é/b"], [c]);
    expect(topicsOf(c)).toEqual(["é/b", "é/b"]);
  });

  test.each([
    ["a wildcard over the device level", ["dev/+/state"]],
    ["a wildcard and one device", ["dev/+/state", "dev/7/state"]],
    ["one device only", ["dev/7/state"]],
    ["a level further on read", ["+/+/state"]],
  ] as const)("%s: each topic reaches exactly its subscribers, the matches of one topic kept for the next only where they hold", async (_, filters) => {
    const h = await start();
    const subs: RawClient[] = [];
    for (const [i, f] of filters.entries()) {
      const c = await h.connect({ clientId: `s${i}` });
      await rawSubscribe(c, f, 0);
      subs.push(c);
    }
    const pub = await h.connect({ clientId: "pub" });
    // one length throughout: device ids, a level of another name, the levels moved
    const topics = ["dev/1/state", "dev/7/state", "dev/8/state", "dev/7/statx", "dev/7/state", "deu/7/state", "dev/7/state", "dev7//state", "dev/7/state", "dev/9/state"];
    await publishAll(pub, topics, subs);
    filters.forEach((f, i) => expect({ filter: f, got: topicsOf(subs[i]!) }).toEqual({ filter: f, got: topics.filter((t) => topicMatches(f, t)) }));
  });
});
