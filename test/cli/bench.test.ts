/**
 * `mqtttools bench pub|sub|conn` against the project's broker and Mosquitto: the JSON summary
 * checked against what a subscriber of the test counted, the %i/%c topics, and conn's figures.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { expandTopic } from "../../commands/bench";
import { quantile, stampedPayload, stampLatency } from "../../lib/testing";
import { waitUntil } from "../broker/helpers";
import { freePort } from "../client/helpers";
import { BOTH_BROKERS } from "./broker-process";
import { CliProcesses } from "./cli-process";

const cli = new CliProcesses();
afterEach(() => cli.killAll());

test("expandTopic: %i the index, %c the client id, %% a %", () => {
  expect(expandTopic("a/%i/%c/%%", 3, "id_3")).toBe("a/3/id_3/%");
});

test("the stamps: latency from a stamped payload, NaN from one without a stamp", () => {
  const p = stampedPayload(64, 7);
  expect(p.length).toBe(64);
  expect(stampLatency(p)).toBeGreaterThanOrEqual(0);
  expect(stampLatency(p)).toBeLessThan(1000);
  expect(stampLatency(new Uint8Array(12).fill(0x41))).toBeNaN();
  expect(stampLatency(new Uint8Array(4))).toBeNaN();
  expect(quantile([1, 2, 3, 4], 0.5)).toBe(3);
  expect(quantile([], 0.5)).toBeNaN();
});

const brokers = BOTH_BROKERS;

describe.each(brokers)("against %s", (_name, start) => {
  let broker: { port: number; stop: () => Promise<void> };
  let at: string[];
  beforeAll(async () => {
    broker = await start();
    at = ["--host", "127.0.0.1", "--port", String(broker.port)];
  });
  afterAll(() => broker.stop());

  test.each([0, 1, 2])("bench pub --json at QoS %d: sent and received are what a subscriber counted; topics take %%i and %%c", async (qos) => {
    const counter = new Client("127.0.0.1", broker.port, { connectDelays: [] });
    const topics = new Map<string, number>();
    counter.onMessage = (m) => {
      if (m !== null) topics.set(m.topic, (topics.get(m.topic) ?? 0) + 1);
    };
    await counter.start();
    await counter.subscribe("bp/#", { qos: 2 });
    try {
      const r = await cli.run(["bench", "pub", ...at, "-c", "4", "-L", "50", "--interval", "0", "-q", String(qos), "-I", "bp_", "-t", "bp/%i/%c", "--json"]);
      expect(r.code).toBe(0);
      const s = JSON.parse(r.stdout.join("\n"));
      expect(s).toMatchObject({ command: "pub", clients: 4, connected: 4, errors: 0, sent: 200 });
      await waitUntil(() => [...topics.values()].reduce((a, b) => a + b, 0) >= s.sent, "the subscriber counted every message");
      expect(Object.fromEntries(topics)).toEqual({ "bp/1/bp_1": 50, "bp/2/bp_2": 50, "bp/3/bp_3": 50, "bp/4/bp_4": 50 });
      expect(s.received).toBe(200); // its own in-process subscriber: the same count
      expect(s.latencyP50Ms).toBeGreaterThanOrEqual(0);
      expect(s.latencyP99Ms).toBeGreaterThanOrEqual(s.latencyP50Ms);
      expect(s.sentPerSecond).toBeGreaterThan(0);
      expect(r.stderr).toContain("Connecting 4 client(s)");
    } finally {
      await counter.stop();
    }
  });

  test("bench sub counts what arrives at its clients and measures the latency of stamped payloads", async () => {
    const sub = cli.spawn(["bench", "sub", ...at, "-c", "3", "-t", "bs/%i", "-L", "30", "--json"]);
    const pub = new Client("127.0.0.1", broker.port, { connectDelays: [] });
    await pub.start();
    // nothing tells when the subscribers are in: stamped messages go to each topic until the bench has counted 30
    let seq = 0;
    const publishing = setInterval(() => {
      for (let i = 1; i <= 3; i++) void pub.publish(new Message(`bs/${i}`, stampedPayload(32, seq++)));
    }, 10);
    try {
      expect(await sub.exit()).toBe(0);
    } finally {
      clearInterval(publishing);
      await pub.stop();
    }
    const s = JSON.parse(sub.lines.join("\n"));
    expect(s).toMatchObject({ command: "sub", clients: 3, connected: 3, errors: 0, sent: 0 });
    expect(s.received).toBeGreaterThanOrEqual(30);
    expect(s.latencyP50Ms).toBeGreaterThanOrEqual(0);
    expect(s.latencyP50Ms).toBeLessThan(10_000);
  });

  test("bench conn connects -c clients and keeps them for --duration", async () => {
    const r = await cli.run(["bench", "conn", ...at, "-c", "25", "--interval", "1", "-d", "1", "--json"]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout.join("\n"));
    expect(s).toMatchObject({ command: "conn", clients: 25, connected: 25, errors: 0, sent: 0, received: 0 });
    expect(s.seconds).toBeGreaterThanOrEqual(1);
    expect(s.connectP99Ms).toBeGreaterThanOrEqual(s.connectP50Ms);
    // the live lines went to stderr, one a second
    expect(r.stderr).toMatch(/\[ {3}1s\] connected 25\/25 {2}sent 0\/s {2}received 0\/s {2}connect p50/);
  });
});

test("bench with no broker to reach: exit 1 with the reason", async () => {
  const r = await cli.run(["bench", "conn", "--host", "127.0.0.1", "--port", String(freePort()), "-c", "2", "--interval", "0", "-d", "5"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("no client could connect");
});
