/**
 * The bounds on state one client can make (issue 19), each with its reason code at both protocol
 * levels: maxRetainedMessages and maxRetainedBytes (a new retained topic: v5 PUBACK/PUBREC 0x97;
 * QoS 0 and 3.1.1 dropped and logged), maxSubscriptionsPerClient (SUBACK 0x97 / 0x80) and
 * maxTopicLevels (PUBLISH 0x90, SUBSCRIBE 0x8F / 0x80).
 */
import { describe, expect, test } from "bun:test";
import { PacketType, ReasonCode, type PubackPacket, type PubrecPacket, type QoS } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { publishPacket, rawSubscribe, settle, subscribeAll, subscription, takePublishes, text, useHarness, type RawClient } from "./helpers";

const { start } = useHarness();

/** A broker with `options` whose log lines are kept, a subscriber on '#' and a publisher at `version`. */
async function setUp(options: BrokerInit, version: 4 | 5) {
  const log: string[] = [];
  const h = await start({ ...options, logLevel: "warning", logger: (l) => log.push(l) });
  const sub = await h.connect({ clientId: "sub" });
  await rawSubscribe(sub, "#", 2);
  const pub = await h.connect({ clientId: "pub", protocolVersion: version });
  return { h, log, sub, pub };
}

/** Publishes one message and waits for its acknowledgement (QoS 1: PUBACK, QoS 2: PUBREC), or for a round trip at QoS 0; resolves with the reason code (0 for QoS 0 and 3.1.1). */
async function publish(pub: RawClient, topic: string, qos: QoS, retain: boolean, packetId: number, payload = "v"): Promise<number> {
  pub.send(publishPacket(topic, payload, { qos, retain, packetId: qos > 0 ? packetId : 0 }));
  if (qos === 0) {
    await settle(pub);
    return 0;
  }
  const ack = (await pub.next(qos === 1 ? PacketType.PUBACK : PacketType.PUBREC)) as PubackPacket | PubrecPacket;
  return ack.reasonCode;
}

/** The retained topics but the broker's own. */
const clientTopics = (h: { broker: { retained: { topics(): Iterable<string> } } }): string[] => [...h.broker.retained.topics()].filter((t) => !t.startsWith("$")).sort();

/** The topics `sub` has received since the last call. */
async function delivered(sub: RawClient, pub: RawClient): Promise<string[]> {
  await settle(pub, sub);
  return takePublishes(sub).map((p) => text(p.topic));
}

for (const version of [5, 4] as const) {
  const level = version === 5 ? "v5" : "3.1.1";
  describe(`retained bounds (${level})`, () => {
    test(`maxRetainedMessages: a new retained topic past it is refused (${version === 5 ? "0x97" : "acknowledged"}), not delivered, and logged; a retained topic is still replaced and cleared; a plain message still goes`, async () => {
      const { h, log, sub, pub } = await setUp({ maxRetainedMessages: 2 }, version);
      expect(await publish(pub, "r/1", 1, true, 1)).toBe(0);
      expect(await publish(pub, "r/2", 1, true, 2)).toBe(0);
      expect(await delivered(sub, pub)).toEqual(["r/1", "r/2"]);
      const refused = version === 5 ? ReasonCode.QuotaExceeded : 0;
      expect(await publish(pub, "r/3", 1, true, 3)).toBe(refused);
      expect(await publish(pub, "r/4", 2, true, 4)).toBe(refused);
      expect(await publish(pub, "r/5", 0, true, 0)).toBe(0);
      expect(await delivered(sub, pub)).toEqual([]);
      expect(log.filter((l) => l.includes("maxRetainedMessages (2)")).length).toBe(3);
      expect(clientTopics(h)).toEqual(["r/1", "r/2"]); // the broker's own $SYS topics are not counted
      expect(await publish(pub, "r/1", 1, true, 5, "new")).toBe(0);
      expect(await publish(pub, "plain", 1, false, 6)).toBe(0);
      expect(await delivered(sub, pub)).toEqual(["r/1", "plain"]);
      expect(text(h.broker.retained.get("r/1")!.payload)).toBe("new");
      expect(await publish(pub, "r/2", 1, true, 7, "")).toBe(0); // clearing frees a place
      expect(await publish(pub, "r/3", 1, true, 8)).toBe(0);
      expect(clientTopics(h)).toEqual(["r/1", "r/3"]);
    });

    test(`maxRetainedBytes: a new retained topic whose topic and payload bytes would pass it is refused (${version === 5 ? "0x97" : "acknowledged"})`, async () => {
      const { h, log, sub, pub } = await setUp({ maxRetainedBytes: 20 }, version);
      expect(await publish(pub, "b/1", 1, true, 1, "1234567890")).toBe(0); // 3 + 10
      expect(await publish(pub, "b/2", 2, true, 2, "1234")).toBe(0); // 3 + 4: 20 fits
      expect(await publish(pub, "b/3", 1, true, 3, "1")).toBe(version === 5 ? ReasonCode.QuotaExceeded : 0); // 3 + 1: 24 > 20
      expect(await delivered(sub, pub)).toEqual(["b/1", "b/2"]);
      expect(log.filter((l) => l.includes("maxRetainedBytes (20)")).length).toBe(1);
      expect(await publish(pub, "b/1", 1, true, 4, "12345678901234")).toBe(0); // a replacement is not refused
      expect(await publish(pub, "b/1", 1, true, 5, "")).toBe(0);
      expect(await publish(pub, "b/3", 1, true, 6, "1")).toBe(0);
      expect(clientTopics(h)).toEqual(["b/2", "b/3"]);
    });
  });

  describe(`maxSubscriptionsPerClient and maxTopicLevels (${level})`, () => {
    test(`SUBACK refuses the filters past maxSubscriptionsPerClient with ${version === 5 ? "0x97" : "0x80"}; a filter it holds may be subscribed again; an unsubscribe frees a place`, async () => {
      const h = await start({ maxSubscriptionsPerClient: 2 });
      const c = await h.connect({ clientId: "many", protocolVersion: version });
      const refused = version === 5 ? ReasonCode.QuotaExceeded : 0x80;
      const ack = await subscribeAll(c, [subscription("a"), subscription("b", { qos: 1 }), subscription("c"), subscription("$share/g/d")]);
      expect(ack.reasonCodes).toEqual([0, 1, refused, refused]);
      expect((await subscribeAll(c, [subscription("a", { qos: 2 }), subscription("c")], 2)).reasonCodes).toEqual([2, refused]);
      c.send({ type: PacketType.UNSUBSCRIBE, packetId: 3, topicFilters: ["b"], properties: {} });
      await c.next(PacketType.UNSUBACK);
      expect((await subscribeAll(c, [subscription("c")], 4)).reasonCodes).toEqual([0]);
      expect([...h.broker.sessions.get("many")!.subscriptions.keys()].sort()).toEqual(["a", "c"]);
    });

    test(`maxTopicLevels: a deeper PUBLISH is refused (${version === 5 ? "0x90" : "acknowledged"}), not delivered nor retained, and logged; a deeper filter gets ${version === 5 ? "0x8F" : "0x80"}`, async () => {
      const { h, log, sub, pub } = await setUp({ maxTopicLevels: 3 }, version);
      expect(await publish(pub, "a/b/c", 1, true, 1)).toBe(0);
      const refused = version === 5 ? ReasonCode.TopicNameInvalid : 0;
      expect(await publish(pub, "a/b/c/d", 1, true, 2)).toBe(refused);
      expect(await publish(pub, "a/b/c/d", 2, false, 3)).toBe(refused); // the same topic again: the connection's cached topic is checked too
      expect(await publish(pub, "é/b/c/d", 1, false, 5)).toBe(refused); // levels counted past a non-ASCII byte
      expect(await publish(pub, "a/b/c/", 0, false, 0)).toBe(0);
      expect(await publish(pub, "a/b/c", 1, false, 4)).toBe(0);
      expect(await delivered(sub, pub)).toEqual(["a/b/c", "a/b/c"]);
      expect(log.filter((l) => l.includes("maxTopicLevels (3)")).length).toBe(4);
      expect(h.broker.retained.has("a/b/c/d")).toBe(false);
      const filters = version === 5 ? ReasonCode.TopicFilterInvalid : 0x80;
      expect((await subscribeAll(pub, [subscription("a/+/c"), subscription("a/+/c/#"), subscription("+/+/+/+"), subscription("$share/g/a/b/c")], 9)).reasonCodes).toEqual([0, filters, filters, 0]);
    });
  });
}
