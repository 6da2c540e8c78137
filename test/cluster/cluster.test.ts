/**
 * Scale-out on NATS: broker nodes started as processes (`mqtttools broker --cluster`) on Debian's
 * nats-server with JetStream, and clients of several kinds on different nodes: ours (lib/client),
 * MQTT.js and mosquitto_pub/mosquitto_sub. Counting "no traffic without interest" uses
 * nats-server's own monitoring (/connz). Every process and directory is removed afterwards.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { hostname } from "node:os";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import type { BrokerProcess } from "../cli/broker-process";
import { finished, Peers, waitUntil } from "../broker/helpers";
import { freePort, nextMessage } from "../client/helpers";
import { NatsServer } from "./nats-server";
import { node, ours as oursOn, threeNodes, urlOf, waitFor } from "./nodes";

const peers = new Peers();
const clients: Client[] = [];

/** Our client on a node. */
const ours = (n: BrokerProcess, clientId: string, protocolVersion: 4 | 5 = 5) => oursOn(clients, n, clientId, { protocolVersion });

/** The NATS connection name of a node (its main connection). */
const natsName = (n: BrokerProcess) => `mqtttools mqtt ${hostname()}:${n.proc.pid}`;

/** Waits until nats-server holds a subscription to `subject` from a node's connection. */
async function waitForInterest(nats: NatsServer, n: BrokerProcess, subject: string): Promise<void> {
  await waitUntil(async () => (await nats.subscriptions(natsName(n))).includes(subject), `node ${n.proc.pid} subscribed to ${subject}`, 5_000);
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  await peers.closeAll();
});

describe("three nodes on one nats-server", () => {
  const cluster = threeNodes();
  let nats: NatsServer;
  let a: BrokerProcess, b: BrokerProcess, c: BrokerProcess;
  beforeAll(() => {
    nats = cluster.nats;
    [a, b, c] = cluster.nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
  });

  test.each([0, 1, 2] as const)("cross-node QoS %d: ours on A publishes, MQTT.js on B and mosquitto_sub on C receive at that QoS, once each, in order", async (qos) => {
    const topic = `q${qos}/t`;
    const sub = await peers.mqttjs(urlOf(b), { clientId: `mqttjs-q${qos}`, protocolVersion: 5 });
    await sub.client.subscribeAsync(topic, { qos: 2 });
    const mosq = peers.mosquitto("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(c.ports[0]), "-t", topic, "-q", "2", "-C", "5", "-V", "5", "-i", `mosq-q${qos}`]);
    await waitForInterest(nats, c, `mqtt.mqtt.t.q${qos}.t`); // mosquitto_sub says nothing when subscribed: NATS shows C's interest
    const pub = await ours(a, `pub-q${qos}`);
    const payloads = ["m0", "m1", "m2", "m3", "last"];
    for (const p of payloads) await pub.publish(new Message(topic, p, { qos }));
    const got = await sub.receive(5);
    expect(got.map((m) => m.payload)).toEqual(payloads);
    expect(got.every((m) => m.packet.qos === qos)).toBe(true);
    const { stdout } = await finished(mosq);
    expect(stdout.trim().split("\n")).toEqual(payloads);
  });

  test("wildcards and overlapping subscriptions: one delivery at the highest QoS with every subscription identifier; awkward topics map both ways", async () => {
    const sub = await peers.mqttjs(urlOf(b), { clientId: "overlap", protocolVersion: 5 });
    await sub.client.subscribeAsync("w/+/x", { qos: 1, properties: { subscriptionIdentifier: 1 } });
    await sub.client.subscribeAsync("w/#", { qos: 2, properties: { subscriptionIdentifier: 2 } });
    await sub.client.subscribeAsync("#", { qos: 0, properties: { subscriptionIdentifier: 3 } });
    const pub = await ours(a, "overlap-pub");
    await pub.publish(new Message("w/a/x", "three filters", { qos: 2 }));
    const topics = ["/lead", "a//b", "trail/", "sp ace/dot.ted/%41/*/>", "ünï/cödé", "$app/not-for-hash"];
    for (const t of topics) await pub.publish(new Message(t, t, { qos: 1 }));
    await pub.publish(new Message("w/done", "last", { qos: 1 }));
    await waitUntil(() => sub.inbox.some((m) => m.payload === "last"), "the last message arrived");
    // MQTT.js hands a QoS 2 message over at PUBREL: it may come after later QoS 0 ones
    const first = sub.inbox.find((m) => m.topic === "w/a/x");
    const rest = sub.inbox.filter((m) => m !== first);
    expect(sub.inbox.filter((m) => m.topic === "w/a/x").length).toBe(1);
    expect(first!.packet.qos).toBe(2);
    expect([...(first!.packet.properties?.subscriptionIdentifier as number[])].sort()).toEqual([1, 2, 3]);
    // '$app/...' does not match '#' [MQTT-4.7.2-1]; every other topic arrives once, unchanged
    expect(rest.map((m) => m.topic)).toEqual([...topics.filter((t) => !t.startsWith("$")), "w/done"]);
  });

  test("a $-topic reaches a subscription that names it, across nodes", async () => {
    const sub = await ours(b, "dollar-sub");
    await sub.subscribe("$app/+", { qos: 1 });
    const pub = await ours(a, "dollar-pub");
    await pub.publish(new Message("$app/x", "dollar", { qos: 1 }));
    const m = await nextMessage(sub);
    expect([m.topic, m.text]).toEqual(["$app/x", "dollar"]);
  });

  test("No Local [MQTT-3.8.3-3]: a client's own message is not sent back to it, and the node of another subscriber gets it", async () => {
    const x = await ours(a, "nolocal-x");
    await x.subscribe("nl/t", { qos: 1, noLocal: true });
    const y = await ours(b, "nolocal-y");
    await y.subscribe("nl/t", { qos: 1 });
    await x.publish(new Message("nl/t", "from x", { qos: 1 }));
    await y.publish(new Message("nl/t", "from y", { qos: 1 }));
    expect((await nextMessage(y)).text).toBe("from x"); // y's own subscription has no No Local
    expect((await nextMessage(y)).text).toBe("from y");
    expect((await nextMessage(x)).text).toBe("from y"); // x's own message never came first
  });

  test("3.1.1 and v5 across nodes: mosquitto_pub (3.1.1) on C to MQTT.js v5 on B; ours v5 with properties on A to ours 3.1.1 on B", async () => {
    const v5 = await peers.mqttjs(urlOf(b), { clientId: "v5-sub", protocolVersion: 5 });
    await v5.client.subscribeAsync("ver/#", { qos: 1 });
    const v4 = await ours(b, "v4-sub", 4);
    await v4.subscribe("ver/#", { qos: 1 });
    const { code } = await finished(peers.mosquitto("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(c.ports[0]), "-t", "ver/old", "-m", "3.1.1", "-q", "1", "-V", "mqttv311"]));
    expect(code).toBe(0);
    const pub = await ours(a, "v5-pub");
    await pub.publish(new Message("ver/new", "v5", { qos: 1, userProperties: { k: "v" }, contentType: "text/plain" }));
    const got = await v5.receive(2);
    expect(got.map((m) => [m.topic, m.payload])).toEqual([["ver/old", "3.1.1"], ["ver/new", "v5"]]);
    expect(got[1]!.packet.properties?.userProperties).toEqual({ k: "v" });
    expect(got[1]!.packet.properties?.contentType).toBe("text/plain");
    expect((await nextMessage(v4)).text).toBe("3.1.1");
    expect((await nextMessage(v4)).text).toBe("v5");
  });

  test("retained messages across nodes: set on A, read on B; cleared from C, gone on every node; expiry honoured", async () => {
    const pub = await ours(a, "ret-pub");
    await pub.publish(new Message("ret/a", "kept", { qos: 1, retain: true }));
    await pub.publish(new Message("ret/short", "expires", { qos: 1, retain: true, messageExpiryInterval: 1 }));
    const setAt = Date.now();
    const first = await peers.mqttjs(urlOf(b), { clientId: "ret-1", protocolVersion: 5 });
    await first.client.subscribeAsync("ret/#", { qos: 1 });
    const got = await first.receive(2);
    expect(got.map((m) => [m.topic, m.payload, m.packet.retain]).sort()).toEqual([["ret/a", "kept", true], ["ret/short", "expires", true]]);
    // an empty retained message from C clears it everywhere [MQTT-3.3.1-6]
    const { code } = await finished(peers.mosquitto("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(c.ports[0]), "-t", "ret/a", "-n", "-r", "-q", "1"]));
    expect(code).toBe(0);
    await pub.publish(new Message("ret/marker", "marker", { qos: 1, retain: true }));
    await Bun.sleep(Math.max(0, setAt + 1100 - Date.now())); // the expiry interval itself must pass
    for (const n of [a, b, c]) {
      const s = await ours(n, `ret-later-${n.ports[0]}`);
      await s.subscribe("ret/#", { qos: 1 });
      const m = await nextMessage(s);
      expect([m.topic, m.text, m.retain]).toEqual(["ret/marker", "marker", true]); // neither the cleared nor the expired one
      await s.stop();
    }
    await pub.publish(new Message("ret/marker", "", { qos: 1, retain: true }));
  });

  test("shared subscriptions: members on three nodes, each message to exactly one member across the nodes", async () => {
    const n = 90;
    const m1 = await ours(a, "share-a");
    await m1.subscribe("$share/g/sh/+", { qos: 1 });
    const m2 = await peers.mqttjs(urlOf(b), { clientId: "share-b", protocolVersion: 5 });
    await m2.client.subscribeAsync("$share/g/sh/+", { qos: 1 });
    const m3 = await ours(c, "share-c");
    await m3.subscribe("$share/g/sh/+", { qos: 1 });
    const other = await ours(c, "share-other-group"); // another group gets its own copy
    await other.subscribe("$share/h/sh/+", { qos: 1 });
    const got: string[] = [];
    const perNode = [0, 0, 0];
    m1.onMessage = (m) => m !== null && (got.push(m.text), perNode[0]!++);
    m2.client.on("message", (_t, p) => (got.push(p.toString()), perNode[1]!++));
    m3.onMessage = (m) => m !== null && (got.push(m.text), perNode[2]!++);
    let others = 0;
    other.onMessage = (m) => void (m !== null && others++);
    const pub = await ours(a, "share-pub");
    for (let i = 0; i < n; i++) await pub.publish(new Message(`sh/${i % 3}`, String(i), { qos: 1 }));
    await waitUntil(() => got.length >= n && others >= n, `${n} shared messages arrived (${got.length}, other group ${others})`);
    const total = got.length;
    // a straggler would have to be a duplicate: check on a round trip through every node
    const marker = await ours(b, "share-marker");
    await marker.subscribe("sh/+", { qos: 1 });
    await pub.publish(new Message("sh/end", "end", { qos: 1 }));
    await nextMessage(marker);
    await waitUntil(() => others === n + 1 && got.length === total + 1, "'end' reached both groups");
    expect(got.filter((p) => p !== "end").sort((x, y) => Number(x) - Number(y))).toEqual(Array.from({ length: n }, (_, i) => String(i)));
    expect(perNode.filter((k) => k > 0).length).toBeGreaterThan(1); // spread over nodes, not all on the publisher's
    expect(others).toBe(n + 1);
  });

  test("no traffic without interest: NATS sends a node nothing for topics none of its clients want; local delivery takes no round trip", async () => {
    const sub = await ours(b, "interest-sub");
    await sub.subscribe("quiet/#", { qos: 0 });
    const local = await ours(a, "interest-local");
    await local.subscribe("loud/#", { qos: 0 });
    const before = await nats.connections();
    const pub = await ours(a, "interest-pub");
    const n = 50;
    for (let i = 0; i < n; i++) pub.publish(new Message("quiet/x", String(i)));
    for (let i = 0; i < n; i++) pub.publish(new Message("loud/x", String(i)));
    await pub.publish(new Message("quiet/x", "last", { qos: 1 }));
    const got: string[] = [];
    for (let i = 0; i <= n; i++) got.push((await nextMessage(sub)).text);
    expect(got.at(-1)).toBe("last");
    const localGot: string[] = [];
    for (let i = 0; i < n; i++) localGot.push((await nextMessage(local)).text);
    expect(localGot).toEqual(Array.from({ length: n }, (_, i) => String(i)));
    const after = await nats.connections();
    const delta = (nd: BrokerProcess, k: "in" | "out") => after.get(natsName(nd))![k] - before.get(natsName(nd))![k];
    expect(delta(c, "out")).toBe(0); // C has no interest in quiet/# or loud/#: NATS sent it nothing
    expect(delta(b, "out")).toBe(n + 1); // B got quiet/x once each, and no loud/x
    // A's own messages do not come back to it (its loud/# subscriber was served locally); it gets
    // one JetStream acknowledgement, of the marker that confirmed the QoS 1 message
    expect(delta(a, "out")).toBe(1);
    expect(delta(a, "in")).toBe(2 * n + 1 + 1); // each PUBLISH was published once, and one marker
    // exactly once locally, too: nothing more is on its way to the local subscriber
    await pub.publish(new Message("loud/x", "end", { qos: 1 }));
    expect((await nextMessage(local)).text).toBe("end");
  });

  test("many cores on one host: two nodes share one port (reusePort), and clients on either reach each other", async () => {
    const x = await node([nats.url]);
    const y = await node([nats.url], "-p", String(x.ports[0]));
    try {
      expect(y.ports).toEqual(x.ports);
      const port = x.ports[0]!;
      const subs: Client[] = [];
      for (let i = 0; i < 6; i++) {
        const s = new Client("127.0.0.1", port, { clientId: `rp-sub-${i}`, connectDelays: [], reconnectDelays: [] });
        clients.push(s);
        await s.start();
        await s.subscribe("rp/t", { qos: 1 });
        subs.push(s);
      }
      const pub = new Client("127.0.0.1", port, { clientId: "rp-pub", connectDelays: [], reconnectDelays: [] });
      clients.push(pub);
      await pub.start();
      await pub.publish(new Message("rp/t", "one port", { qos: 1 }));
      for (const s of subs) expect((await nextMessage(s)).text).toBe("one port");
    } finally {
      await Promise.all(clients.splice(0).map((c) => c.stop()));
      await Promise.all([x.stop(), y.stop()]);
    }
  });

  test("one node SIGKILLed: the others keep serving", async () => {
    const doomed = await node([nats.url]);
    const onDoomed = await ours(doomed, "doomed-sub");
    await onDoomed.subscribe("kill/#", { qos: 1 });
    const sub = await ours(c, "survivor-sub");
    await sub.subscribe("kill/#", { qos: 1 });
    const pub = await ours(a, "survivor-pub");
    await pub.publish(new Message("kill/1", "before", { qos: 1 }));
    expect((await nextMessage(sub)).text).toBe("before");
    doomed.proc.kill("SIGKILL");
    await doomed.proc.exited;
    for (let i = 0; i < 20; i++) await pub.publish(new Message("kill/2", String(i), { qos: 1 }));
    for (let i = 0; i < 20; i++) expect((await nextMessage(sub)).text).toBe(String(i));
  });
});

describe("nats-server restarted", () => {
  let nats: NatsServer;
  let a: BrokerProcess, b: BrokerProcess;

  beforeAll(async () => {
    nats = await NatsServer.start();
    [a, b] = await Promise.all([node([nats.url]), node([nats.url])]);
  });

  afterAll(async () => {
    await Promise.all([a, b].map((n) => n?.proc.exitCode === null && n.stop()));
    await nats?.stop();
  });

  test("the nodes reconnect and subscribe again; a QoS 1 PUBACK waits until NATS has the message; what was acknowledged meanwhile is delivered once, in order, and delivery resumes", async () => {
    const sub = await ours(b, "restart-sub");
    const got: string[] = [];
    sub.onMessage = (m) => void (m !== null && got.push(m.text));
    await sub.subscribe("rs/#", { qos: 1 });
    const pub = await ours(a, "restart-pub");
    await pub.publish(new Message("rs/before", "before", { qos: 1 }));
    await waitUntil(() => got.length === 1, "the first message arrived");
    await nats.kill();
    await Promise.all([a.waitStderr(/disconnected from NATS [^\n]*reconnecting\n/), b.waitStderr(/disconnected from NATS [^\n]*reconnecting\n/)]);
    let acked = false;
    const during = pub.publish(new Message("rs/during", "during", { qos: 1 })).then(() => void (acked = true));
    // the node has it, NATS does not: no PUBACK yet (a round trip of the client's own proves the broker read it)
    await pub.subscribe("rs-probe", { qos: 0 }).catch(() => {});
    expect(acked).toBe(false);
    await nats.restart();
    await during; // acknowledged once the message stream has it
    const reconnected = /reconnected to NATS [^\n(]*\n/;
    await Promise.all([a.waitStderr(reconnected), b.waitStderr(reconnected)]);
    const n = 30;
    for (let i = 0; i < n; i++) await pub.publish(new Message("rs/after", String(i), { qos: 1 }));
    await waitUntil(() => got.at(-1) === String(n - 1), "the last message arrived", 15_000).catch((e) => {
      throw new Error(`${(e as Error).message}; got ${JSON.stringify(got)}\nA: ${a.stderr()}\nB: ${b.stderr()}`);
    });
    expect(got).toEqual(["before", "during", ...Array.from({ length: n }, (_, i) => String(i))]);
  }, 30_000);
});

/**
 * A fresh NATS cluster of three servers with JetStream and two nodes, A preferring the first server
 * and B the second (the client tries them in the order given), for the describe block it is called
 * in: JetStream takes a while to be whole again after a server returns, so each test that kills a
 * server gets its own. The message stream is kept on all three, so it outlives any one of them.
 */
function threeServers(): { servers: NatsServer[]; a: BrokerProcess; b: BrokerProcess } {
  const ctx = { servers: [] as NatsServer[], a: null as unknown as BrokerProcess, b: null as unknown as BrokerProcess };
  beforeAll(async () => {
    const routePorts = [freePort(), freePort(), freePort()];
    const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`);
    ctx.servers = await Promise.all(routePorts.map((routePort, i) => NatsServer.start({ cluster: { name: `s${i}`, routePort, routes } })));
    const urls = ctx.servers.map((s) => s.url);
    [ctx.a, ctx.b] = await Promise.all([node(urls, "--cluster-replicas", "3"), node([urls[1]!, urls[2]!, urls[0]!], "--cluster-replicas", "3")]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ctx.a, ctx.b].map((n) => n?.proc.exitCode === null && n.stop()));
    await Promise.all(ctx.servers.map((s) => s.stop()));
  });
  return ctx;
}

/**
 * A subscriber on node B to `{p}/#` and a publisher on node A, once B's interest has reached A's
 * server over the NATS routes (probes on `{p}/probe` until one arrives). The publisher reconnects
 * and sends again what was not acknowledged, as MQTT asks of it; `got` collects what arrives on
 * `{p}/data`, in order.
 */
async function acrossServers(a: BrokerProcess, b: BrokerProcess, p: string): Promise<{ pub: Client; got: string[] }> {
  const sub = await ours(b, `${p}-sub`);
  const got: string[] = [];
  let probes = 0;
  sub.onMessage = (m) => {
    if (m?.topic === `${p}/data`) got.push(m.text);
    else if (m?.topic === `${p}/probe`) probes++;
  };
  await sub.subscribe(`${p}/#`, { qos: 1 });
  const pub = new Client("127.0.0.1", a.ports[0]!, { clientId: `${p}-pub`, connectDelays: [], reconnectDelays: [0.05], sessionExpiryInterval: 60 });
  clients.push(pub);
  await pub.start();
  for (let i = 0; probes === 0; i++) {
    if (i > 200) throw new Error("the interest never reached the publisher's server");
    await pub.publish(new Message(`${p}/probe`, String(i), { qos: 1 }));
    await waitUntil(() => probes > 0, "a probe arrived", 20).catch(() => {}); // else publish another
  }
  return { pub, got };
}

describe("a NATS cluster of three servers, the subscriber's server killed", () => {
  const ctx = threeServers();

  test("the subscriber's server killed mid-stream: its node fails over and reads what it missed from the message stream; nothing acknowledged is lost", async () => {
    const { a, b, servers } = ctx;
    const { pub, got } = await acrossServers(a, b, "cut");
    // the stream's leader elsewhere: A's acknowledgements go on while B is cut off, so B does miss messages
    for (let i = 0; (await servers[0]!.streamLeader("mqtt_msgs_mqtt")) === "s1"; i++) {
      if (i > 20) throw new Error("the message stream's leader stays on B's server");
      await servers[0]!.stepDown("mqtt_msgs_mqtt");
    }
    const n = 300;
    const sent: string[] = [];
    let killed: Promise<void> | null = null;
    try {
      for (let i = 0; i < n; i++) {
        if (i === 50) killed = servers[1]!.kill(); // B's server: A goes on publishing while B reconnects elsewhere
        await pub.publish(new Message("cut/data", String(i), { qos: 1 }));
        sent.push(String(i));
      }
      await killed;
      await waitUntil(() => got.includes(String(n - 1)), `the last message arrived (${got.length} so far)`, 20_000);
      const missing = sent.filter((s) => !got.includes(s));
      if (missing.length > 0) throw new Error(`missing ${JSON.stringify(missing)}; A: ${a.stderr()}; B: ${b.stderr()}`);
      expect(got.length).toBe(new Set(got).size); // and none twice
      expect(b.stderr()).toMatch(/disconnected from NATS[^\n]*\n(.|\n)*reconnected to NATS/);
    } finally {
      await killed;
    }
  }, 60_000);

});

describe("a NATS cluster of three servers, the publisher's server killed", () => {
  const ctx = threeServers();

  test("one server of three killed mid-stream: its node fails over and no acknowledged message is lost", async () => {
    const { a, b, servers } = ctx;
    const { pub, got } = await acrossServers(a, b, "nc");
    const n = 200;
    const sent: string[] = [];
    const publishing = (async () => {
      for (let i = 0; i < n; i++) {
        if (i === 50) void servers[0]!.kill(); // A's server, mid-stream: A fails over to another one
        await pub.publish(new Message("nc/data", String(i), { qos: 1 }));
        sent.push(String(i));
      }
    })();
    await waitFor(publishing, 25_000, () => `publishing stuck after ${sent.length}; A: ${a.stderr()}; B: ${b.stderr()}`);
    await waitUntil(() => got.includes(String(n - 1)), `the last message arrived (${got.length} so far)`, 15_000).catch((e) => {
      throw new Error(`${(e as Error).message}; got ${got.length}; A: ${a.stderr()}; B: ${b.stderr()}`);
    });
    expect(sent.filter((s) => !got.includes(s))).toEqual([]);
    expect(a.stderr()).toMatch(/reconnected to NATS/);
  }, 45_000);
});
