/**
 * The HTTP endpoint: /metrics moves with a known load, its exposition passes Prometheus' own
 * parser and linter (`promtool check metrics`, Debian's prometheus package), and /livez and
 * /readyz answer while the broker is up.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PacketType } from "../../lib/codec";
import { Broker, type BrokerInit } from "../../lib/broker/broker";
import { BrokerThread } from "../../lib/thread/broker-thread";
import { finished, publishPacket, rawSubscribe, RawClient, roundTrip } from "./helpers";

const running: (Broker | BrokerThread)[] = [];
afterEach(async () => {
  for (const b of running.splice(0)) await b.stop();
});

/** Path of promtool; throws (never skips) when it is not installed. */
function promtool(): string {
  const path = Bun.which("promtool");
  if (path === null) throw new Error("promtool is not installed: the metrics tests need Debian's prometheus package (apt-get install prometheus)");
  return path;
}

/** Scrapes /metrics, checks it with promtool, and returns its samples by `name{labels}` (labels sorted). */
async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  const text = await res.text();
  const proc = Bun.spawn([promtool(), "check", "metrics"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  proc.stdin.write(text);
  proc.stdin.end();
  const check = await finished(proc as unknown as Parameters<typeof finished>[0]);
  expect(`${check.stdout}${check.stderr}`.trim()).toBe(""); // parses, and no lint problem (naming, units, _total)
  expect(check.code).toBe(0);
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const labels = (m[2] ?? "").split(/,(?=[a-z_]+=")/).filter((l) => l !== "").sort().join(",");
    samples.set(labels === "" ? m[1]! : `${m[1]}{${labels}}`, Number(m[3]));
  }
  return samples;
}

/** A broker with the HTTP endpoint on a free port. */
async function withHttp(options: BrokerInit = {}): Promise<{ broker: Broker; port: number; http: number }> {
  const broker = new Broker([["127.0.0.1", 0]], { http: { host: "127.0.0.1", port: 0 }, sysIntervalMs: 0, ...options });
  running.push(broker);
  const [port] = await broker.start();
  return { broker, port: port!, http: broker.httpPort! };
}

describe("/metrics", () => {
  test("moves with a known load: messages in and out by QoS, connections by protocol, sessions, subscriptions, drops, CONNACKs and disconnects", async () => {
    const { port, http } = await withHttp();
    const before = await scrape(http);
    expect(before.get("mqtttools_build_info{version=\"0.1.0\"}")).toBe(1);

    const sub = await RawClient.connect(port, { clientId: "m-sub" });
    await rawSubscribe(sub, "m/#", 1);
    const old = await RawClient.connect(port, { clientId: "m-old", protocolVersion: 4 });
    const pub = await RawClient.connect(port, { clientId: "m-pub" });
    for (let i = 1; i <= 100; i++) pub.send(publishPacket("m/q1", `q1 ${i}`, { qos: 1, packetId: i }));
    for (let i = 1; i <= 50; i++) pub.send(publishPacket("m/q0", `q0 ${i}`));
    for (let i = 1; i <= 7; i++) pub.send(publishPacket("nobody/listens", "x"));
    await roundTrip(pub);
    const got: number[] = [];
    while (got.length < 150) {
      const p = await sub.next(PacketType.PUBLISH);
      if (p.type === PacketType.PUBLISH && p.qos === 1) sub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
      got.push(1);
    }
    await roundTrip(sub);

    const after = await scrape(http);
    const grew = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(grew('mqtttools_messages_received_total{qos="1"}')).toBe(100);
    expect(grew('mqtttools_messages_received_total{qos="0"}')).toBe(57);
    expect(grew('mqtttools_messages_sent_total{qos="1"}')).toBe(100);
    expect(grew('mqtttools_messages_sent_total{qos="0"}')).toBe(50);
    expect(grew('mqtttools_messages_dropped_total{reason="no_subscribers"}')).toBe(7);
    expect(after.get('mqtttools_connections{protocol_version="5",transport="tcp"}')).toBe(2);
    expect(after.get('mqtttools_connections{protocol_version="3.1.1",transport="tcp"}')).toBe(1);
    expect(after.get('mqtttools_sessions{state="online"}')).toBe(3);
    expect(after.get('mqtttools_subscriptions{kind="normal"}')).toBe(1);
    expect(grew('mqtttools_connack_total{reason="success"}')).toBe(3);
    expect(grew("mqtttools_bytes_received_total")).toBeGreaterThan(150 * 10);
    expect(grew("mqtttools_bytes_sent_total")).toBeGreaterThan(150 * 10);
    expect(after.get("process_resident_memory_bytes")).toBeGreaterThan(1e6);

    old.end();
    pub.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    await pub.closed.promise;
    await old.closed.promise;
    let last = await scrape(http);
    for (let i = 0; i < 100 && (last.get('mqtttools_disconnects_total{initiator="client",reason="connection_lost"}') ?? 0) < 1; i++) last = await scrape(http);
    expect(last.get('mqtttools_disconnects_total{initiator="client",reason="connection_lost"}')).toBe(1);
    expect(last.get('mqtttools_disconnects_total{initiator="client",reason="success"}')).toBe(1);
    expect(last.get('mqtttools_sessions{state="online"}')).toBe(1);
    sub.end();
  });

  test("an offline session, a shared subscription, a refused password and a session's queue show", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mqtttools-metrics-"));
    try {
      const passwords = `${dir}/passwords`;
      expect((await finished(Bun.spawn(["mosquitto_passwd", "-b", "-c", passwords, "alice", "secret"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }))).code).toBe(0);
      const { port, http } = await withHttp({ passwordFile: passwords });
      const auth = { username: "alice", password: new TextEncoder().encode("secret") };
      const away = await RawClient.connect(port, { clientId: "away", cleanStart: false, properties: { sessionExpiryInterval: 60 }, ...auth });
      await rawSubscribe(away, "queued/t", 1);
      away.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
      await away.closed.promise;
      const worker = await RawClient.connect(port, { clientId: "worker", ...auth });
      await rawSubscribe(worker, "$share/pool/jobs", 1);
      const pub = await RawClient.connect(port, { clientId: "pub", ...auth });
      for (let i = 1; i <= 3; i++) pub.send(publishPacket("queued/t", `q${i}`, { qos: 1, packetId: i }));
      await roundTrip(pub);
      const bad = await RawClient.open(port);
      bad.send({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: "bad", will: null, username: "alice", password: new TextEncoder().encode("wrong"), properties: {} });
      await bad.next(PacketType.CONNACK);
      const m = await scrape(http);
      expect(m.get('mqtttools_sessions{state="offline"}')).toBe(1);
      expect(m.get('mqtttools_subscriptions{kind="shared"}')).toBe(1);
      expect(m.get("mqtttools_queued_messages")).toBe(3);
      expect(m.get("mqtttools_auth_failures_total")).toBe(1);
      expect(m.get('mqtttools_connack_total{reason="bad_user_name_or_password"}')).toBe(1);
      for (const c of [worker, pub, bad]) c.end();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("/metrics with persistence", () => {
  test("mqtttools_persistence_commit_seconds counts the commits a persistent session's QoS 1 messages cause", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mqtttools-metrics-"));
    try {
      const { port, http } = await withHttp({ persistenceFile: join(dir, "broker.db") });
      const before = (await scrape(http)).get("mqtttools_persistence_commit_seconds_count")!;
      const sub = await RawClient.connect(port, { clientId: "durable", cleanStart: false, properties: { sessionExpiryInterval: 60 } });
      await rawSubscribe(sub, "d/t", 1);
      const pub = await RawClient.connect(port, { clientId: "p" });
      for (let i = 1; i <= 20; i++) {
        pub.send(publishPacket("d/t", `m${i}`, { qos: 1, packetId: i }));
        await pub.next(PacketType.PUBACK);
      }
      const after = await scrape(http);
      expect(after.get("mqtttools_persistence_commit_seconds_count")! - before).toBeGreaterThan(0);
      expect(after.get('mqtttools_persistence_commit_seconds_bucket{le="+Inf"}')).toBe(after.get("mqtttools_persistence_commit_seconds_count"));
      expect(after.get("mqtttools_persistence_commit_seconds_sum")).toBeGreaterThan(0);
      sub.end();
      pub.end();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("health", () => {
  test.each(["main thread", "worker thread"])("/livez and /readyz answer while the broker is up (%s), and the endpoint goes with the broker", async (where) => {
    const options: BrokerInit = { http: { host: "127.0.0.1", port: 0 }, sysIntervalMs: 0 };
    const broker = where === "main thread" ? new Broker([["127.0.0.1", 0]], options) : new BrokerThread([["127.0.0.1", 0]], options);
    await broker.start();
    const http = broker.httpPort!;
    expect(http).toBeGreaterThan(0);
    const live = await fetch(`http://127.0.0.1:${http}/livez`);
    expect([live.status, await live.text()]).toEqual([200, "ok\n"]);
    const ready = await fetch(`http://127.0.0.1:${http}/readyz`);
    expect([ready.status, await ready.text()]).toEqual([200, "ready\n"]);
    expect((await fetch(`http://127.0.0.1:${http}/nothing-here`)).status).toBe(404);
    await broker.stop();
    expect(broker.httpPort).toBeNull();
    expect(await fetch(`http://127.0.0.1:${http}/livez`).then(() => "answered", () => "refused")).toBe("refused");
  });

  test("without the http option there is no endpoint", async () => {
    const broker = new Broker([["127.0.0.1", 0]], { sysIntervalMs: 0 });
    running.push(broker);
    await broker.start();
    expect(broker.httpPort).toBeNull();
  });
});
