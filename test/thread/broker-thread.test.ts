/**
 * BrokerThread: the Broker in a Bun Worker. Its lifecycle (start/stop, repeatedly, with no Worker
 * or port left behind), errors inside the Worker surfacing in start(), a busy main thread while
 * the Worker serves, and real peers (MQTT.js, mosquitto_pub/mosquitto_sub) against it.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Broker, type BrokerInit } from "../../lib/broker/broker";
import type { Address } from "../../lib/broker/options";
import { deserializeError, serializeError } from "../../lib/thread/messages";
import { BrokerThread } from "../../lib/thread/broker-thread";
import { MqttError } from "../../lib/codec/reason-codes";
import { finished, mosquittoClient, Peers, waitUntil } from "../broker/helpers";
import { CliProcesses } from "../cli/cli-process";
import { accepts, makeCertificate, removeDir, tempDir } from "../client/helpers";

const peers = new Peers();
const processes = new CliProcesses();
const threads: BrokerThread[] = [];
const dirs: string[] = [];

/** A started BrokerThread on 127.0.0.1, port 0; stopped after the test. */
async function startThread(options: BrokerInit = {}): Promise<{ thread: BrokerThread; port: number; url: string }> {
  const thread = new BrokerThread([["127.0.0.1", 0]], options);
  threads.push(thread);
  const [port] = await thread.start();
  return { thread, port: port!, url: `mqtt://127.0.0.1:${port}` };
}

afterEach(async () => {
  processes.killAll();
  await peers.closeAll();
  for (const t of threads.splice(0)) await t.stop();
  for (const d of dirs.splice(0)) removeDir(d);
});

/** Threads of this process, from /proc (Linux). */
const threadCount = () => Number(/Threads:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))![1]);

/** Whether a TCP connection to the port is refused (nothing listens). */
const refused = async (port: number) => !(await accepts(port));

describe("BrokerThread lifecycle", () => {
  test("start() resolves with the bound ports; stop() sends v5 clients DISCONNECT 0x8B, closes the port and ends the Worker", async () => {
    const { thread, port, url } = await startThread();
    expect(port).toBeGreaterThan(0);
    expect(thread.ports).toEqual([port]);
    const v5 = await peers.mqttjs(url, { protocolVersion: 5, clientId: "v5" });
    const disconnected = Promise.withResolvers<number | undefined>();
    v5.client.on("disconnect", (p) => disconnected.resolve(p.reasonCode));
    await thread.stop();
    expect(await disconnected.promise).toBe(0x8b);
    expect(thread.ports).toEqual([]);
    expect(await refused(port)).toBe(true);
  });

  test("start and stop 30 times: every start serves, every stop frees its port, and no Worker thread is left behind", async () => {
    const cycle = async () => {
      const thread = new BrokerThread([["127.0.0.1", 0]]);
      const [port] = await thread.start();
      const peer = await peers.mqttjs(`mqtt://127.0.0.1:${port}`, { clientId: "cycle" });
      await peer.client.subscribeAsync("cycle/t");
      await peer.client.publishAsync("cycle/t", "m");
      await peer.receive(1);
      await peers.closeAll();
      await thread.stop();
      expect(await refused(port!)).toBe(true);
    };
    await cycle(); // the first Worker brings up thread pools that stay
    const after1 = threadCount();
    for (let i = 0; i < 29; i++) await cycle();
    // a Worker left running per cycle would add 29 or more
    expect(threadCount()).toBeLessThanOrEqual(after1 + 3);
  });

  test("start() twice throws; stop() twice is harmless; a stopped BrokerThread starts again, on the same port", async () => {
    const { thread, port } = await startThread();
    await expect(thread.start()).rejects.toThrow("the broker is already started");
    await thread.stop();
    await thread.stop();
    const thread2 = new BrokerThread([["127.0.0.1", port]]);
    threads.push(thread2);
    expect(await thread2.start()).toEqual([port]);
    const peer = await peers.mqttjs(`mqtt://127.0.0.1:${port}`, { clientId: "again" });
    expect(peer.connack.returnCode ?? peer.connack.reasonCode ?? 0).toBe(0);
  });

  test("start() and stop() called together: stop() waits for the start, both settle, the port is closed; a second start() at once is refused", async () => {
    const thread = new BrokerThread([["127.0.0.1", 0]]);
    threads.push(thread);
    const starting = thread.start();
    await expect(thread.start()).rejects.toThrow("the broker is already started");
    const stopping = thread.stop();
    const [port] = await starting;
    await stopping;
    expect(thread.ports).toEqual([]);
    expect(await refused(port!)).toBe(true);
  });

  test("serveForever() resolves once stop() has run", async () => {
    const { thread } = await startThread();
    let served = false;
    const serving = thread.serveForever().then(() => (served = true));
    await Bun.sleep(0);
    expect(served).toBe(false);
    await thread.stop();
    await serving;
    expect(served).toBe(true);
  });

  test("a Worker that ends without stop(): serveForever() throws, the port is closed, and the BrokerThread can start again", async () => {
    const { thread, port } = await startThread();
    const serving = thread.serveForever();
    // what a crash inside the Worker looks like from here: the Worker is gone
    (thread as unknown as { worker: Worker }).worker.terminate();
    await expect(serving).rejects.toThrow("the broker thread ended unexpectedly");
    expect(thread.ports).toEqual([]);
    expect(await refused(port)).toBe(true);
    expect(await thread.start()).toHaveLength(1);
  });

  test("a logger option gets the Worker's log lines: listening, and one line per packet at info", async () => {
    const lines: string[] = [];
    const { port, url } = await startThread({ logLevel: "info", logger: (l) => lines.push(l) });
    await peers.mqttjs(url, { clientId: "logged" });
    await waitUntil(() => lines.some((l) => l.includes("Sent CONNACK(2)")), "the CONNACK was logged");
    // warnings may come first (the descriptor limit below maxConnections, on most machines)
    expect(lines.filter((l) => !l.includes(" warning: "))[0]).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT.* info: listening on 127\\.0\\.0\\.1:${port}$`));
    expect(lines.some((l) => l.includes("Received CONNECT(1): ClientId=logged"))).toBe(true);
  });
});

describe("errors inside the Worker reject start() as the main thread's Broker would fail", () => {
  /** The error of `new Broker(addresses).start()` on this thread. */
  async function mainThreadError(addresses: Address[]): Promise<Error> {
    const broker = new Broker(addresses);
    try {
      await broker.start();
    } catch (e) {
      return e as Error;
    }
    await broker.stop();
    throw new Error("the main thread's broker started");
  }

  let busy: { stop: (closeActive: boolean) => void } | null = null;
  afterEach(() => busy?.stop(true));

  const cases: [string, () => Address[]][] = [
    ["a port in use", () => {
      const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      busy = listener;
      return [["127.0.0.1", listener.port]];
    }],
    ["a bad TLS certificate", () => [["127.0.0.1", 0, { cert: "not a certificate", key: "not a key" }]]],
    ["a port out of range", () => [["127.0.0.1", 70000]]],
    ["a second listener that fails after the first was bound", () => [["127.0.0.1", 0], ["127.0.0.1", 70000]]],
  ];

  test.each(cases)("%s: same class, message and code; no Worker left running", async (_, make) => {
    const addresses = make();
    const expected = await mainThreadError(addresses);
    const before = threadCount();
    const thread = new BrokerThread(addresses);
    let got: unknown = null;
    try {
      await thread.start();
    } catch (e) {
      got = e;
    }
    expect(got).toBeInstanceOf(expected.constructor as ErrorConstructor);
    expect((got as Error).constructor).toBe(expected.constructor);
    expect((got as Error).message).toBe(expected.message);
    expect((got as { code?: unknown }).code).toBe((expected as { code?: unknown }).code);
    expect(thread.ports).toEqual([]);
    expect(threadCount()).toBeLessThanOrEqual(before + 2);
    await thread.stop(); // harmless: nothing runs
  });

  test("errors cross as data: the library's MqttError keeps its class, reason code and reason name", () => {
    const e = deserializeError(serializeError(new MqttError(0x97, "quota exceeded")));
    expect(e).toBeInstanceOf(MqttError);
    expect((e as MqttError).reasonCode).toBe(0x97);
    expect((e as MqttError).reasonName).toBe("Quota Exceeded");
    expect(e.message).toBe("quota exceeded");
    const odd = deserializeError(serializeError("a string thrown"));
    expect(odd).toBeInstanceOf(Error);
    expect(odd.message).toBe("a string thrown");
  });
});

describe("a busy main thread", () => {
  const N = 200;
  const peerScript = join(import.meta.dir, "busy-peer.ts");

  /**
   * Spins this thread on CPU work until `file` exists or `ms` pass, never yielding to the event
   * loop; returns whether the file appeared, and whether an event-loop callback ran meanwhile.
   */
  function spinUntil(file: string, ms: number): { appeared: boolean; yielded: boolean } {
    let yielded = false;
    setImmediate(() => (yielded = true));
    const deadline = performance.now() + ms;
    let x = 0;
    for (;;) {
      for (let i = 0; i < 100_000; i++) x += Math.sqrt(i);
      if (existsSync(file)) return { appeared: true, yielded };
      if (performance.now() > deadline) return { appeared: false, yielded: yielded || x < 0 };
    }
  }

  test(`a peer process exchanges ${N} QoS 1 messages through the BrokerThread while this thread spins in a CPU loop`, async () => {
    const { url } = await startThread();
    const dir = tempDir("mqtttools-busy-");
    dirs.push(dir);
    const result = join(dir, "result.json");
    const peer = Bun.spawn([process.execPath, peerScript, url, String(N), result], { stdout: "pipe", stderr: "pipe" });
    const spun = spinUntil(result, 30_000);
    const out = await finished(peer);
    expect(spun.yielded).toBe(false); // the whole exchange happened inside one synchronous loop
    expect(spun.appeared).toBe(true);
    expect(out.code).toBe(0);
    const { received } = JSON.parse(readFileSync(result, "utf8")) as { received: string[] };
    expect(received.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
  }, 40_000);

  test("the control: with the Broker on this thread, the same peer gets nothing while the thread spins", async () => {
    const broker = new Broker([["127.0.0.1", 0]]);
    const [port] = await broker.start();
    const dir = tempDir("mqtttools-busy-");
    dirs.push(dir);
    const result = join(dir, "result.json");
    const peer = Bun.spawn([process.execPath, peerScript, `mqtt://127.0.0.1:${port}`, String(N), result], { stdout: "pipe", stderr: "pipe" });
    try {
      expect(spinUntil(result, 1500).appeared).toBe(false);
      // once the thread is free the same broker serves the peer
      expect((await finished(peer)).code).toBe(0);
      expect(existsSync(result)).toBe(true);
    } finally {
      peer.kill();
      await broker.stop();
    }
  }, 30_000);
});

describe("real peers against a BrokerThread", () => {
  test.each([5, 4] as const)("MQTT.js at protocol level %d: QoS 0, 1 and 2 round trips, retained messages and a will", async (protocolVersion) => {
    const { url } = await startThread();
    const sub = await peers.mqttjs(url, { protocolVersion, clientId: `sub${protocolVersion}` });
    await sub.client.subscribeAsync("t/#", { qos: 2 });
    const pub = await peers.mqttjs(url, { protocolVersion, clientId: `pub${protocolVersion}` });
    for (const qos of [0, 1, 2] as const) await pub.client.publishAsync(`t/${qos}`, `qos ${qos}`, { qos });
    const got = await sub.receive(3);
    expect(got.map((m) => [m.topic, m.payload, m.packet.qos])).toEqual([["t/0", "qos 0", 0], ["t/1", "qos 1", 1], ["t/2", "qos 2", 2]]);

    await pub.client.publishAsync("r/kept", "retained", { qos: 1, retain: true });
    const late = await peers.mqttjs(url, { protocolVersion, clientId: `late${protocolVersion}` });
    await late.client.subscribeAsync("r/#", { qos: 1 });
    const [kept] = await late.receive(1);
    expect([kept!.topic, kept!.payload, kept!.packet.retain]).toEqual(["r/kept", "retained", true]);

    const willing = await peers.mqttjs(url, { protocolVersion, clientId: `will${protocolVersion}`, will: { topic: "t/will", payload: Buffer.from("gone"), qos: 1, retain: false } });
    willing.client.stream.destroy(); // no DISCONNECT: the will is published
    const [will] = (await sub.receive(4)).slice(3);
    expect([will!.topic, will!.payload]).toEqual(["t/will", "gone"]);
  });

  test("mosquitto_sub and mosquitto_pub: 1000 QoS 2 lines in order, and a retained message", async () => {
    const { port } = await startThread();
    const at = ["-h", "127.0.0.1", "-p", String(port)];
    // stdbuf -oL: mosquitto_sub's stdout line-buffered, though a pipe; -d prints the SUBACK, so
    // the test knows it is subscribed before anything is published
    const sub = processes.spawn([...at, "-V", "5", "-t", "burst/t", "-q", "2", "-C", "1000", "-d"], undefined, ["stdbuf", "-oL", mosquittoClient("mosquitto_sub")]);
    await sub.line(/^Subscribed \(mid: 1\): 2$/);
    const lines = Array.from({ length: 1000 }, (_, i) => `line ${i}`);
    const pub = await finished(peers.mosquitto("mosquitto_pub", [...at, "-V", "5", "-t", "burst/t", "-q", "2", "-l"], lines.join("\n") + "\n"));
    expect(pub).toMatchObject({ code: 0, stderr: "" });
    expect(await sub.exit()).toBe(0);
    expect(sub.lines.filter((l) => l.startsWith("line "))).toEqual(lines);

    expect((await finished(peers.mosquitto("mosquitto_pub", [...at, "-t", "ret/t", "-m", "kept", "-r", "-q", "1"]))).code).toBe(0);
    const ret = await finished(peers.mosquitto("mosquitto_sub", [...at, "-t", "ret/#", "-C", "1", "-v"]));
    expect(ret).toMatchObject({ code: 0, stdout: "ret/t kept\n" });
  });

  test("a TLS listener whose certificate and key are Bun.file()s (read on this thread, sent as bytes)", async () => {
    const dir = tempDir("mqtttools-thread-tls-");
    dirs.push(dir);
    const certificate = makeCertificate(dir);
    const thread = new BrokerThread([["127.0.0.1", 0, { cert: Bun.file(certificate.certFile), key: Bun.file(certificate.keyFile) }]]);
    threads.push(thread);
    const [port] = await thread.start();
    const peer = await peers.mqttjs(`mqtts://127.0.0.1:${port}`, { clientId: "tls", ca: certificate.cert, rejectUnauthorized: true });
    await peer.client.subscribeAsync("tls/t");
    await peer.client.publishAsync("tls/t", "secret");
    expect((await peer.receive(1))[0]!.payload).toBe("secret");
  });
});
