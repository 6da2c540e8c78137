/**
 * Acknowledged means durable (issue 12): a broker process on a persistence file is SIGKILLed at a
 * random moment during mixed load, 20 times, and after each restart everything it acknowledged
 * before the kill is there: QoS 1 messages delivered at least once and QoS 2 messages exactly once
 * to persistent subscribers (one online during the load, one offline), SUBACKed subscriptions
 * (and UNSUBACKed ones gone), the latest acknowledged retained value of each topic.
 *
 * The clients are raw sockets driven by callbacks, so the test knows exactly which
 * acknowledgements arrived before the kill; they keep their own session state across the restarts
 * as a real client does (the QoS 2 publisher re-sends PUBLISH or PUBREL; the subscribers remember
 * the QoS 2 identifiers they have PUBRECed and not yet seen released [MQTT-4.3.3-9]).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { Framer } from "../../lib/codec/framer";
import { decodePacket, encodePacket, type Packet } from "../../lib/codec/packet";
import { PacketType, type QoS } from "../../lib/codec/constants";
import type { ConnackPacket } from "../../lib/codec/packets/connack";
import { startBrokerProcess, type BrokerProcess } from "../cli/broker-process";
import { removeDir, tempDir } from "../client/helpers";
import { finished, Peers, waitUntil } from "./helpers";

const ROUNDS = 20;
/** Unacknowledged messages each publisher keeps. */
const WINDOW = 16;

let dir: string;
let broker: BrokerProcess | null = null;
beforeAll(() => {
  dir = tempDir("mqtttools-crash-");
});
afterAll(async () => {
  if (broker !== null && broker.proc.exitCode === null) await broker.stop();
  removeDir(dir);
});

/** A small seeded generator (mulberry32), so that a failing run can be told apart by its seed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** One MQTT 5 connection over a raw socket; every packet received goes to `onPacket`. */
class Peer {
  onPacket: (p: Packet, peer: Peer) => void = () => {};
  closed = false;
  private framer = new Framer();
  private socket!: Socket<undefined>;

  /** Connects and waits for CONNACK 0; `expiry` > 0 with clean false makes a persistent session. */
  static async connect(port: number, clientId: string, expiry: number, onPacket: (p: Packet, peer: Peer) => void): Promise<{ peer: Peer; connack: ConnackPacket }> {
    const peer = new Peer();
    const { promise, resolve, reject } = Promise.withResolvers<ConnackPacket>();
    peer.onPacket = (p) => {
      if (p.type !== PacketType.CONNACK) return reject(new Error(`${clientId}: packet type ${p.type} before CONNACK`));
      if (p.reasonCode !== 0) return reject(new Error(`${clientId}: CONNACK 0x${p.reasonCode.toString(16)}`));
      peer.onPacket = onPacket; // what a resumed session sends right behind CONNACK goes to the handler
      resolve(p);
    };
    peer.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, data) => peer.receive(data),
        close: () => {
          peer.closed = true;
          reject(new Error(`${clientId}: closed before CONNACK`));
        },
        error: () => {
          peer.closed = true;
        },
      },
    });
    peer.send({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: expiry === 0, keepAlive: 0, clientId, will: null, username: null, password: null, properties: expiry === 0 ? {} : { sessionExpiryInterval: expiry } });
    return { peer, connack: await promise };
  }

  private receive(data: Uint8Array): void {
    this.framer.push(data);
    for (let f = this.framer.next(); f !== null; f = this.framer.next()) this.onPacket(decodePacket(f.slice(), 5), this);
  }

  send(p: Packet): void {
    if (!this.closed) this.socket.write(encodePacket(p, 5));
  }

  /** DISCONNECT 0 (the session stays), then the socket ends. */
  disconnect(): void {
    this.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    this.socket.end();
    this.closed = true;
  }

  end(): void {
    this.socket.end();
    this.closed = true;
  }
}

const publish = (topic: string, payload: string, qos: QoS, packetId: number, retain = false, dup = false): Packet => ({
  type: PacketType.PUBLISH, dup, qos, retain, topic, packetId, properties: {}, payload: new TextEncoder().encode(payload),
});
const ack = (type: typeof PacketType.PUBACK | typeof PacketType.PUBREC | typeof PacketType.PUBREL | typeof PacketType.PUBCOMP, packetId: number): Packet => ({ type, packetId, reasonCode: 0, properties: {} });

/** Packet identifiers 1..65535, never one still in use. */
function allocator(inUse: Map<number, unknown>): () => number {
  let next = 0;
  return () => {
    do next = next === 65535 ? 1 : next + 1;
    while (inUse.has(next));
    return next;
  };
}

/** A persistent subscriber to c/q1/# (QoS 1) and c/q2/# (QoS 2) that counts what the application gets. */
class Subscriber {
  peer: Peer | null = null;
  readonly got1 = new Map<string, number>();
  readonly got2 = new Map<string, number>();
  /** QoS 2 identifiers PUBRECed and not yet released: a PUBLISH with one is a re-send, not a new message [MQTT-4.3.3-9]. */
  private unreleased = new Map<number, true>();
  readonly problems: string[] = [];

  constructor(readonly clientId: string) {}

  async connect(port: number): Promise<boolean> {
    const { peer, connack } = await Peer.connect(port, this.clientId, 3600, (p, from) => this.handle(p, from));
    this.peer = peer;
    return connack.sessionPresent;
  }

  private handle(p: Packet, peer: Peer): void {
    if (p.type === PacketType.PUBLISH) {
      const payload = text(p.payload);
      if (p.qos === 1) {
        this.got1.set(payload, (this.got1.get(payload) ?? 0) + 1);
        peer.send(ack(PacketType.PUBACK, p.packetId));
      } else if (p.qos === 2) {
        if (!this.unreleased.has(p.packetId)) {
          this.unreleased.set(p.packetId, true);
          const n = (this.got2.get(payload) ?? 0) + 1;
          this.got2.set(payload, n);
          if (n > 1) this.problems.push(`${this.clientId} got the QoS 2 message ${payload} ${n} times`);
        }
        peer.send(ack(PacketType.PUBREC, p.packetId));
      } else this.problems.push(`${this.clientId} got ${payload} at QoS 0`);
    } else if (p.type === PacketType.PUBREL) {
      this.unreleased.delete(p.packetId);
      peer.send(ack(PacketType.PUBCOMP, p.packetId));
    } else if (p.type === PacketType.SUBACK) {
      if (p.reasonCodes.some((c) => c >= 0x80)) this.problems.push(`${this.clientId}: SUBACK ${p.reasonCodes}`);
    } else if (p.type === PacketType.DISCONNECT) this.problems.push(`${this.clientId}: DISCONNECT 0x${p.reasonCode.toString(16)}`);
  }

  /** Subscribes (once, in the first round) and waits for the SUBACK. */
  async subscribe(): Promise<void> {
    const peer = this.peer!;
    const { promise, resolve } = Promise.withResolvers<void>();
    const handler = peer.onPacket;
    peer.onPacket = (p, from) => {
      handler(p, from);
      if (p.type === PacketType.SUBACK) {
        peer.onPacket = handler;
        resolve();
      }
    };
    peer.send({
      type: PacketType.SUBSCRIBE, packetId: 1, properties: {},
      subscriptions: [
        { topicFilter: "c/q1/#", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 },
        { topicFilter: "c/q2/#", qos: 2, noLocal: false, retainAsPublished: false, retainHandling: 0 },
      ],
    });
    await promise;
  }
}

/** What the publishers sent and which of it was acknowledged before each kill. */
class Ledger {
  /** QoS 1 messages PUBACKed, and QoS 2 messages PUBRECed. */
  readonly acked1 = new Set<string>();
  readonly acked2 = new Set<string>();
  /** Per retained topic: the last value PUBACKed and the last one sent. */
  readonly retainedAcked = new Map<string, number>();
  readonly retainedSent = new Map<string, number>();
}

/** The QoS 2 publisher: a persistent session that finishes its exchanges after each restart. */
class Qos2Publisher {
  peer: Peer | null = null;
  /** Unfinished exchanges: PUBLISH sent (rec false) or PUBREC received (rec true). */
  readonly open = new Map<number, { payload: string; rec: boolean }>();
  private id = allocator(this.open);
  private seq = 0;
  running = false;

  constructor(private readonly ledger: Ledger) {}

  async connect(port: number): Promise<boolean> {
    const { peer, connack } = await Peer.connect(port, "crash-pub2", 3600, (p, from) => this.handle(p, from));
    this.peer = peer;
    // re-send what is unfinished, in order: PUBLISH with DUP, or PUBREL [MQTT-4.4.0-1]
    for (const [packetId, o] of this.open) peer.send(o.rec ? ack(PacketType.PUBREL, packetId) : publish(`c/q2/${o.payload}`, o.payload, 2, packetId, false, true));
    return connack.sessionPresent;
  }

  private handle(p: Packet, peer: Peer): void {
    if (p.type === PacketType.PUBREC) {
      const o = this.open.get(p.packetId);
      if (o === undefined) return;
      this.ledger.acked2.add(o.payload);
      o.rec = true;
      peer.send(ack(PacketType.PUBREL, p.packetId));
    } else if (p.type === PacketType.PUBCOMP) {
      this.open.delete(p.packetId);
      this.fill();
    }
  }

  fill(): void {
    while (this.running && this.open.size < WINDOW && !this.peer!.closed) {
      const packetId = this.id();
      const payload = `m${++this.seq}`;
      this.open.set(packetId, { payload, rec: false });
      this.peer!.send(publish(`c/q2/${payload}`, payload, 2, packetId));
    }
  }
}

/** A QoS 1 publisher with a clean session: what was not PUBACKed before a kill is simply not counted. */
class Qos1Publisher {
  peer: Peer | null = null;
  private open = new Map<number, string>();
  private id = allocator(this.open);
  private seq = 0;

  constructor(
    private readonly ledger: Ledger,
    private readonly round: number,
    private readonly retainedTopics: number,
  ) {}

  async connect(port: number, clientId: string): Promise<void> {
    const { peer } = await Peer.connect(port, clientId, 0, (p) => {
      if (p.type !== PacketType.PUBACK) return;
      const what = this.open.get(p.packetId);
      this.open.delete(p.packetId);
      if (what === undefined) return;
      if (what.startsWith("c/r/")) {
        const [topic, value] = what.split(" ") as [string, string];
        if (Number(value) > (this.ledger.retainedAcked.get(topic) ?? -1)) this.ledger.retainedAcked.set(topic, Number(value));
      } else this.ledger.acked1.add(what);
      this.fill();
    });
    this.peer = peer;
    this.fill();
  }

  fill(): void {
    while (this.open.size < WINDOW && !this.peer!.closed) {
      const packetId = this.id();
      const n = ++this.seq;
      if (this.retainedTopics > 0 && n % 4 === 0) {
        // a retained update: values only grow, so "the latest acknowledged" is a lower bound
        const topic = `c/r/${n % this.retainedTopics}`;
        const value = this.round * 1_000_000 + n;
        this.ledger.retainedSent.set(topic, value);
        this.open.set(packetId, `${topic} ${value}`);
        this.peer!.send(publish(topic, String(value), 1, packetId, true));
      } else {
        const payload = `r${this.round}-${n}`;
        this.open.set(packetId, payload);
        this.peer!.send(publish(`c/q1/${payload}`, payload, 1, packetId));
      }
    }
  }
}

/** A persistent client whose subscriptions change during the load. */
class Changer {
  peer: Peer | null = null;
  /** Filters SUBACKed and not unsubscribed since, and ones UNSUBACKed: they must be there, and gone. */
  readonly subscribed = new Set<string>();
  readonly unsubscribed = new Set<string>();
  private pending = new Map<number, { filter: string; sub: boolean }>();
  private id = allocator(this.pending);
  readonly probes = new Set<string>();

  async connect(port: number): Promise<boolean> {
    const { peer, connack } = await Peer.connect(port, "crash-changer", 3600, (p, from) => this.handle(p, from));
    this.peer = peer;
    this.pending.clear();
    return connack.sessionPresent;
  }

  private handle(p: Packet, peer: Peer): void {
    if (p.type === PacketType.SUBACK || p.type === PacketType.UNSUBACK) {
      const o = this.pending.get(p.packetId);
      this.pending.delete(p.packetId);
      if (o === undefined) return;
      if (o.sub) this.subscribed.add(o.filter);
      else this.unsubscribed.add(o.filter);
    } else if (p.type === PacketType.PUBLISH) {
      this.probes.add(text(p.payload));
      if (p.qos === 1) peer.send(ack(PacketType.PUBACK, p.packetId));
    }
  }

  subscribe(filter: string): void {
    const packetId = this.id();
    this.pending.set(packetId, { filter, sub: true });
    this.unsubscribed.delete(filter);
    this.peer!.send({ type: PacketType.SUBSCRIBE, packetId, properties: {}, subscriptions: [{ topicFilter: filter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 2 }] });
  }

  unsubscribe(filter: string): void {
    const packetId = this.id();
    this.pending.set(packetId, { filter, sub: false });
    this.subscribed.delete(filter); // in doubt until UNSUBACK
    this.peer!.send({ type: PacketType.UNSUBSCRIBE, packetId, properties: {}, topicFilters: [filter] });
  }
}

/** Every QoS 1/2 message acknowledged so far that a subscriber has not got (at most 5 named). */
function missing(ledger: Ledger, s: Subscriber): string[] {
  const out: string[] = [];
  for (const m of ledger.acked1) if (!s.got1.has(m)) out.push(`q1 ${m}`);
  for (const m of ledger.acked2) if (!s.got2.has(m)) out.push(`q2 ${m}`);
  return out;
}

describe("acknowledged means durable: SIGKILL during mixed load", () => {
  test(`${ROUNDS} rounds: QoS 1 at least once, QoS 2 exactly once [MQTT-4.3.3-9], SUBACKed subscriptions and the latest acknowledged retained values survive`, async () => {
    const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const rand = random(seed);
    const db = join(dir, "crash.db");
    const ledger = new Ledger();
    const online = new Subscriber("crash-online");
    const offline = new Subscriber("crash-offline");
    const pub2 = new Qos2Publisher(ledger);
    const changer = new Changer();
    let filters = 0;
    const totals = { acked1: 0, acked2: 0, killsAt: [] as number[] };

    for (let round = 0; round <= ROUNDS; round++) {
      const what = `seed ${seed}, round ${round}`;
      broker = await startBrokerProcess(["broker", "--host", "127.0.0.1", "--port", "0", "--persistence", db, "--max-queued-messages", "1000000", "--max-queued-bytes", "1000000000"]);
      const port = broker.ports[0]!;

      // ---- after the restart: everything acknowledged before the kill is there
      const present = await Promise.all([online.connect(port), offline.connect(port), pub2.connect(port), changer.connect(port)]);
      if (round === 0) {
        await online.subscribe();
        await offline.subscribe();
      } else expect({ what, present }).toEqual({ what, present: [true, true, true, true] }); // CONNACKed sessions came back [MQTT-3.2.2-2]
      await waitUntil(() => pub2.open.size === 0, `${what}: the QoS 2 publisher finished its exchanges`);
      for (const s of [online, offline]) {
        await waitUntil(() => missing(ledger, s).length === 0, `${what}: ${s.clientId} got every acknowledged message (missing ${missing(ledger, s).slice(0, 5).join(", ")})`);
      }
      expect([...online.problems, ...offline.problems]).toEqual([]);

      // the latest acknowledged retained value of each topic (or a later one sent before the kill)
      const retained = new Map<string, number>();
      const reader = await Peer.connect(port, "", 0, (p) => {
        if (p.type === PacketType.PUBLISH) retained.set(typeof p.topic === "string" ? p.topic : text(p.topic), Number(text(p.payload)));
      });
      reader.peer.send({ type: PacketType.SUBSCRIBE, packetId: 1, properties: {}, subscriptions: [{ topicFilter: "c/r/#", qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 }] });
      await waitUntil(() => [...ledger.retainedAcked.keys()].every((t) => retained.has(t)), `${what}: the retained messages arrived`);
      for (const [topic, value] of ledger.retainedAcked) {
        const got = retained.get(topic)!;
        expect({ what, topic, ok: got >= value && got <= ledger.retainedSent.get(topic)! }).toEqual({ what, topic, ok: true });
      }
      reader.peer.end();

      // SUBACKed subscriptions are there, UNSUBACKed ones are not: one probe each, then a marker
      const probe = await Peer.connect(port, "", 0, () => {});
      let probeId = 0;
      for (const f of [...changer.subscribed, ...changer.unsubscribed]) probe.peer.send(publish(f, `${round} ${f}`, 1, ++probeId));
      const marker = `${round} marker`;
      probe.peer.send(publish("c/s/marker", marker, 1, ++probeId));
      if (round === 0) changer.subscribe("c/s/marker");
      else {
        await waitUntil(() => changer.probes.has(marker), `${what}: the marker reached the changer`);
        for (const f of changer.subscribed) expect({ what, subscribed: f, got: changer.probes.has(`${round} ${f}`) }).toEqual({ what, subscribed: f, got: true });
        for (const f of changer.unsubscribed) expect({ what, unsubscribed: f, got: changer.probes.has(`${round} ${f}`) }).toEqual({ what, unsubscribed: f, got: false });
      }
      probe.peer.end();
      if (round === ROUNDS) break;

      // ---- mixed load, then SIGKILL at a random moment
      offline.peer!.disconnect(); // its session keeps queueing
      const pub1 = new Qos1Publisher(ledger, round, 5);
      await pub1.connect(port, "crash-pub1");
      pub2.running = true;
      pub2.fill();
      const changes = setInterval(() => {
        changer.subscribe(`c/s/${++filters}`);
        const old = [...changer.subscribed].filter((f) => f !== "c/s/marker");
        if (old.length > 3) changer.unsubscribe(old[Math.floor(rand() * old.length)]!);
      }, 5);
      const killAt = 20 + Math.floor(rand() * 200);
      totals.killsAt.push(killAt);
      await Bun.sleep(killAt); // the random moment: the load runs meanwhile
      broker.proc.kill("SIGKILL");
      await broker.proc.exited;
      clearInterval(changes);
      pub2.running = false;
      for (const p of [online.peer, offline.peer, pub1.peer, pub2.peer, changer.peer]) p?.end();
    }
    totals.acked1 = ledger.acked1.size;
    totals.acked2 = ledger.acked2.size;
    // the load was real: every round acknowledged messages before its kill
    expect(totals.acked1).toBeGreaterThan(ROUNDS);
    expect(totals.acked2).toBeGreaterThan(ROUNDS);
    expect(ledger.retainedAcked.size).toBe(5);
    expect(changer.subscribed.size).toBeGreaterThan(3);
    expect(await broker!.stop()).toBe(0);
    broker = null;
  }, 120_000);
});

describe("acknowledged means durable, with real peers: SIGKILL right after the last acknowledgement", () => {
  const peers = new Peers();
  afterEach(async () => {
    await peers.closeAll();
    if (broker !== null && broker.proc.exitCode === null) await broker.stop();
    broker = null;
  });

  /** Starts the broker process on `db`. */
  async function start(db: string): Promise<number> {
    broker = await startBrokerProcess(["broker", "--host", "127.0.0.1", "--port", "0", "--persistence", db]);
    return broker.ports[0]!;
  }

  async function kill(): Promise<void> {
    broker!.proc.kill("SIGKILL");
    await broker!.proc.exited;
  }

  test("mosquitto_pub and mosquitto_sub -c: the QoS 1 and 2 messages mosquitto_pub got acknowledged, and the retained one, come back", async () => {
    const db = join(dir, "mosquitto.db");
    let port = await start(db);
    const at = () => ["-h", "127.0.0.1", "-p", String(port), "-V", "mqttv5"];
    // a persistent session (-c, Session Expiry 3600), subscribed, then offline
    expect((await finished(peers.mosquitto("mosquitto_sub", [...at(), "-c", "-x", "3600", "-i", "mq-durable", "-q", "2", "-t", "mq/#", "-E"]))).code).toBe(0);
    const lines = (qos: number) => Array.from({ length: 50 }, (_, i) => `q${qos}-${i}`).join("\n") + "\n";
    // -l: one message per line; mosquitto_pub exits 0 once every one is acknowledged
    for (const qos of [1, 2]) expect((await finished(peers.mosquitto("mosquitto_pub", [...at(), "-q", String(qos), "-t", `mq/${qos}`, "-l"], lines(qos)))).code).toBe(0);
    expect((await finished(peers.mosquitto("mosquitto_pub", [...at(), "-q", "1", "-r", "-t", "mqr/t", "-m", "last word"]))).code).toBe(0);
    await kill();
    port = await start(db);
    expect(broker!.stdout).toContain("1 sessions (1 subscriptions, 100 queued");
    const got = await finished(peers.mosquitto("mosquitto_sub", [...at(), "-c", "-x", "3600", "-i", "mq-durable", "-q", "2", "-t", "mq/#", "-C", "100", "-W", "10"]));
    expect(got.code).toBe(0);
    expect(got.stdout.trim().split("\n").sort()).toEqual([...lines(1).trim().split("\n"), ...lines(2).trim().split("\n")].sort()); // QoS 2: each once
    const r = await finished(peers.mosquitto("mosquitto_sub", [...at(), "-t", "mqr/t", "-C", "1", "-W", "10"]));
    expect(r).toMatchObject({ code: 0, stdout: "last word\n" });
  });

  test("MQTT.js: the messages publishAsync() resolved for, the subscription and the retained message come back; QoS 2 once", async () => {
    const db = join(dir, "mqttjs.db");
    let port = await start(db);
    const url = () => `mqtt://127.0.0.1:${port}`;
    const durable = { protocolVersion: 5 as const, clientId: "js-crash", clean: false, properties: { sessionExpiryInterval: 3600 } };
    const sub = await peers.mqttjs(url(), durable);
    await sub.client.subscribeAsync("js/#", { qos: 2 });
    await sub.client.endAsync();
    const pub = await peers.mqttjs(url(), { protocolVersion: 5, clientId: "js-crash-pub" });
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) {
      const qos = (1 + (i % 2)) as 1 | 2;
      await pub.client.publishAsync(`js/${qos}`, `m${i}`, { qos }); // resolves on PUBACK / PUBCOMP
      sent.push(`m${i}`);
    }
    await pub.client.publishAsync("jsr/t", "retained before the crash", { qos: 1, retain: true });
    await kill();
    await peers.closeAll();
    port = await start(db);
    const back = await peers.mqttjs(url(), durable);
    expect(back.connack.sessionPresent).toBe(true);
    const got = await back.receive(sent.length);
    expect(got.map((m) => m.payload).sort()).toEqual([...sent].sort()); // the order between QoS 1 and QoS 2 is not kept (section 4.6: per QoS)
    // the subscription itself survived: a message published now arrives too
    const later = await peers.mqttjs(url(), { protocolVersion: 5, clientId: "js-crash-later" });
    await later.client.publishAsync("js/1", "after the restart", { qos: 1 });
    expect((await back.receive(sent.length + 1)).at(-1)!.payload).toBe("after the restart");
    const reader = await peers.mqttjs(url(), { protocolVersion: 5, clientId: "js-crash-reader" });
    await reader.client.subscribeAsync("jsr/#", { qos: 1 });
    expect((await reader.receive(1))[0]!.payload).toBe("retained before the crash");
    expect(back.inbox.length).toBe(sent.length + 1); // nothing twice
  });

  test("a will waiting out its delay survives the kill and is published when its time comes", async () => {
    const db = join(dir, "will.db");
    let port = await start(db);
    // Peer.connect sends no will: this client writes its own CONNECT
    const willer = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    willer.write(encodePacket({
      type: PacketType.CONNECT, protocolVersion: 5, cleanStart: false, keepAlive: 0, clientId: "crash-will", username: null, password: null,
      properties: { sessionExpiryInterval: 3600 },
      will: { topic: "will/t", payload: new TextEncoder().encode("gone"), qos: 1, retain: true, properties: { willDelayInterval: 2 } },
    }, 5));
    await waitUntil(() => rows(db, "SELECT client_id FROM session").includes("crash-will"), "the session is in the file");
    willer.terminate(); // no DISCONNECT: the will waits out its 2 s
    await waitUntil(() => rows(db, "SELECT client_id FROM will").includes("crash-will"), "the pending will is in the file");
    await kill();
    port = await start(db);
    expect(broker!.stdout).toContain("1 pending wills");
    const got: string[] = [];
    const { peer: watcher } = await Peer.connect(port, "", 0, (p, from) => {
      if (p.type === PacketType.PUBLISH) {
        got.push(text(p.payload));
        if (p.qos === 1) from.send(ack(PacketType.PUBACK, p.packetId));
      }
    });
    watcher.send({ type: PacketType.SUBSCRIBE, packetId: 1, properties: {}, subscriptions: [{ topicFilter: "will/t", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }] });
    await waitUntil(() => got.includes("gone"), "the will was published after the restart");
    watcher.end();
  });
});

/** The first column of every row a query returns from a persistence file, read while the broker has it open. */
function rows(file: string, sql: string): unknown[] {
  const db = new Database(file, { readonly: true });
  try {
    return (db.query(sql).values() as unknown[][]).map((r) => r[0]);
  } finally {
    db.close();
  }
}
