/**
 * Interoperability with Mosquitto's command-line clients (Debian `mosquitto-clients`):
 * mosquitto_pub and mosquitto_sub, spawned as processes, talking to our broker at protocol
 * levels 5 and 3.1.1, with each other and with MQTT.js. A missing mosquitto_pub/mosquitto_sub
 * fails the tests (CI installs the package); nothing is skipped. Every test kills what it spawned.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import type { Broker } from "../../lib/broker/broker";
import { finished, mosquittoClient, Peers, startBroker, waitUntil } from "./helpers";

type QoS = 0 | 1 | 2;
type Process = Subprocess<"pipe" | "ignore", "pipe", "pipe">;

/** Name, mosquitto's -V value, MQTT.js protocolVersion. */
const VERSIONS: [string, string, 4 | 5][] = [
  ["v5", "mqttv5", 5],
  ["v3.1.1", "mqttv311", 4],
];

/** mosquitto_sub's output format: topic, QoS, retain flag, payload. */
const FORMAT = "%t|%q|%r|%p";

let broker: Broker;
let port: number;
let url: string;
let stop: () => Promise<void>;
const peers = new Peers();

beforeEach(async () => {
  ({ broker, port, url, stop } = await startBroker());
});

afterEach(async () => {
  try {
    await peers.closeAll();
  } finally {
    await stop();
  }
});

/** Connection arguments shared by mosquitto_pub and mosquitto_sub. */
const at = (version: string) => ["-h", "127.0.0.1", "-p", String(port), "-V", version];

/** Waits until the broker holds `n` subscriptions; fails with the process's stderr if it exited first. */
async function subscribed(proc: Process, n = 1): Promise<void> {
  await waitUntil(() => broker.trie.size >= n || proc.exitCode !== null, `${n} subscriptions are held`);
  if (broker.trie.size < n) {
    const { code, stderr } = await finished(proc);
    throw new Error(`mosquitto_sub exited with ${code} before subscribing: ${stderr}`);
  }
}

/** Waits for a process to exit, expects exit code 0, and returns its standard output. */
async function succeeds(proc: Process): Promise<string> {
  const { code, stdout, stderr } = await finished(proc);
  expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
  return stdout;
}

test("mosquitto_pub and mosquitto_sub are installed (Debian mosquitto-clients)", () => {
  expect(mosquittoClient("mosquitto_pub")).toMatch(/mosquitto_pub$/);
  expect(mosquittoClient("mosquitto_sub")).toMatch(/mosquitto_sub$/);
});

describe.each(VERSIONS)("Mosquitto clients %s", (_name, version, protocolVersion) => {
  test.each([
    [0, 0],
    [1, 1],
    [2, 2],
    [2, 1],
    [1, 0],
  ] as [QoS, QoS][])("mosquitto_pub at QoS %d -> mosquitto_sub at QoS %d: each message once, in order, at the lower QoS [MQTT-3.8.4-8]", async (pubQos, subQos) => {
    const sub = peers.mosquitto("mosquitto_sub", [...at(version), "-t", "interop/qos", "-q", String(subQos), "-C", "3", "-F", FORMAT]);
    await subscribed(sub);
    const pub = peers.mosquitto("mosquitto_pub", [...at(version), "-t", "interop/qos", "-q", String(pubQos), "-l"], "m0\nm1\nm2\n");
    await succeeds(pub);
    const qos = Math.min(pubQos, subQos);
    expect(await succeeds(sub)).toBe(["m0", "m1", "m2"].map((p) => `interop/qos|${qos}|0|${p}\n`).join(""));
  });

  test("a retained message (-r) reaches a later mosquitto_sub with RETAIN set, and a null message (-r -n) clears it [MQTT-3.3.1-5] [MQTT-3.3.1-6]", async () => {
    await succeeds(peers.mosquitto("mosquitto_pub", [...at(version), "-t", "interop/retained", "-q", "1", "-r", "-m", "kept"]));
    const sub = peers.mosquitto("mosquitto_sub", [...at(version), "-t", "interop/#", "-q", "1", "-C", "1", "-v"]);
    expect(await succeeds(sub)).toBe("interop/retained kept\n");
    const flagged = peers.mosquitto("mosquitto_sub", [...at(version), "-t", "interop/#", "-q", "2", "-C", "1", "-F", FORMAT]);
    expect(await succeeds(flagged)).toBe("interop/retained|1|1|kept\n");
    await succeeds(peers.mosquitto("mosquitto_pub", [...at(version), "-t", "interop/retained", "-q", "1", "-r", "-n"]));
    await waitUntil(() => !broker.retained.has("interop/retained"), "the retained message is cleared");
  });

  test("mosquitto_pub -> MQTT.js subscriber", async () => {
    const sub = await peers.mqttjs(url, { protocolVersion, clientId: "mqttjs-sub" });
    await sub.client.subscribeAsync("interop/to-mqttjs", { qos: 2 });
    await succeeds(peers.mosquitto("mosquitto_pub", [...at(version), "-t", "interop/to-mqttjs", "-q", "2", "-m", "from mosquitto"]));
    const [m] = await sub.receive(1);
    expect([m!.topic, m!.payload, m!.packet.qos]).toEqual(["interop/to-mqttjs", "from mosquitto", 2]);
  });

  test("MQTT.js publisher -> mosquitto_sub", async () => {
    const sub = peers.mosquitto("mosquitto_sub", [...at(version), "-t", "interop/from-mqttjs", "-q", "2", "-C", "3", "-F", FORMAT]);
    await subscribed(sub);
    const pub = await peers.mqttjs(url, { protocolVersion, clientId: "mqttjs-pub" });
    for (const qos of [0, 1, 2] as QoS[]) await pub.client.publishAsync("interop/from-mqttjs", `q${qos}`, { qos });
    expect(await succeeds(sub)).toBe("interop/from-mqttjs|0|0|q0\ninterop/from-mqttjs|1|0|q1\ninterop/from-mqttjs|2|0|q2\n");
  });

  test.each([0, 1, 2] as QoS[])("mosquitto_sub -C 1000 reads a burst of 1000 lines from mosquitto_pub -l at QoS %d, in order", async (qos) => {
    const lines = Array.from({ length: 1000 }, (_, i) => `line ${i} ${"x".repeat(i % 50)}`);
    const sub = peers.mosquitto("mosquitto_sub", [...at(version), "-t", "interop/burst", "-q", String(qos), "-C", "1000", "-v"]);
    await subscribed(sub);
    const pub = peers.mosquitto("mosquitto_pub", [...at(version), "-t", "interop/burst", "-q", String(qos), "-l"], lines.join("\n") + "\n");
    await succeeds(pub);
    expect((await succeeds(sub)).split("\n")).toEqual([...lines.map((l) => `interop/burst ${l}`), ""]);
  });

  test("a persistent mosquitto_sub session (-c) gets the QoS 1 messages published while it was away [MQTT-3.1.2-5]", async () => {
    const first = peers.mosquitto("mosquitto_sub", [...at(version), "-t", "interop/session", "-q", "1", "-c", "-i", "mosq-persist", "-E"]);
    await succeeds(first); // -E: exits (with DISCONNECT) once the SUBACK is in
    await waitUntil(() => !broker.clients.has("mosq-persist"), "mosquitto_sub is disconnected");
    await succeeds(peers.mosquitto("mosquitto_pub", [...at(version), "-t", "interop/session", "-q", "1", "-l"], "away-1\naway-2\naway-3\n"));
    const again = peers.mosquitto("mosquitto_sub", [...at(version), "-t", "interop/session", "-q", "1", "-c", "-i", "mosq-persist", "-C", "3", "-F", FORMAT]);
    expect(await succeeds(again)).toBe(["away-1", "away-2", "away-3"].map((p) => `interop/session|1|0|${p}\n`).join(""));
  });

  test("the will of a killed mosquitto_sub (--will-topic) is published [MQTT-3.1.2-8]", async () => {
    const watcher = await peers.mqttjs(url, { protocolVersion, clientId: "watcher" });
    await watcher.client.subscribeAsync("interop/will/#", { qos: 1 });
    const doomed = peers.mosquitto("mosquitto_sub", [...at(version), "-t", "interop/nothing", "--will-topic", "interop/will/mosq", "--will-payload", "killed", "--will-qos", "1"]);
    await subscribed(doomed, 2); // the watcher's and its own
    doomed.kill("SIGKILL");
    const [m] = await watcher.receive(1);
    expect([m!.topic, m!.payload, m!.packet.qos]).toEqual(["interop/will/mosq", "killed", 1]);
  });
});

describe("Mosquitto clients v5 properties", () => {
  test("user properties and content type from mosquitto_pub -D reach mosquitto_sub unaltered and in order [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]", async () => {
    const sub = peers.mosquitto("mosquitto_sub", [...at("mqttv5"), "-t", "interop/props", "-q", "1", "-C", "1", "-F", "%P|%C|%p"]);
    await subscribed(sub);
    const pub = peers.mosquitto("mosquitto_pub", [
      ...at("mqttv5"),
      "-t", "interop/props",
      "-q", "1",
      "-m", "hello",
      "-D", "PUBLISH", "user-property", "k", "v",
      "-D", "PUBLISH", "user-property", "k2", "v2",
      "-D", "PUBLISH", "user-property", "k", "again",
      "-D", "PUBLISH", "content-type", "text/plain",
    ]);
    await succeeds(pub);
    expect(await succeeds(sub)).toBe("k:v k2:v2 k:again|text/plain|hello\n");
  });

  test("user properties from mosquitto_pub -D reach an MQTT.js v5 subscriber", async () => {
    const sub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "mqttjs-sub" });
    await sub.client.subscribeAsync("interop/props", { qos: 1 });
    await succeeds(peers.mosquitto("mosquitto_pub", [...at("mqttv5"), "-t", "interop/props", "-q", "1", "-m", "hello", "-D", "PUBLISH", "user-property", "k", "v", "-D", "PUBLISH", "response-topic", "interop/reply"]));
    const [m] = await sub.receive(1);
    expect(m!.payload).toBe("hello");
    expect(m!.packet.properties?.userProperties).toEqual({ k: "v" });
    expect(m!.packet.properties?.responseTopic).toBe("interop/reply");
  });

  test("user properties from an MQTT.js v5 publisher reach mosquitto_sub", async () => {
    const sub = peers.mosquitto("mosquitto_sub", [...at("mqttv5"), "-t", "interop/props", "-q", "1", "-C", "1", "-F", "%P|%C|%R|%p"]);
    await subscribed(sub);
    const pub = await peers.mqttjs(url, { protocolVersion: 5, clientId: "mqttjs-pub" });
    await pub.client.publishAsync("interop/props", "hi", { qos: 1, properties: { userProperties: { a: "1", b: "2" }, contentType: "text/plain", responseTopic: "interop/reply" } });
    expect(await succeeds(sub)).toBe("a:1 b:2|text/plain|interop/reply|hi\n");
  });

  test("a v5 mosquitto_pub reaches a 3.1.1 mosquitto_sub, and back", async () => {
    const sub4 = peers.mosquitto("mosquitto_sub", [...at("mqttv311"), "-t", "interop/cross/to4", "-q", "2", "-C", "1", "-F", FORMAT]);
    const sub5 = peers.mosquitto("mosquitto_sub", [...at("mqttv5"), "-t", "interop/cross/to5", "-q", "2", "-C", "1", "-F", FORMAT]);
    await subscribed(sub4, 2);
    await subscribed(sub5, 2);
    await succeeds(peers.mosquitto("mosquitto_pub", [...at("mqttv5"), "-t", "interop/cross/to4", "-q", "2", "-m", "from v5", "-D", "PUBLISH", "user-property", "k", "v"]));
    await succeeds(peers.mosquitto("mosquitto_pub", [...at("mqttv311"), "-t", "interop/cross/to5", "-q", "2", "-m", "from 3.1.1"]));
    expect(await succeeds(sub4)).toBe("interop/cross/to4|2|0|from v5\n");
    expect(await succeeds(sub5)).toBe("interop/cross/to5|2|0|from 3.1.1\n");
  });
});
