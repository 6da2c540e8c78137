/** Shared test helpers: a broker on port 0, and a raw MQTT client that speaks bytes. */
import { afterEach } from "bun:test";
import type { Socket } from "bun";
import { Broker, type BrokerInit } from "../../lib/broker/broker";
import { BrokerThread } from "../../lib/thread/broker-thread";
import { Framer } from "../../lib/codec/framer";
import { decodePacket, encodePacket, type Packet } from "../../lib/codec/packet";
import { PacketType, type ProtocolVersion } from "../../lib/codec/constants";
import type { ConnectPacket } from "../../lib/codec/packets/connect";
import type { ConnackPacket } from "../../lib/codec/packets/connack";
import type { PublishPacket } from "../../lib/codec/packets/publish";
import type { SubackPacket } from "../../lib/codec/packets/suback";
import type { QoS } from "../../lib/codec/constants";
import type { Subprocess } from "bun";
import { connect as mqttjsConnect, type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from "mqtt";

/** A broker listening on 127.0.0.1 and a free port; stop() it in afterEach/afterAll. */
export async function startBroker(options: BrokerInit = {}): Promise<{ broker: Broker; port: number; url: string; stop: () => Promise<void> }> {
  const broker = new Broker([["127.0.0.1", 0]], options);
  const [port] = await broker.start();
  return { broker, port: port!, url: `mqtt://127.0.0.1:${port}`, stop: () => broker.stop() };
}

/**
 * A client made of a raw socket: send bytes or packets, await the packets that come back, and
 * see when the broker closes the connection. Nothing here interprets the protocol.
 */
export class RawClient {
  readonly received: Packet[] = [];
  readonly closed = Promise.withResolvers<void>();
  isClosed = false;
  private waiters: { predicate: (p: Packet) => boolean; resolve: (p: Packet) => void }[] = [];
  private framer = new Framer();
  private socket!: Socket<undefined>;

  private constructor(public version: ProtocolVersion) {}

  /** Opens a TCP connection to the broker. */
  static async open(port: number, version: ProtocolVersion = 5): Promise<RawClient> {
    const c = new RawClient(version);
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, data) => c.onData(data),
        close: () => c.onClose(),
        error: () => c.onClose(),
      },
    });
    return c;
  }

  /** Opens a connection and completes CONNECT/CONNACK; returns the client and its CONNACK. */
  static async connect(port: number, connect: Partial<ConnectPacket> = {}): Promise<RawClient> {
    const version = connect.protocolVersion ?? 5;
    const c = await RawClient.open(port, version);
    c.send({ type: PacketType.CONNECT, protocolVersion: version, cleanStart: true, keepAlive: 0, clientId: "", will: null, username: null, password: null, properties: {}, ...connect });
    const ack = await c.next(PacketType.CONNACK);
    if (ack.type !== PacketType.CONNACK || ack.reasonCode !== 0) throw new Error(`CONNECT refused: ${JSON.stringify(ack)}`);
    return c;
  }

  private onData(data: Uint8Array): void {
    this.framer.push(data);
    for (let f = this.framer.next(); f !== null; f = this.framer.next()) {
      const p = decodePacket(f.slice(), this.version);
      const i = this.waiters.findIndex((w) => w.predicate(p));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(p);
      else this.received.push(p);
    }
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closed.resolve();
  }

  /** Sends raw bytes or an encoded packet. */
  send(data: Packet | Uint8Array | number[]): void {
    const bytes = Array.isArray(data) ? new Uint8Array(data) : data instanceof Uint8Array ? data : encodePacket(data, this.version);
    this.socket.write(bytes);
  }

  /**
   * The next packet received (of `type`, when given), waiting for it. Packets of other types that
   * arrive meanwhile are kept for later calls.
   */
  next(type?: number, predicate: (p: Packet) => boolean = () => true): Promise<Packet> {
    const match = (p: Packet) => (type === undefined || p.type === type) && predicate(p);
    const i = this.received.findIndex(match);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0]!);
    const { promise, resolve } = Promise.withResolvers<Packet>();
    this.waiters.push({ predicate: match, resolve });
    return promise;
  }

  /** Closes the socket without DISCONNECT (an abnormal close, from the broker's view). */
  end(): void {
    this.socket.end();
  }
}

/** Writes all of `bytes` to `socket`, awaiting `drained()` whenever the kernel takes only part (a client that honours backpressure). */
export async function writeAll(socket: Socket<undefined>, bytes: Uint8Array, drained: () => Promise<void>): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const written = socket.write(bytes, offset, bytes.length - offset);
    if (written < 0) throw new Error("the socket is closed");
    offset += written;
    if (offset < bytes.length) await drained();
  }
}

/** Waits until `condition()` is true (or resolves true), checking on each turn of the event loop; fails after `ms`. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(5);
  }
}

/** UTF-8 bytes of a string. */
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

// ---- real peers: MQTT.js and Mosquitto's command-line clients ----------------------------------

/** A message an MQTT.js client received: topic, payload as text, and the packet as MQTT.js parsed it. */
export interface PeerMessage {
  topic: string;
  payload: string;
  packet: IPublishPacket;
}

/** An MQTT.js client connected by Peers.mqttjs, with its CONNACK and every message it received. */
export interface MqttjsPeer {
  client: MqttClient;
  connack: IConnackPacket;
  inbox: PeerMessage[];
  /** Waits until `n` messages have arrived; resolves with the first `n`. */
  receive(n: number): Promise<PeerMessage[]>;
}

/** Path of one of Mosquitto's command-line clients; throws (never skips) when it is not installed. */
export function mosquittoClient(name: "mosquitto_pub" | "mosquitto_sub"): string {
  const path = Bun.which(name) ?? Bun.which(name, { PATH: "/usr/bin:/usr/local/bin" });
  if (path === null) throw new Error(`${name} is not installed: the interoperability tests need Debian's mosquitto-clients package (apt-get install mosquitto-clients)`);
  return path;
}

/**
 * The real peers one test started: MQTT.js clients and spawned processes. `closeAll()` (in
 * afterEach) ends every client without reconnecting and kills every process still running.
 */
export class Peers {
  private clients: MqttClient[] = [];
  private processes: Subprocess<"pipe" | "ignore", "pipe", "pipe">[] = [];

  /**
   * Connects an MQTT.js client that never reconnects. Messages are collected from before the
   * CONNACK is handled, so what a resumed session sends right behind it is not missed.
   */
  async mqttjs(url: string, options: IClientOptions = {}): Promise<MqttjsPeer> {
    const client = mqttjsConnect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
    this.clients.push(client);
    const inbox: PeerMessage[] = [];
    client.on("message", (topic, payload, packet) => inbox.push({ topic, payload: payload.toString(), packet }));
    const problems: string[] = [];
    const { promise, resolve, reject } = Promise.withResolvers<IConnackPacket>();
    client.once("connect", resolve);
    client.on("error", (e) => {
      problems.push(e.message);
      reject(e);
    });
    client.on("disconnect", (p) => problems.push(`DISCONNECT 0x${(p.reasonCode ?? 0).toString(16)} ${p.properties?.reasonString ?? ""}`));
    client.once("close", () => reject(new Error(`MQTT.js client ${options.clientId ?? ""} closed before CONNACK`)));
    const connack = await promise;
    const receive = async (n: number) => {
      await waitUntil(() => inbox.length >= n, `${n} messages arrived at MQTT.js client ${options.clientId ?? ""} (${inbox.length} so far${problems.length ? `; ${problems.join("; ")}` : ""})`);
      return inbox.slice(0, n);
    };
    return { client, connack, inbox, receive };
  }

  /** Spawns Mosquitto's mosquitto_pub or mosquitto_sub with `args`; stdin is a pipe when `input` is given. */
  mosquitto(name: "mosquitto_pub" | "mosquitto_sub", args: string[], input?: string): Subprocess<"pipe" | "ignore", "pipe", "pipe"> {
    const proc = Bun.spawn([mosquittoClient(name), ...args], { stdin: input === undefined ? "ignore" : "pipe", stdout: "pipe", stderr: "pipe" });
    this.processes.push(proc);
    if (input !== undefined && proc.stdin !== undefined && typeof proc.stdin !== "number") {
      proc.stdin.write(input);
      proc.stdin.end();
    }
    return proc;
  }

  /** Ends every MQTT.js client (forcibly) and kills every process still running. */
  async closeAll(): Promise<void> {
    const clients = this.clients.splice(0);
    const processes = this.processes.splice(0);
    for (const p of processes) if (p.exitCode === null && p.signalCode === null) p.kill();
    await Promise.all([...clients.map((c) => c.endAsync(true)), ...processes.map((p) => p.exited)]);
  }
}

/** Waits for a spawned process to exit; resolves with its exit code and output. */
export async function finished(proc: Subprocess<"pipe" | "ignore", "pipe", "pipe">): Promise<{ code: number; stdout: string; stderr: string }> {
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

// ---- raw conversations: one test's broker and raw clients, and the packets they exchange ------

/** A CONNECT: v5, clean start, keep alive 0, no will, no credentials; `fields` override. */
export function connectPacket(fields: Partial<ConnectPacket> = {}): ConnectPacket {
  return { type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: "", will: null, username: null, password: null, properties: {}, ...fields };
}

/** A PUBLISH: QoS 0, not retained, no properties; `fields` override (give a packetId at QoS 1/2). */
export function publishPacket(topic: string, payload: string | Uint8Array, fields: Partial<PublishPacket> = {}): PublishPacket {
  return { type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic, packetId: 0, properties: {}, payload: typeof payload === "string" ? utf8(payload) : payload, ...fields };
}

/** Text of a received topic or payload. */
export const text = (b: Uint8Array | string): string => (typeof b === "string" ? b : new TextDecoder().decode(b));

/** The next PUBLISH `c` receives (on `topic`, when given). */
export async function nextPublish(c: RawClient, topic?: string): Promise<PublishPacket> {
  const p = await c.next(PacketType.PUBLISH, (p) => topic === undefined || (p.type === PacketType.PUBLISH && text(p.topic) === topic));
  return p as PublishPacket;
}

/** Subscribes `c` to one filter and waits for the SUBACK; resolves with its reason code. */
export async function rawSubscribe(c: RawClient, filter: string, qos: QoS, packetId = 1): Promise<number> {
  c.send({ type: PacketType.SUBSCRIBE, packetId, subscriptions: [{ topicFilter: filter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} });
  const ack = await c.next(PacketType.SUBACK, (p) => p.type === PacketType.SUBACK && p.packetId === packetId);
  return (ack as SubackPacket).reasonCodes[0]!;
}

/** PINGREQ, then waits for PINGRESP: everything the broker sent `c` before it has arrived. */
export async function roundTrip(c: RawClient): Promise<void> {
  c.send({ type: PacketType.PINGREQ });
  await c.next(PacketType.PINGRESP);
}

/**
 * One test's broker and the raw clients it opened. `cleanup()` (in afterEach) ends every client
 * and stops the broker.
 */
export class RawHarness {
  private clients: RawClient[] = [];

  private constructor(
    readonly broker: Broker,
    readonly port: number,
  ) {}

  /** Starts a broker on 127.0.0.1 and a free port. */
  static async start(options: BrokerInit = {}): Promise<RawHarness> {
    const { broker, port } = await startBroker(options);
    return new RawHarness(broker, port);
  }

  /** Opens a connection that has sent nothing yet. */
  async open(version: ProtocolVersion = 5): Promise<RawClient> {
    const c = await RawClient.open(this.port, version);
    this.clients.push(c);
    return c;
  }

  /** Opens a connection and sends CONNECT; resolves with the client and its CONNACK, accepted or not. */
  async connectAck(fields: Partial<ConnectPacket> = {}): Promise<{ client: RawClient; connack: ConnackPacket }> {
    const p = connectPacket(fields);
    const client = await this.open(p.protocolVersion);
    client.send(p);
    const connack = (await client.next(PacketType.CONNACK)) as ConnackPacket;
    return { client, connack };
  }

  /** Opens a connection whose CONNECT must be accepted. */
  async connect(fields: Partial<ConnectPacket> = {}): Promise<RawClient> {
    const { client, connack } = await this.connectAck(fields);
    if (connack.reasonCode !== 0) throw new Error(`CONNECT refused with 0x${connack.reasonCode.toString(16)}: ${JSON.stringify(connack.properties)}`);
    return client;
  }

  /** Ends every client and stops the broker. */
  async cleanup(): Promise<void> {
    for (const c of this.clients.splice(0)) if (!c.isClosed) c.end();
    await this.broker.stop();
  }
}

/**
 * Leaves an offline session behind: client `clientId` connects with Session Expiry 60 s,
 * subscribes to `filter` at `qos` and disconnects. Returns its CONNECT fields, to come back with.
 */
export async function leaveOffline(h: RawHarness, clientId: string, filter: string, qos: QoS): Promise<Partial<ConnectPacket>> {
  const persistent = { clientId, cleanStart: false, properties: { sessionExpiryInterval: 60 } };
  const c = await h.connect(persistent);
  await rawSubscribe(c, filter, qos);
  c.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
  await c.closed.promise;
  await waitUntil(() => !h.broker.clients.has(clientId), "the broker let the client go");
  return persistent;
}

// ---- raw conversations: subscriptions with options, and settling the traffic in flight --------

type Subscription = import("../../lib/codec/packets/subscribe").Subscription;
type SubscribeProperties = import("../../lib/codec/properties").SubscribeProperties;

/** One SUBSCRIBE entry: QoS 0 and no options unless `fields` say otherwise. */
export function subscription(topicFilter: string, fields: Partial<Subscription> = {}): Subscription {
  return { topicFilter, qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0, ...fields };
}

/** Sends one SUBSCRIBE with every entry of `subs` and waits for its SUBACK. */
export async function subscribeAll(c: RawClient, subs: Subscription[], packetId = 1, properties: SubscribeProperties = {}): Promise<SubackPacket> {
  c.send({ type: PacketType.SUBSCRIBE, packetId, subscriptions: subs, properties });
  return (await c.next(PacketType.SUBACK, (p) => p.type === PacketType.SUBACK && p.packetId === packetId)) as SubackPacket;
}

/**
 * Round trips each client in turn. Once it resolves, everything the broker sent these clients
 * because of what they sent before has arrived: the broker routes a PUBLISH to every subscriber
 * before it reads the publisher's next packet, and a connection's output stays in order.
 */
export async function settle(...clients: RawClient[]): Promise<void> {
  for (const c of clients) await roundTrip(c);
}

/** Takes the PUBLISH packets `c` has received and no call has taken yet, in arrival order. */
export function takePublishes(c: RawClient): PublishPacket[] {
  const taken: PublishPacket[] = [];
  for (const p of c.received.splice(0)) {
    if (p.type === PacketType.PUBLISH) taken.push(p);
    else c.received.push(p);
  }
  return taken;
}

/** Waits until `c` has received `n` PUBLISH packets no call has taken yet; takes and returns them (and any more that came along). */
export async function receivePublishes(c: RawClient, n: number): Promise<PublishPacket[]> {
  const got = takePublishes(c);
  while (got.length < n) {
    got.push(await nextPublish(c)); // resolves on the first of a chunk of packets; the rest are in c.received
    got.push(...takePublishes(c));
  }
  return got;
}

// ---- the wire itself: frames exactly as the broker encoded them --------------------------------

/**
 * A connection that keeps what the broker sends as undecoded frames, for tests that pin the exact
 * bytes. It sends only raw bytes. `end()` it when the test is done.
 */
export class WireClient {
  readonly frames: Uint8Array[] = [];
  readonly closed = Promise.withResolvers<void>();
  isClosed = false;
  private waiters: { type: number; resolve: (f: Uint8Array) => void }[] = [];
  private framer = new Framer();
  private socket!: Socket<undefined>;

  /** Opens a TCP connection to the broker; nothing is sent yet. */
  static async open(port: number): Promise<WireClient> {
    const c = new WireClient();
    const close = () => {
      if (c.isClosed) return;
      c.isClosed = true;
      c.closed.resolve();
    };
    c.socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data: (_s, data) => c.onData(data), close, error: close } });
    return c;
  }

  private onData(data: Uint8Array): void {
    this.framer.push(data);
    for (let f = this.framer.next(); f !== null; f = this.framer.next()) {
      const frame = f.slice();
      const i = this.waiters.findIndex((w) => w.type === frame[0]! >> 4);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(frame);
      else this.frames.push(frame);
    }
  }

  /** Writes bytes as given. */
  send(bytes: number[] | Uint8Array): void {
    this.socket.write(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  }

  /** The next frame of packet type `type` (first byte >> 4), as a plain array for readable diffs; other frames stay in `frames`. */
  async next(type: number): Promise<number[]> {
    const i = this.frames.findIndex((f) => f[0]! >> 4 === type);
    if (i >= 0) return Array.from(this.frames.splice(i, 1)[0]!);
    const { promise, resolve } = Promise.withResolvers<Uint8Array>();
    this.waiters.push({ type, resolve });
    return Array.from(await promise);
  }

  /** Closes the socket (without DISCONNECT). */
  end(): void {
    if (!this.isClosed) this.socket.end();
  }
}

/** Waits for the DISCONNECT the broker sends `c` and for the close that follows; resolves with the DISCONNECT. */
export async function disconnection(c: RawClient): Promise<import("../../lib/codec/packets/disconnect").DisconnectPacket> {
  const d = await c.next(PacketType.DISCONNECT);
  await c.closed.promise;
  return d as import("../../lib/codec/packets/disconnect").DisconnectPacket;
}

/**
 * For a test file whose tests each start their own broker: returns the starter, the MQTT.js and
 * Mosquitto peers and the wire clients of the test, and registers the afterEach that cleans
 * them all up.
 */
export function useHarness(): { start: (options?: BrokerInit) => Promise<RawHarness>; peers: Peers; wires: WireClient[] } {
  let h: RawHarness | null = null;
  const peers = new Peers();
  const wires: WireClient[] = [];
  afterEach(async () => {
    try {
      await peers.closeAll();
      for (const w of wires.splice(0)) w.end();
    } finally {
      await h?.cleanup();
      h = null;
    }
  });
  return { start: async (options: BrokerInit = {}) => (h = await RawHarness.start(options)), peers, wires };
}

/**
 * What `start()` throws for the same options on this thread (Broker) and in a Worker
 * (BrokerThread), in that order; both are stopped again. A start that succeeds counts as an Error
 * saying "started".
 */
export async function startErrors(options: BrokerInit): Promise<[Error, Error]> {
  const errors: Error[] = [];
  for (const b of [new Broker([["127.0.0.1", 0]], options), new BrokerThread([["127.0.0.1", 0]], options)]) {
    await b.start().then(() => errors.push(new Error("started")), (e: Error) => errors.push(e));
    await b.stop();
  }
  return [errors[0]!, errors[1]!];
}
