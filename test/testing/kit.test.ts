/**
 * mqtttools/testing: testBroker() and testClient() stop with their `await using` scope, in-process
 * and in a Worker; measurePublishes() counts what subscribers received, against our broker and
 * against Mosquitto.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measurePublishes, testBroker, testClient } from "../../lib/testing";
import { Message } from "../../lib/client/message";
import { accepts, startMosquitto } from "../client/helpers";

describe.each([false, true])("testBroker({ thread: %p }) and testClient()", (thread) => {
  test("serve a round trip and stop at the end of their scope", async () => {
    let port = 0;
    let client;
    {
      await using broker = await testBroker({ thread });
      port = broker.port;
      expect(broker.url).toBe(`mqtt://127.0.0.1:${port}`);
      await using c = await testClient(broker);
      client = c;
      await c.subscribe("kit/t", { qos: 1 });
      await c.publish(new Message("kit/t", "through the kit", { qos: 1 }));
      expect((await c.messages.get())?.text).toBe("through the kit");
      expect(await accepts(port)).toBe(true);
    }
    expect(client.isConnected).toBe(false);
    expect(await accepts(port)).toBe(false);
  });
});

describe("measurePublishes", () => {
  test.each([0, 1, 2] as const)("QoS %i against our broker: every message sent is received by each of 2 subscribers, with latencies", async (qos) => {
    await using broker = await testBroker();
    const r = await measurePublishes({ url: broker.url, topic: "kit/load", count: 5000, qos, subscribers: 2 });
    expect(r.sent).toBe(5000);
    expect(r.received).toBe(10_000);
    expect(r.rate).toBeGreaterThan(0);
    expect(r.p50Ms).toBeGreaterThanOrEqual(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
  });

  test("it counts what arrived, not what was sent: a topic its clients may write but not read gives received 0", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mqtttools-kit-"));
    try {
      writeFileSync(join(dir, "acl"), "topic write blocked/#\n"); // subscriptions are granted, deliveries withheld
      await using broker = await testBroker({ aclFile: join(dir, "acl") });
      const r = await measurePublishes({ url: broker.url, topic: "blocked/t", count: 100, qos: 1, stallMs: 200 });
      expect(r.sent).toBe(100);
      expect(r.received).toBe(0);
      expect(r.p50Ms).toBeNaN();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("with a started client of the caller's, and no subscribers: the rate of what was sent; progress reported", async () => {
    await using broker = await testBroker();
    await using client = await testClient(broker);
    const seen: number[] = [];
    const r = await measurePublishes({ client, topic: "kit/solo", count: 2000, qos: 1, subscribers: 0, onProgress: (n) => seen.push(n) });
    expect(r).toMatchObject({ sent: 2000, received: 0 });
    expect(r.rate).toBeCloseTo(2000 / r.seconds);
    expect(seen.at(-1)).toBe(2000);
    expect(client.isConnected).toBe(true); // the caller's client is left as it was
  });

  test("against Mosquitto: QoS 1, 3000 messages to 2 subscribers, none lost", async () => {
    const mosquitto = await startMosquitto();
    try {
      const r = await measurePublishes({ url: `mqtt://127.0.0.1:${mosquitto.port}`, topic: "kit/mosquitto", count: 3000, qos: 1, subscribers: 2, size: 64 });
      expect(r).toMatchObject({ sent: 3000, received: 6000 });
    } finally {
      await mosquitto.stop();
    }
  });
});
