/** The MQTT topic <-> NATS subject and KV key mapping (lib/broker/cluster/subject.ts): reversible, and wildcards as MQTT means them. */
import { describe, expect, test } from "bun:test";
import { filterToKeys, filterToSubjects, keyToTopic, subjectToTopic, topicToKey, topicToSubject } from "../../lib/broker/cluster/subject";

const P = "mqtt.c";

const TOPICS = ["a", "a/b/c", "/", "/a", "a/", "a//b", "//", "dot.ted", "sp ace", "tab\there", "%41", "*", ">", "a/*/>", "ünï/cödé", "$SYS/x", "$app", "=", "a=b", "-_"];

describe("topics", () => {
  test.each(TOPICS)("%p maps to a valid subject and key and back", (topic) => {
    for (const kept of [false, true]) {
      const subject = topicToSubject(P, topic, kept);
      expect(subjectToTopic(P, subject)).toBe(topic);
      const tokens = subject.split(".");
      for (const t of tokens) {
        expect(t.length).toBeGreaterThan(0); // no empty token
        expect(/\s/.test(t)).toBe(false);
        expect(t === "*" || t === ">").toBe(false); // never a wildcard
      }
    }
    const key = topicToKey(topic);
    expect(/^[-/_=.A-Za-z0-9]+$/.test(key)).toBe(true);
    expect(key.split(".").every((t) => t.length > 0)).toBe(true);
    expect(keyToTopic(key)).toBe(topic);
  });

  test("different topics never share a subject; QoS 0 and the kept QoS 1/2 subjects differ only in the root's case", () => {
    const subjects = new Set(TOPICS.flatMap((t) => [topicToSubject(P, t), topicToSubject(P, t, true)]));
    expect(subjects.size).toBe(TOPICS.length * 2);
    expect(topicToSubject(P, "a/b", true)).toBe("mqtt.c.T.a.b");
    expect(topicToSubject(P, "$SYS/x", true)).toBe("mqtt.c.S.$SYS.x");
  });
});

describe("filters [MQTT-4.7.1-2] [MQTT-4.7.2-1]", () => {
  test.each([
    ["#", ["mqtt.c.t.>", "mqtt.c.T.>"]],
    ["a/#", ["mqtt.c.t.a.>", "mqtt.c.t.a", "mqtt.c.T.a.>", "mqtt.c.T.a"]],
    ["+/b", ["mqtt.c.t.*.b", "mqtt.c.T.*.b"]],
    ["+", ["mqtt.c.t.*", "mqtt.c.T.*"]],
    ["$SYS/#", ["mqtt.c.s.$SYS.>", "mqtt.c.s.$SYS", "mqtt.c.S.$SYS.>", "mqtt.c.S.$SYS"]],
    ["a//+", ["mqtt.c.t.a.%.*", "mqtt.c.T.a.%.*"]],
    ["a.b/ c", ["mqtt.c.t.a%2Eb.%20c", "mqtt.c.T.a%2Eb.%20c"]],
  ])("%p takes the subjects %p (QoS 0, then kept)", (filter, subjects) => {
    expect(filterToSubjects(P, filter)).toEqual(subjects);
  });

  test("a $-topic is not under the root '#' and '+' cover", () => {
    expect(topicToSubject(P, "$SYS/x").startsWith("mqtt.c.s.")).toBe(true);
    expect(topicToSubject(P, "x/$SYS").startsWith("mqtt.c.t.")).toBe(true);
  });

  test("retained keys follow the same wildcards", () => {
    expect(filterToKeys("a/#")).toEqual(["t.a.>", "t.a"]);
    expect(filterToKeys("+/b c")).toEqual(["t.*.b=20c"]);
  });
});
