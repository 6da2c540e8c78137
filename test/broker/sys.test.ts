/**
 * `$SYS/broker/...` topics (sysIntervalMs): retained values Mosquitto users know, refreshed while
 * the broker runs, reaching only subscriptions that name `$SYS` [MQTT-4.7.2-1].
 */
import { describe, expect, test } from "bun:test";
import pkg from "../../package.json" with { type: "json" };
import { finished, nextPublish, publishPacket, rawSubscribe, settle, takePublishes, text, useHarness, waitUntil, type RawClient } from "./helpers";

const { start, peers } = useHarness();

/** The latest value each `$SYS` topic has shown a client, by topic. */
function latest(c: RawClient, seen: Map<string, string>): Map<string, string> {
  for (const p of takePublishes(c)) seen.set(text(p.topic), text(p.payload));
  return seen;
}

describe("$SYS topics", () => {
  test("a subscriber to $SYS/# gets the retained values at once, and the counters follow what happens", async () => {
    const h = await start({ sysIntervalMs: 20 });
    const watcher = await h.connect({ clientId: "watcher" });
    await rawSubscribe(watcher, "$SYS/#", 0);
    await settle(watcher);
    const seen = latest(watcher, new Map());
    expect(seen.get("$SYS/broker/version")).toBe(`mqtttools ${pkg.version}`);
    expect(seen.get("$SYS/broker/uptime")).toMatch(/^\d+ seconds$/);
    for (const key of ["clients/connected", "clients/total", "messages/received", "messages/sent", "subscriptions/count", "retained messages/count"]) {
      expect(seen.get(`$SYS/broker/${key}`)).toMatch(/^\d+$/);
    }
    const pub = await h.connect({ clientId: "pub" });
    await rawSubscribe(pub, "a/#", 0);
    for (let i = 0; i < 3; i++) pub.send(publishPacket("a/b", "m"));
    await waitUntil(() => {
      latest(watcher, seen);
      return seen.get("$SYS/broker/clients/connected") === "2" && seen.get("$SYS/broker/messages/received") === "3" && seen.get("$SYS/broker/subscriptions/count") === "2";
    }, "the counters show the second client, its subscription and its 3 messages");
    expect(Number(seen.get("$SYS/broker/messages/sent"))).toBeGreaterThanOrEqual(3);
  });

  test("[MQTT-4.7.2-1] a subscription to '#' does not get them", async () => {
    const h = await start({ sysIntervalMs: 20 });
    const all = await h.connect({ clientId: "all" });
    await rawSubscribe(all, "#", 0);
    const pub = await h.connect({ clientId: "pub" });
    pub.send(publishPacket("marker", "after"));
    expect(text((await nextPublish(all)).topic)).toBe("marker");
    await settle(all);
    expect(takePublishes(all)).toEqual([]);
  });

  test("sysIntervalMs 0: there are none", async () => {
    const h = await start({ sysIntervalMs: 0 });
    const c = await h.connect({ clientId: "c" });
    await rawSubscribe(c, "$SYS/#", 0);
    await settle(c);
    expect(takePublishes(c)).toEqual([]);
    expect([...h.broker.retained.keys()].filter((t) => t.startsWith("$SYS"))).toEqual([]);
  });

  test("mosquitto_sub reads $SYS/broker/clients/connected as it would from Mosquitto", async () => {
    const h = await start({ sysIntervalMs: 20 });
    const got = await finished(peers.mosquitto("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(h.port), "-t", "$SYS/broker/clients/connected", "-C", "1", "-v"]));
    expect(got.code).toBe(0);
    expect(got.stdout).toMatch(/^\$SYS\/broker\/clients\/connected \d+\n$/);
  });
});
