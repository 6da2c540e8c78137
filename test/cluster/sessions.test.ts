/**
 * Sessions across the cluster: three broker nodes as processes on one nats-server with JetStream;
 * resume on another node (ours v5, MQTT.js 3.1.1, mosquitto_sub -c), takeover with 0x8E, racing
 * connects, a QoS 2 flow across a takeover, a SIGKILLed node's wills and sessions, and expiry.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { PacketType } from "../../lib/codec/constants";
import type { DisconnectPacket } from "../../lib/codec/packets/disconnect";
import type { ConnackPacket } from "../../lib/codec/packets/connack";
import type { ConnectPacket } from "../../lib/codec/packets/connect";
import { Client, type ClientOptions } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import type { BrokerProcess } from "../cli/broker-process";
import { finished, nextPublish, Peers, RawClient, rawSubscribe, roundTrip, waitUntil } from "../broker/helpers";
import { NatsServer } from "./nats-server";
import { node, ours as oursOn, threeNodes, urlOf, waitFor } from "./nodes";

const peers = new Peers();
const clients: Client[] = [];
const raws: RawClient[] = [];

const ours = (n: BrokerProcess, clientId: string, options: ClientOptions = {}) => oursOn(clients, n, clientId, options);

async function raw(n: BrokerProcess, clientId: string, fields: Parameters<typeof RawClient.connect>[1] = {}): Promise<RawClient> {
  const c = await RawClient.connect(n.ports[0]!, { clientId, ...fields, cleanStart: fields.cleanStart ?? true });
  raws.push(c);
  return c;
}

/** Opens a raw connection and sends CONNECT; resolves with the client and its CONNACK, whatever it says. */
async function rawWithAck(n: BrokerProcess, clientId: string, fields: Partial<ConnectPacket> = {}): Promise<[RawClient, ConnackPacket]> {
  const version = fields.protocolVersion ?? 5;
  const r = await RawClient.open(n.ports[0]!, version);
  raws.push(r);
  r.send({ type: PacketType.CONNECT, protocolVersion: version, cleanStart: true, keepAlive: 0, clientId, will: null, username: null, password: null, properties: {}, ...fields });
  return [r, (await r.next(PacketType.CONNACK)) as ConnackPacket];
}


/** Publishes `n` QoS 1 messages "0".."n-1" to `topic` from a fresh client on node `at`. */
async function publishMany(at: BrokerProcess, topic: string, n: number): Promise<void> {
  const pub = await ours(at, `pub-${topic.replaceAll("/", "-")}`);
  for (let i = 0; i < n; i++) await pub.publish(new Message(topic, String(i), { qos: 1 }));
  await pub.stop();
}

/**
 * Connects a raw client to node `at` resuming the session of `clientId` (session present), takes
 * `n` PUBLISH packets on `topic`, acknowledging each, and returns their payloads. The client is
 * kept (the test's cleanup ends it).
 */
async function resume(at: BrokerProcess, clientId: string, fields: Partial<ConnectPacket>, topic: string, n: number): Promise<{ again: RawClient; texts: string[] }> {
  const [again, ack] = await rawWithAck(at, clientId, fields);
  expect(ack.sessionPresent).toBe(true);
  const texts: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = await waitFor(nextPublish(again, topic), 10_000, () => `${clientId} got ${JSON.stringify(texts)} only`);
    texts.push(new TextDecoder().decode(p.payload));
    again.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
  }
  await roundTrip(again);
  return { again, texts };
}

/** The nodes' heartbeats as the registry's `mqtt_nodes_mqtt` bucket holds them. */
async function heartbeats(nats: NatsServer): Promise<{ seq: number; behind?: Record<string, number> }[]> {
  return [...(await nats.bucket("mqtt_nodes_mqtt")).values()] as { seq: number; behind?: Record<string, number> }[];
}

/** The payloads a client of ours on node `at`, subscribed to `filter` (QoS 1 unless told), receives (the array fills as they come). */
async function collect(at: BrokerProcess, clientId: string, filter: string, qos: 1 | 2 = 1): Promise<string[]> {
  const c = await ours(at, clientId);
  const got: string[] = [];
  c.onMessage = (m) => void (m !== null && got.push(m.text));
  await c.subscribe(filter, { qos });
  return got;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  for (const r of raws.splice(0)) r.end();
  await peers.closeAll();
});

describe("three nodes", () => {
  const cluster = threeNodes();
  let a: BrokerProcess, b: BrokerProcess, c: BrokerProcess;
  beforeAll(() => {
    [a, b, c] = cluster.nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
  });

  test("resume elsewhere, v5: a session made on A resumes on B with the 100 QoS 1 messages published on C meanwhile, in order", async () => {
    const first = await ours(a, "resume-v5", { sessionExpiryInterval: 3600 });
    await first.subscribe("resume/v5", { qos: 1 });
    await first.stop();
    await publishMany(c, "resume/v5", 100);
    const got: string[] = [];
    const again = new Client("127.0.0.1", b.ports[0]!, { clientId: "resume-v5", connectDelays: [], reconnectDelays: [], sessionExpiryInterval: 3600 });
    clients.push(again);
    again.onMessage = (m) => void (m !== null && got.push(m.text));
    const present: boolean[] = [];
    again.onConnect = (info) => void present.push(info.sessionPresent);
    await again.start({ resumeSession: true });
    expect(present).toEqual([true]);
    await waitUntil(() => got.length >= 100, `100 messages arrived (${got.length})`);
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
    // and the subscription came along: a new message reaches it on B
    await publishMany(a, "resume/v5", 1);
    await waitUntil(() => got.length === 101, "the next message arrived");
  });

  test("resume elsewhere, 3.1.1: MQTT.js with clean session 0 made on A resumes on B with 100 messages from C", async () => {
    const first = await peers.mqttjs(urlOf(a), { clientId: "resume-v4", protocolVersion: 4, clean: false });
    await first.client.subscribeAsync("resume/v4", { qos: 1 });
    await first.client.endAsync();
    await publishMany(c, "resume/v4", 100);
    const again = await peers.mqttjs(urlOf(b), { clientId: "resume-v4", protocolVersion: 4, clean: false });
    expect(again.connack.sessionPresent).toBe(true);
    const got = await again.receive(100);
    expect(got.map((m) => m.payload)).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
  });

  test("resume elsewhere, 3.1.1: mosquitto_sub -c made on A gets on B what C published meanwhile", async () => {
    const first = peers.mosquitto("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(a.ports[0]), "-t", "resume/mosq", "-q", "1", "-c", "-i", "resume-mosq", "-C", "1"]);
    // mosquitto_sub says nothing when subscribed: a first message shows it is (it exits after one)
    for (let i = 0; first.exitCode === null; i++) {
      if (i > 200) throw new Error("mosquitto_sub never got its first message");
      const p = await ours(c, `mosq-probe-${i}`);
      await p.publish(new Message("resume/mosq", "probe", { qos: 1 }));
      await p.stop();
      await Promise.race([first.exited, Bun.sleep(50)]);
    }
    await publishMany(c, "resume/mosq", 100);
    const again = peers.mosquitto("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(b.ports[0]), "-t", "resume/mosq", "-q", "1", "-c", "-i", "resume-mosq", "-C", "100"]);
    const { stdout } = await finished(again);
    const lines = stdout.trim().split("\n").filter((l) => l !== "probe");
    expect(lines).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
  });

  test("takeover: a client on A is taken over from B and gets DISCONNECT 0x8E", async () => {
    const onA = await raw(a, "taken", { cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    expect(await rawSubscribe(onA, "taken/t", 1)).toBe(1);
    const onB = await raw(b, "taken", { cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    const d = (await onA.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(0x8e);
    await onA.closed.promise;
    // the subscription went with it: a message published on C reaches B's connection
    await publishMany(c, "taken/t", 1);
    expect(new TextDecoder().decode((await nextPublish(onB, "taken/t")).payload)).toBe("0");
  });

  test("100 rounds of two simultaneous connects with one identifier on two nodes leave exactly one connection", async () => {
    // raw connections: a client library would connect again after 0x8E and fight back
    for (let round = 0; round < 100; round++) {
      const id = `race-${round}`;
      const pair = await Promise.all([rawWithAck(a, id), rawWithAck(b, id)]);
      expect(pair.every(([, ack]) => ack.reasonCode === 0)).toBe(true);
      // the first to be served is taken over by the second: wait until one is left
      await waitUntil(() => pair.filter(([r]) => !r.isClosed).length <= 1, `one connection left in round ${round}`);
      const left = pair.filter(([r]) => !r.isClosed);
      expect(left.length).toBe(1);
      await roundTrip(left[0]![0]); // it is still there
      expect(pair.filter(([r]) => !r.isClosed).length).toBe(1);
      const taken = pair.find(([r]) => r.isClosed)![0];
      expect((taken.received.find((p) => p.type === PacketType.DISCONNECT) as DisconnectPacket | undefined)?.reasonCode).toBe(0x8e);
      left[0]![0].end();
    }
  }, 120_000);

  test("a connection that goes before its session is claimed does not hold up the next one with its identifier (10 rounds)", async () => {
    // a client whose CONNECT timed out while JetStream was slow connects again: the first claim
    // ends with its connection gone (a registry write follows it) while the second claim waits
    for (let round = 0; round < 10; round++) {
      const id = `abandon-${round}`;
      (await raw(a, id, { cleanStart: false, properties: { sessionExpiryInterval: 60 } })).end(); // a record to take over: the claim takes several round trips
      await waitUntil(() => raws.at(-1)!.isClosed, "the first connection closed");
      const connect = { type: PacketType.CONNECT, protocolVersion: 5, cleanStart: false, keepAlive: 0, clientId: id, will: null, username: null, password: null, properties: { sessionExpiryInterval: 60 } } as const;
      const [gone, next] = await Promise.all([RawClient.open(a.ports[0]!), RawClient.open(a.ports[0]!)]);
      raws.push(gone, next);
      gone.send(connect);
      gone.end();
      next.send(connect);
      const ack = (await Promise.race([next.next(PacketType.CONNACK), next.closed.promise.then(() => null)])) as ConnackPacket | null;
      expect(ack?.reasonCode).toBe(0);
      expect(ack?.sessionPresent).toBe(true);
      next.end();
    }
  }, 60_000);

  test("a QoS 2 flow interrupted by a takeover completes exactly once", async () => {
    const got = await collect(c, "qos2-sub", "qos2/t", 2);
    const session = { cleanStart: false, properties: { sessionExpiryInterval: 60 } };
    const onA = await raw(a, "qos2-pub", session);
    onA.send({ type: PacketType.PUBLISH, dup: false, qos: 2, retain: false, topic: "qos2/t", packetId: 7, properties: {}, payload: new TextEncoder().encode("once") });
    await onA.next(PacketType.PUBREC);
    // taken over on B before PUBREL: B must know packet 7 is in flight [MQTT-4.3.3-9]
    const onB = await raw(b, "qos2-pub", session);
    await onA.closed.promise;
    // the client sends the PUBLISH again (DUP), as after a reconnect, then PUBREL
    onB.send({ type: PacketType.PUBLISH, dup: true, qos: 2, retain: false, topic: "qos2/t", packetId: 7, properties: {}, payload: new TextEncoder().encode("once") });
    await onB.next(PacketType.PUBREC);
    onB.send({ type: PacketType.PUBREL, packetId: 7, reasonCode: 0, properties: {} });
    const comp = await onB.next(PacketType.PUBCOMP);
    expect(comp.type).toBe(PacketType.PUBCOMP);
    await waitUntil(() => got.length > 0, "the message arrived");
    await roundTrip(onB);
    await publishMany(a, "qos2/t", 1); // a later message from elsewhere: everything before it has arrived
    await waitUntil(() => got.includes("0"), "the later message arrived");
    expect(got.filter((t) => t === "once")).toEqual(["once"]);
  });

  test("expiry across nodes: a will delay shorter than the expiry publishes the will once; the session then ends everywhere", async () => {
    const wills = await collect(b, "will-watch-1", "wills/short");
    const w = await raw(a, "short-will", { cleanStart: false, properties: { sessionExpiryInterval: 2 }, will: { topic: new TextEncoder().encode("wills/short"), payload: new TextEncoder().encode("gone"), qos: 1, retain: false, properties: { willDelayInterval: 1 } } });
    await rawSubscribe(w, "short/t", 1);
    w.end(); // without DISCONNECT
    await waitUntil(() => wills.length === 1, "the will arrived");
    // past the expiry (2 s after the close): no session on any node
    const closedAt = Date.now();
    await waitUntil(() => Date.now() - closedAt > 2_500, "the session expired");
    const [again, ack] = await rawWithAck(c, "short-will", { cleanStart: false, properties: { sessionExpiryInterval: 2 } });
    expect(ack.sessionPresent).toBe(false);
    await roundTrip(again);
    expect(wills).toEqual(["gone"]);
  });

  test("expiry across nodes: a will delay longer than the expiry publishes the will when the session ends, once", async () => {
    const wills = await collect(c, "will-watch-2", "wills/long");
    const began = Date.now();
    const w = await raw(b, "long-will", { cleanStart: false, properties: { sessionExpiryInterval: 1 }, will: { topic: new TextEncoder().encode("wills/long"), payload: new TextEncoder().encode("ended"), qos: 1, retain: false, properties: { willDelayInterval: 30 } } });
    w.end();
    await waitUntil(() => wills.length === 1, "the will arrived", 10_000);
    expect(Date.now() - began).toBeLessThan(10_000); // at the end of the session (1 s), not after 30 s
    await roundTrip(await raw(a, "long-will-probe"));
    expect(wills).toEqual(["ended"]);
  });
});

describe("a node SIGKILLed", () => {
  const cluster = threeNodes();
  let a: BrokerProcess, b: BrokerProcess, doomed: BrokerProcess;
  beforeAll(() => {
    [a, b, doomed] = cluster.nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
  });

  test("its clients' wills arrive on another node within 15 s, once each, and the clients resume their sessions elsewhere", async () => {
    const wills = await collect(a, "dead-watch", "dead/will/#");
    const enc = new TextEncoder();
    const names = ["d0", "d1", "d2"];
    for (const name of names) {
      const r = await raw(doomed, name, { cleanStart: false, properties: { sessionExpiryInterval: 300 }, will: { topic: enc.encode(`dead/will/${name}`), payload: enc.encode(name), qos: 1, retain: false, properties: {} } });
      await rawSubscribe(r, `dead/data/${name}`, 1);
    }
    // the registry has their subscriptions once a message published elsewhere reaches them
    await publishMany(b, "dead/data/d0", 1);
    doomed.proc.kill("SIGKILL");
    const killedAt = Date.now();
    await doomed.proc.exited;
    await waitUntil(() => wills.length === names.length, `the wills arrived (${JSON.stringify(wills)})`, 20_000);
    expect(Date.now() - killedAt).toBeLessThan(15_000 + 1_000);
    expect([...wills].sort()).toEqual(names);
    // published while nobody held them: each resumes on another node with what it missed (one of
    // A and B took the sessions over: resuming on both covers the node that holds them and the other)
    for (const [name, at] of [["d1", b], ["d2", a]] as const) {
      await publishMany(b, `dead/data/${name}`, 3);
      const { texts } = await resume(at, name, { cleanStart: false, properties: { sessionExpiryInterval: 300 } }, `dead/data/${name}`, 3);
      expect(texts).toEqual(["0", "1", "2"]);
    }
    expect([...wills].sort()).toEqual(names); // none twice
  }, 60_000);
});

describe("a node SIGKILLed while its clients had messages they had not acknowledged", () => {
  const cluster = threeNodes();
  let a: BrokerProcess, b: BrokerProcess, doomed: BrokerProcess;
  beforeAll(() => {
    [a, b, doomed] = cluster.nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
  });

  test("they get them again on another node: one resuming before the death is noticed, one after its session was taken over, one whose session had moved to the dead node with them", async () => {
    const wills = await collect(a, "unacked-watch", "unacked/will");
    const enc = new TextEncoder();
    const session = { cleanStart: false, properties: { sessionExpiryInterval: 300 } };
    const early = await raw(doomed, "unacked-early", session);
    const late = await raw(doomed, "unacked-late", { ...session, will: { topic: enc.encode("unacked/will"), payload: enc.encode("late"), qos: 1, retain: false, properties: {} } });
    const moved = await raw(a, "unacked-moved", session);
    for (const r of [early, late, moved]) await rawSubscribe(r, "unacked/t", 1);
    await publishMany(b, "unacked/t", 5); // each PUBACKed by B
    // all three receive them and acknowledge none (raw clients send no PUBACK of their own)
    for (const r of [early, late, moved]) for (let i = 0; i < 5; i++) await nextPublish(r, "unacked/t");
    // the third goes over to the doomed node: A hands its session over, the 5 in flight, and they are sent again
    const [there, ack] = await rawWithAck(doomed, "unacked-moved", session);
    expect(ack.sessionPresent).toBe(true);
    for (let i = 0; i < 5; i++) expect((await nextPublish(there, "unacked/t")).dup).toBe(true);
    // the doomed node's heartbeat has moved past them: a node taking over from its position alone would skip them
    const last = await cluster.nats.lastSeq("mqtt_msgs_mqtt");
    await waitUntil(async () => (await heartbeats(cluster.nats)).filter((b) => b.seq >= last).length === 3, "every node's heartbeat passed the messages", 15_000);
    // and names the moved client: its messages kept where they start in the stream through the handover
    await waitUntil(async () => (await heartbeats(cluster.nats)).some((b) => b.behind?.["unacked-moved"] !== undefined), "a heartbeat naming the moved client", 15_000);
    doomed.proc.kill("SIGKILL");
    await doomed.proc.exited;

    expect((await resume(a, "unacked-moved", session, "unacked/t", 5)).texts).toEqual(["0", "1", "2", "3", "4"]);
    expect((await resume(a, "unacked-early", session, "unacked/t", 5)).texts).toEqual(["0", "1", "2", "3", "4"]);
    await waitUntil(() => wills.includes("late"), "the late client's will (its session taken over)", 20_000);
    expect((await resume(b, "unacked-late", session, "unacked/t", 5)).texts).toEqual(["0", "1", "2", "3", "4"]);
  }, 60_000);
});

describe("a one-node cluster restarted", () => {
  let nats: NatsServer;
  const nodes: BrokerProcess[] = [];
  beforeAll(async () => {
    nats = await NatsServer.start();
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.proc.exitCode === null && n.stop()));
    await nats?.stop();
  });

  test("the new node takes over the dead one's sessions though nobody saw it die: the will goes, the client resumes with what came meanwhile, and the dead node's heartbeat is deleted", async () => {
    await nats.makeBucket("mqtt_nodes_mqtt", 60_000); // as an earlier version made it: heartbeats gone after a minute
    const first = await node([nats.url]);
    nodes.push(first);
    expect(await nats.maxAge("KV_mqtt_nodes_mqtt")).toBe(0); // kept until a node takes the sessions over
    const enc = new TextEncoder();
    const session = { cleanStart: false, properties: { sessionExpiryInterval: 300 } };
    const solo = await raw(first, "solo", { ...session, will: { topic: enc.encode("solo/will"), payload: enc.encode("solo"), qos: 1, retain: false, properties: {} } });
    await rawSubscribe(solo, "solo/t", 1);
    await publishMany(first, "solo/t", 1);
    const p = await nextPublish(solo, "solo/t");
    solo.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} }); // acknowledged: not to come again
    const last = await nats.lastSeq("mqtt_msgs_mqtt");
    await waitUntil(async () => (await heartbeats(nats)).every((b) => b.seq >= last), "the heartbeat passed the message", 15_000);
    first.proc.kill("SIGKILL");
    await first.proc.exited;

    const second = await node([nats.url]);
    nodes.push(second);
    const wills = await collect(second, "solo-watch", "solo/will");
    await publishMany(second, "solo/t", 2); // while the session is nobody's
    await waitUntil(() => wills.length > 0, "the will of the dead node's client", 20_000);
    expect(wills).toEqual(["solo"]);
    await waitUntil(async () => (await heartbeats(nats)).length === 1, "the dead node's heartbeat was deleted");
    const { again, texts } = await resume(second, "solo", session, "solo/t", 2);
    expect(texts).toEqual(["0", "1"]);
    expect(again.received.filter((x) => x.type === PacketType.PUBLISH)).toEqual([]); // the acknowledged one did not come again
    expect(wills).toEqual(["solo"]);
  }, 60_000);
});
