/**
 * MQTT over WebSocket with real peers: MQTT.js (npm) over ws:// and wss:// against our broker,
 * at QoS 0/1/2 and both protocol levels, with wills, retained messages and a session that moves
 * from TCP to WebSocket; our Client over ws:// against Mosquitto's websockets listener (Debian's
 * 2.0.11) and over ws:// and wss:// against our broker.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker } from "../../lib/broker/broker";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { Clients, makeCertificate, nextMessage, startMosquitto, type Certificate } from "../client/helpers";
import { Peers, waitUntil } from "./helpers";

let dir: string;
let certificate: Certificate;
let broker: Broker;
let tcpPort: number;
let wsPort: number;
let wssPort: number;
const peers = new Peers();
const clients = new Clients();
const ours: Client[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mqtttools-ws-"));
  certificate = makeCertificate(dir);
  const tls = { cert: certificate.cert, key: certificate.key };
  broker = new Broker([["127.0.0.1", 0], ["127.0.0.1", 0, { websocket: true }], ["127.0.0.1", 0, { websocket: true, tls }]]);
  [tcpPort, wsPort, wssPort] = (await broker.start()) as [number, number, number];
});

afterEach(async () => {
  await peers.closeAll();
  await clients.stopAll();
  await Promise.all(ours.splice(0).map((c) => c.stop()));
});

afterAll(async () => {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
});

const urlOf = (scheme: "ws" | "wss") => `${scheme}://127.0.0.1:${scheme === "ws" ? wsPort : wssPort}/mqtt`;
const tlsOf = (scheme: "ws" | "wss") => (scheme === "wss" ? { ca: certificate.cert, rejectUnauthorized: true } : {});

describe("MQTT.js over WebSocket against our broker", () => {
  const cases = (["ws", "wss"] as const).flatMap((scheme) => ([5, 4] as const).flatMap((version) => ([0, 1, 2] as const).map((qos) => [scheme, version, qos] as const)));
  test.each(cases)("%s://, protocol %p, QoS %p: a message reaches a subscriber on TCP and one on WebSocket", async (scheme, protocolVersion, qos) => {
    const topic = `ws/${scheme}/${protocolVersion}/${qos}`;
    const onWs = await peers.mqttjs(urlOf(scheme), { protocolVersion, ...tlsOf(scheme) });
    await onWs.client.subscribeAsync(topic, { qos });
    const onTcp = await peers.mqttjs(`mqtt://127.0.0.1:${tcpPort}`, { protocolVersion });
    await onTcp.client.subscribeAsync(topic, { qos });
    const pub = await peers.mqttjs(urlOf(scheme), { protocolVersion, ...tlsOf(scheme) });
    await pub.client.publishAsync(topic, `qos ${qos}`, { qos });
    for (const peer of [onWs, onTcp]) {
      const [m] = await peer.receive(1);
      expect(m!.topic).toBe(topic);
      expect(m!.payload).toBe(`qos ${qos}`);
      expect(m!.packet.qos).toBe(qos);
    }
  });

  test.each([5, 4] as const)("protocol %p: a WebSocket client's will is published when its connection drops", async (protocolVersion) => {
    const topic = `ws/will/${protocolVersion}`;
    const watcher = await peers.mqttjs(urlOf("ws"), { protocolVersion });
    await watcher.client.subscribeAsync(topic, { qos: 1 });
    const dying = await peers.mqttjs(urlOf("ws"), { protocolVersion, clientId: `dying-${protocolVersion}`, will: { topic, payload: Buffer.from("gone"), qos: 1, retain: false } });
    await waitUntil(() => broker.clients.has(`dying-${protocolVersion}`), "the broker has the client");
    broker.clients.get(`dying-${protocolVersion}`)!.socket.terminate(); // an abnormal end: the will goes out
    dying.client.end(true);
    const [m] = await watcher.receive(1);
    expect(m!.payload).toBe("gone");
  });

  test.each([5, 4] as const)("protocol %p: a retained message published over WebSocket reaches a later WebSocket subscriber, flagged retained", async (protocolVersion) => {
    const topic = `ws/retained/${protocolVersion}`;
    const pub = await peers.mqttjs(urlOf("wss"), { protocolVersion, ...tlsOf("wss") });
    await pub.client.publishAsync(topic, "kept", { qos: 1, retain: true });
    const sub = await peers.mqttjs(urlOf("ws"), { protocolVersion });
    await sub.client.subscribeAsync(topic, { qos: 1 });
    const [m] = await sub.receive(1);
    expect(m!.payload).toBe("kept");
    expect(m!.packet.retain).toBe(true);
    await pub.client.publishAsync(topic, "", { qos: 1, retain: true }); // clear it
  });

  test.each([5, 4] as const)("protocol %p: a session made over TCP is resumed over WebSocket, with the message queued meanwhile", async (protocolVersion) => {
    const clientId = `mover-${protocolVersion}`;
    const topic = `ws/session/${protocolVersion}`;
    const persistent = protocolVersion === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };
    const first = await peers.mqttjs(`mqtt://127.0.0.1:${tcpPort}`, { protocolVersion, clientId, ...persistent });
    await first.client.subscribeAsync(topic, { qos: 1 });
    await first.client.endAsync();
    await waitUntil(() => !broker.clients.has(clientId), "the session went offline");
    const pub = await peers.mqttjs(urlOf("ws"), { protocolVersion });
    await pub.client.publishAsync(topic, "while away", { qos: 1 });
    const back = await peers.mqttjs(urlOf("ws"), { protocolVersion, clientId, ...persistent });
    expect(back.connack.sessionPresent).toBe(true);
    const [m] = await back.receive(1);
    expect(m!.payload).toBe("while away");
  });
});

describe("our Client over WebSocket", () => {
  test.each(["ws", "wss"] as const)("against our broker over %s://, user and password from the URL, QoS 0/1/2 both ways with a TCP client", async (scheme) => {
    const port = scheme === "ws" ? wsPort : wssPort;
    const c = new Client(`${scheme}://someone:secret@127.0.0.1:${port}/mqtt`, { connectDelays: [], tls: scheme === "wss" ? { ca: certificate.cert } : undefined });
    ours.push(c);
    await c.start();
    const tcp = clients.make(tcpPort, { connectDelays: [] });
    await tcp.start();
    await c.subscribe(`ours/${scheme}/in`, { qos: 2 });
    await tcp.subscribe(`ours/${scheme}/out`, { qos: 2 });
    for (const qos of [0, 1, 2] as const) {
      await tcp.publish(new Message(`ours/${scheme}/in`, `in ${qos}`, { qos }));
      await c.publish(new Message(`ours/${scheme}/out`, `out ${qos}`, { qos }));
      expect((await nextMessage(c)).text).toBe(`in ${qos}`);
      expect((await nextMessage(tcp)).text).toBe(`out ${qos}`);
    }
    await waitUntil(() => [...broker.clients.values()].some((conn) => conn.session?.username === "someone"), "the broker saw the URL's user name");
  });

  test("a large burst (4 MB in 256 KB messages) over ws:// arrives whole and in order", async () => {
    const c = new Client(`ws://127.0.0.1:${wsPort}/mqtt`, { connectDelays: [] });
    ours.push(c);
    await c.start();
    await c.subscribe("ours/burst", { qos: 1 });
    const n = 16;
    const payloads = Array.from({ length: n }, (_, i) => new Uint8Array(256 * 1024).fill(i + 1));
    await Promise.all(payloads.map((p) => c.publish(new Message("ours/burst", p, { qos: 1 }))));
    for (let i = 0; i < n; i++) {
      const m = await nextMessage(c);
      expect(m.payload.length).toBe(256 * 1024);
      expect(m.payload.every((b) => b === i + 1)).toBe(true);
    }
  });

  test("over wss:// a broker certificate the client does not trust is refused", async () => {
    const c = new Client(`wss://127.0.0.1:${wssPort}/mqtt`, { connectDelays: [] });
    ours.push(c);
    await expect(c.start()).rejects.toThrow();
  });

  test("a URL with a wrong path is refused when connecting", async () => {
    const c = new Client(`ws://127.0.0.1:${wsPort}/nothing-here`, { connectDelays: [] });
    ours.push(c);
    await expect(c.start()).rejects.toThrow();
  });

  test("against Mosquitto's websockets listener: subscribe, publish QoS 0/1/2, protocol 5 and 3.1.1", async () => {
    const mosquitto = await startMosquitto({ websocket: true });
    try {
      for (const protocolVersion of [5, 4] as const) {
        const c = new Client(`ws://127.0.0.1:${mosquitto.port}/mqtt`, { connectDelays: [], protocolVersion });
        ours.push(c);
        await c.start();
        await c.subscribe("mosq/ws", { qos: 2 });
        for (const qos of [0, 1, 2] as const) {
          await c.publish(new Message("mosq/ws", `v${protocolVersion} qos ${qos}`, { qos }));
          const m = await nextMessage(c);
          expect(m.text).toBe(`v${protocolVersion} qos ${qos}`);
          expect(m.qos).toBe(qos);
        }
        await c.stop();
      }
    } finally {
      await Promise.all(ours.splice(0).map((c) => c.stop()));
      await mosquitto.stop();
    }
  });
});
