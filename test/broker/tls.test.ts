/**
 * TLS listeners: a broker listening on plain TCP and TLS at once ([host, port, tls] addresses),
 * with a self-signed certificate the test makes with openssl. Real peers: MQTT.js over mqtts://
 * and Mosquitto's mosquitto_pub / mosquitto_sub with --cafile.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker } from "../../lib/broker/broker";
import { finished, Peers, waitUntil } from "./helpers";

let dir: string;
let cert: string;
let key: string;
let broker: Broker;
let plainPort: number;
let tlsPort: number;
const peers = new Peers();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mqtttools-tls-"));
  const made = Bun.spawnSync([
    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
  ], { stderr: "pipe" });
  if (made.exitCode !== 0) throw new Error(`openssl could not make a certificate: ${made.stderr.toString()}`);
  cert = readFileSync(join(dir, "cert.pem"), "utf8");
  key = readFileSync(join(dir, "key.pem"), "utf8");
  broker = new Broker([["127.0.0.1", 0], ["127.0.0.1", 0, { cert, key }]]);
  [plainPort, tlsPort] = (await broker.start()) as [number, number];
});

afterEach(() => peers.closeAll());

afterAll(async () => {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("TLS listener", () => {
  test("start() resolves with one port per address, the TLS one distinct", () => {
    expect(plainPort).toBeGreaterThan(0);
    expect(tlsPort).toBeGreaterThan(0);
    expect(tlsPort).not.toBe(plainPort);
  });

  test.each([5, 4] as const)("MQTT.js over mqtts:// (protocol %p) reaches a subscriber on the plain listener", async (protocolVersion) => {
    const sub = await peers.mqttjs(`mqtt://127.0.0.1:${plainPort}`, { protocolVersion });
    await sub.client.subscribeAsync("tls/x", { qos: 1 });
    const pub = await peers.mqttjs(`mqtts://127.0.0.1:${tlsPort}`, { protocolVersion, ca: cert, rejectUnauthorized: true });
    await pub.client.publishAsync("tls/x", "over tls", { qos: 1 });
    const [m] = await sub.receive(1);
    expect(m!.topic).toBe("tls/x");
    expect(m!.payload).toBe("over tls");
  });

  test("a client that does not trust the certificate cannot connect", async () => {
    await expect(peers.mqttjs(`mqtts://127.0.0.1:${tlsPort}`, { rejectUnauthorized: true })).rejects.toThrow();
  });

  test("a plain MQTT client on the TLS port gets no CONNACK, and the broker keeps serving", async () => {
    await expect(peers.mqttjs(`mqtt://127.0.0.1:${tlsPort}`, { connectTimeout: 1000 })).rejects.toThrow();
    const ok = await peers.mqttjs(`mqtts://127.0.0.1:${tlsPort}`, { ca: cert });
    expect(ok.connack.returnCode ?? ok.connack.reasonCode ?? 0).toBe(0);
  });

  test("mosquitto_sub and mosquitto_pub with --cafile round-trip over TLS", async () => {
    const tls = ["-h", "127.0.0.1", "-p", String(tlsPort), "--cafile", join(dir, "cert.pem")];
    const sub = peers.mosquitto("mosquitto_sub", [...tls, "-t", "tls/mosq", "-C", "1", "-q", "1"]);
    await waitUntil(() => broker.trie.find("tls/mosq") !== undefined || sub.exitCode !== null, "mosquitto_sub subscribed");
    const pub = peers.mosquitto("mosquitto_pub", [...tls, "-t", "tls/mosq", "-m", "secure", "-q", "1"]);
    const [p, s] = await Promise.all([finished(pub), finished(sub)]);
    expect(p.code).toBe(0);
    expect(s.code).toBe(0);
    expect(s.stdout.trim()).toBe("secure");
  });
});
