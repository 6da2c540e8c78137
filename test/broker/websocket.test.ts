/**
 * The WebSocket listener (MQTT 5.0 section 6) in raw conversations: the upgrade (subprotocol,
 * path, the 101's one Sec-WebSocket-Protocol), packets split across frames and several in one,
 * text frames, mutated frames from a seeded fuzzer, a slow subscriber's memory bound, the proxy's
 * X-Forwarded-For in logs, and auth and admission applying unchanged.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Broker, type BrokerInit } from "../../lib/broker/broker";
import type { PausableListener } from "../../lib/broker/overload/overload";
import { BrokerThread } from "../../lib/thread/broker-thread";
import type { Connection } from "../../lib/broker/connection";
import type { WsTransport } from "../../lib/broker/transport/ws";
import { encodePacket, PacketType, ReasonCode, type ConnackPacket, type PublishPacket } from "../../lib/codec";
import { prng } from "../fixtures/prng";
import { connectPacket, publishPacket, RawClient, text, waitUntil } from "./helpers";
import { clientFrame, Opcode, WsRawClient, type UpgradeAnswer, type UpgradeOptions } from "./ws-helpers";

let broker: Broker | null = null;
const clients: (WsRawClient | RawClient)[] = [];

/** A broker with a TCP listener and a WebSocket listener (options `ws`), both on free ports. */
async function start(options: BrokerInit = {}, ws: { path?: string; trustProxy?: boolean } = {}): Promise<{ tcpPort: number; wsPort: number; broker: Broker }> {
  broker = new Broker([["127.0.0.1", 0], ["127.0.0.1", 0, { websocket: true, ...ws }]], options);
  const [tcpPort, wsPort] = (await broker.start()) as [number, number];
  return { tcpPort, wsPort, broker };
}

async function open(port: number, options: UpgradeOptions = {}, version: 4 | 5 = 5): Promise<WsRawClient> {
  const c = await WsRawClient.open(port, options, version);
  clients.push(c);
  return c;
}

async function connect(port: number, clientId: string, version: 4 | 5 = 5): Promise<WsRawClient> {
  const c = await open(port, {}, version);
  c.send(connectPacket({ clientId, protocolVersion: version }));
  const ack = (await c.next(PacketType.CONNACK)) as ConnackPacket;
  expect(ack.reasonCode).toBe(0);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.end();
  await broker?.stop();
  broker = null;
});

describe("the upgrade", () => {
  test("[MQTT-6.0.0-4] the 101 selects subprotocol mqtt, in exactly one Sec-WebSocket-Protocol header", async () => {
    const { wsPort } = await start();
    const c = await open(wsPort, { protocols: "mqtt" });
    expect(c.answer.status).toBe(101);
    expect(c.answer.headers.filter(([k]) => k === "sec-websocket-protocol")).toEqual([["sec-websocket-protocol", "mqtt"]]);
  });

  test.each([
    ["mqttv3.1", "mqttv3.1"],
    ["mqttv3.1, mqtt", "mqtt"],
    ["chat, mqtt", "mqtt"],
  ])("offered %p: selects %p, once", async (offered, selected) => {
    const { wsPort } = await start();
    const c = await open(wsPort, { protocols: offered });
    expect(c.answer.headers.filter(([k]) => k === "sec-websocket-protocol")).toEqual([["sec-websocket-protocol", selected]]);
  });

  test.each([
    ["no Sec-WebSocket-Protocol", null],
    ["another subprotocol only", "chat"],
  ])("an upgrade with %s gets HTTP 400", async (_what, protocols) => {
    const { wsPort } = await start();
    const answer = (await WsRawClient.upgrade(wsPort, { protocols })) as UpgradeAnswer;
    expect(answer.status).toBe(400);
  });

  test("a path other than /mqtt gets HTTP 404; a configured path is served, and \"*\" serves any", async () => {
    const { wsPort } = await start();
    expect(((await WsRawClient.upgrade(wsPort, { path: "/other" })) as UpgradeAnswer).status).toBe(404);
    await broker!.stop();
    const custom = await start({}, { path: "/brokers/mqtt" });
    expect(((await WsRawClient.upgrade(custom.wsPort, { path: "/mqtt" })) as UpgradeAnswer).status).toBe(404);
    expect((await open(custom.wsPort, { path: "/brokers/mqtt" })).answer.status).toBe(101);
    await broker!.stop();
    const any = await start({}, { path: "*" });
    expect((await open(any.wsPort, { path: "/whatever/it/is" })).answer.status).toBe(101);
  });

  test("a plain HTTP request on the path is told to upgrade (426)", async () => {
    const { wsPort } = await start();
    const res = await fetch(`http://127.0.0.1:${wsPort}/mqtt`);
    expect(res.status).toBe(426);
  });
});

describe("frames and packets", () => {
  test("[MQTT-6.0.0-2] a CONNECT sent one byte per frame is accepted", async () => {
    const { wsPort } = await start();
    const c = await open(wsPort);
    for (const b of encodePacket(connectPacket({ clientId: "bytewise" }), 5)) c.frame(Opcode.Binary, new Uint8Array([b]));
    const ack = (await c.next(PacketType.CONNACK)) as ConnackPacket;
    expect(ack.reasonCode).toBe(0);
    expect(c.opcodes).toEqual([Opcode.Binary]); // [MQTT-6.0.0-1] the broker answers in binary frames
  });

  test("[MQTT-6.0.0-2] two packets in one frame are both handled, and a packet may be split across frames at any byte", async () => {
    const { wsPort } = await start();
    const c = await open(wsPort);
    const connect = encodePacket(connectPacket({ clientId: "joined" }), 5);
    const subscribe = encodePacket({ type: PacketType.SUBSCRIBE, packetId: 7, subscriptions: [{ topicFilter: "ws/t", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} }, 5);
    const both = new Uint8Array(connect.length + subscribe.length);
    both.set(connect);
    both.set(subscribe, connect.length);
    c.frame(Opcode.Binary, both);
    expect(((await c.next(PacketType.CONNACK)) as ConnackPacket).reasonCode).toBe(0);
    expect((await c.next(PacketType.SUBACK)).type).toBe(PacketType.SUBACK);
    // a PUBLISH and half of another in one frame, the rest in the next
    const p1 = encodePacket(publishPacket("ws/t", "one", { qos: 1, packetId: 1 }), 5);
    const p2 = encodePacket(publishPacket("ws/t", "two", { qos: 1, packetId: 2 }), 5);
    const stream = new Uint8Array(p1.length + p2.length);
    stream.set(p1);
    stream.set(p2, p1.length);
    const cut = p1.length + 3;
    c.frame(Opcode.Binary, stream.subarray(0, cut));
    c.frame(Opcode.Binary, stream.subarray(cut));
    const got = [text(((await c.next(PacketType.PUBLISH)) as PublishPacket).payload), text(((await c.next(PacketType.PUBLISH)) as PublishPacket).payload)];
    expect(got).toEqual(["one", "two"]);
  });

  test("a packet in a fragmented message (continuation frames) is handled", async () => {
    const { wsPort } = await start();
    const c = await open(wsPort);
    const connect = encodePacket(connectPacket({ clientId: "fragments" }), 5);
    c.frame(Opcode.Binary, connect.subarray(0, 4), false);
    c.frame(Opcode.Continuation, connect.subarray(4));
    expect(((await c.next(PacketType.CONNACK)) as ConnackPacket).reasonCode).toBe(0);
  });

  test.each([5, 4] as const)("[MQTT-6.0.0-1] a text frame closes the connection (protocol %p), before or after CONNECT", async (version) => {
    const { wsPort, broker } = await start();
    const before = await open(wsPort, {}, version);
    before.frame(Opcode.Text, new TextEncoder().encode("hello"));
    await before.closed.promise;
    const after = await connect(wsPort, `text-${version}`, version);
    after.frame(Opcode.Text, encodePacket({ type: PacketType.PINGREQ }, version)); // an MQTT packet, but in a text frame
    await after.closed.promise;
    expect(after.received.some((p) => p.type === PacketType.PINGRESP)).toBe(false);
    await waitUntil(() => broker.connections.size === 0, "the broker let both go");
  });

  test("a malformed packet over WebSocket gets the same DISCONNECT as over TCP", async () => {
    const { wsPort } = await start();
    const c = await connect(wsPort, "malformed");
    c.send(new Uint8Array([0x30, 0x03, 0x00, 0x05, 0x61])); // PUBLISH whose topic length runs past the packet
    const d = await c.next(PacketType.DISCONNECT);
    expect(d.type === PacketType.DISCONNECT && d.reasonCode).toBe(ReasonCode.MalformedPacket);
    await c.closed.promise;
  });
});

describe("robustness", () => {
  test("mutated frames from a seeded fuzzer never take the broker down", async () => {
    const errors: string[] = [];
    const { wsPort, tcpPort, broker } = await start({ logLevel: "error", logger: (l) => errors.push(l) });
    const seed = 14;
    const rand = prng(seed);
    const connectBytes = encodePacket(connectPacket({ clientId: "fuzz" }), 5);
    const publish = encodePacket(publishPacket("fuzz/t", "payload", { qos: 1, packetId: 3 }), 5);
    const subscribe = encodePacket({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: "fuzz/#", qos: 2, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} }, 5);
    for (let round = 0; round < 60; round++) {
      const c = await open(wsPort);
      for (let k = 0; k < 6; k++) {
        const base = [connectBytes, publish, subscribe][Math.floor(rand() * 3)]!;
        const frame = clientFrame(rand() < 0.8 ? Opcode.Binary : Math.floor(rand() * 16), base);
        // mutate: flip bytes anywhere in the frame (header, mask, payload), truncate or extend
        const mutated = new Uint8Array(frame.length + (rand() < 0.2 ? Math.floor(rand() * 8) : 0));
        mutated.set(frame);
        const flips = 1 + Math.floor(rand() * 4);
        for (let f = 0; f < flips; f++) mutated[Math.floor(rand() * mutated.length)] = Math.floor(rand() * 256);
        c.raw(rand() < 0.1 ? mutated.subarray(0, Math.floor(rand() * mutated.length)) : mutated);
      }
      c.end();
    }
    // the broker still serves both listeners
    const ok = await connect(wsPort, `after-fuzz-${seed}`);
    ok.send({ type: PacketType.PINGREQ });
    expect((await ok.next(PacketType.PINGRESP)).type).toBe(PacketType.PINGRESP);
    const tcp = await RawClient.connect(tcpPort, { clientId: "tcp-after-fuzz" });
    clients.push(tcp);
    expect(broker.clients.has("tcp-after-fuzz")).toBe(true);
    expect(errors).toEqual([]); // no internal error: every bad input was a protocol error or a closed WebSocket
  }, 30_000);

  test("a WebSocket subscriber that stops reading is bounded like a TCP one: pending output within maxOutputBytes plus one message, Bun's buffer within one flush, QoS 0 to it dropped", async () => {
    const { wsPort, tcpPort, broker } = await start();
    const bound = broker.options.maxOutputBytes;
    const slow = await connect(wsPort, "slow");
    slow.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: "flood", qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} });
    await slow.next(PacketType.SUBACK);
    slow.pause();
    const conn = broker.clients.get("slow")! as Connection;
    const transport = conn.socket as WsTransport;
    let peakPending = 0;
    let peakBuffered = 0;
    const watch = setInterval(() => {
      peakPending = Math.max(peakPending, conn.pending);
      peakBuffered = Math.max(peakBuffered, transport.buffered);
    }, 1);

    const pub = await RawClient.connect(tcpPort, { clientId: "pub" });
    clients.push(pub);
    const message = encodePacket(publishPacket("flood", new Uint8Array(4000).fill(0x61)), 5);
    const chunk = new Uint8Array(message.length * 256);
    for (let i = 0; i < 256; i++) chunk.set(message, i * message.length);
    try {
      for (let i = 0; i < 40; i++) {
        pub.send(chunk);
        pub.send({ type: PacketType.PINGREQ });
        await pub.next(PacketType.PINGRESP);
        peakPending = Math.max(peakPending, conn.pending);
        peakBuffered = Math.max(peakBuffered, transport.buffered);
      }
    } finally {
      clearInterval(watch);
    }
    expect(peakPending).toBeGreaterThan(0);
    expect(peakPending).toBeLessThanOrEqual(bound + message.length);
    expect(peakBuffered).toBeLessThanOrEqual(bound + message.length);
    expect(conn.dropped).toBeGreaterThan(0);
    expect(broker.clients.get("slow")).toBe(conn); // QoS 0 overflow drops messages, not the client
  }, 30_000);
});

describe("everything else unchanged", () => {
  test("with trustProxy the log shows the address from X-Forwarded-For; without it, the peer's", async () => {
    const log: string[] = [];
    const { wsPort } = await start({ logLevel: "info", logger: (l) => log.push(l) }, { trustProxy: true });
    const c = await open(wsPort, { headers: { "X-Forwarded-For": "198.51.100.1, 203.0.113.7" } });
    c.send(connectPacket({ clientId: "proxied" }));
    await c.next(PacketType.CONNACK);
    expect(log.some((l) => l.includes("client 'proxied' (203.0.113.7)"))).toBe(true);
    await broker!.stop();
    log.length = 0;
    const plain = await start({ logLevel: "info", logger: (l) => log.push(l) });
    const d = await open(plain.wsPort, { headers: { "X-Forwarded-For": "203.0.113.7" } });
    d.send(connectPacket({ clientId: "direct" }));
    await d.next(PacketType.CONNACK);
    expect(log.some((l) => l.includes("client 'direct' (127.0.0.1)"))).toBe(true);
  });

  test("[MQTT-3.1.4-2] authentication applies: a broker without anonymous access refuses a WebSocket client without credentials (0x87)", async () => {
    const { wsPort } = await start({ allowAnonymous: false, passwordFile: null });
    const c = await open(wsPort);
    c.send(connectPacket({ clientId: "anon" }));
    const ack = (await c.next(PacketType.CONNACK)) as ConnackPacket;
    // without a password file anonymous clients get in unless told otherwise; with allowAnonymous false they do not
    expect(ack.reasonCode).toBe(ReasonCode.NotAuthorized);
  });

  test("[MQTT-3.1.2-22] keep alive applies: a WebSocket client silent for 1.5 times its keep alive is disconnected", async () => {
    const { wsPort } = await start();
    const c = await open(wsPort);
    c.send(connectPacket({ clientId: "silent", keepAlive: 1 }));
    await c.next(PacketType.CONNACK);
    const d = await c.next(PacketType.DISCONNECT);
    expect(d.type === PacketType.DISCONNECT && d.reasonCode).toBe(ReasonCode.KeepAliveTimeout);
    await c.closed.promise;
  });

  test("admission applies: over maxConnectionRate a WebSocket is closed at once", async () => {
    const { wsPort, broker } = await start({ maxConnectionRate: 1 });
    const first = await open(wsPort);
    first.send(connectPacket({ clientId: "first" }));
    await first.next(PacketType.CONNACK);
    const second = await open(wsPort);
    await second.closed.promise;
    expect(broker.overload.counters.refusedRate).toBe(1);
  });

  test("a TCP client and a WebSocket client exchange messages both ways", async () => {
    const { wsPort, tcpPort } = await start();
    const ws = await connect(wsPort, "ws-side");
    const tcp = await RawClient.connect(tcpPort, { clientId: "tcp-side" });
    clients.push(tcp);
    ws.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: "to/ws", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} });
    await ws.next(PacketType.SUBACK);
    tcp.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: "to/tcp", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} });
    await tcp.next(PacketType.SUBACK);
    tcp.send(publishPacket("to/ws", "from tcp", { qos: 1, packetId: 5 }));
    ws.send(publishPacket("to/tcp", "from ws", { qos: 1, packetId: 6 }));
    expect(text(((await ws.next(PacketType.PUBLISH)) as PublishPacket).payload)).toBe("from tcp");
    expect(text(((await tcp.next(PacketType.PUBLISH)) as PublishPacket).payload)).toBe("from ws");
  });

  test("a paused WebSocket listener (as when descriptors run out) refuses new clients and serves its connected ones; resumed, it listens on the same port", async () => {
    const { wsPort, broker } = await start();
    const c = await connect(wsPort, "stays");
    const listener = (broker as unknown as { servers: PausableListener[] }).servers[1]!; // what Overload pauses
    listener.pause();
    expect(((await WsRawClient.upgrade(wsPort).catch(() => ({ status: 0, headers: [], body: "" }))) as UpgradeAnswer).status).toBe(0);
    c.send({ type: PacketType.PINGREQ });
    expect((await c.next(PacketType.PINGRESP)).type).toBe(PacketType.PINGRESP);
    expect(listener.resume()).toBe(true);
    await connect(wsPort, "after-resume");
  });

  test("BrokerThread serves WebSocket listeners too", async () => {
    const thread = new BrokerThread([["127.0.0.1", 0, { websocket: true, path: "/t" }]]);
    const [port] = await thread.start();
    try {
      const c = await open(port!, { path: "/t" });
      c.send(connectPacket({ clientId: "in-a-worker" }));
      expect(((await c.next(PacketType.CONNACK)) as ConnackPacket).reasonCode).toBe(0);
    } finally {
      await thread.stop();
    }
  });

  test("stop() sends v5 WebSocket clients DISCONNECT 0x8B and closes with a Close frame", async () => {
    const { wsPort, broker: b } = await start();
    const c = await connect(wsPort, "stopped");
    await b.stop();
    broker = null;
    const d = await c.next(PacketType.DISCONNECT);
    expect(d.type === PacketType.DISCONNECT && d.reasonCode).toBe(ReasonCode.ServerShuttingDown);
    await c.closed.promise;
  });
});
