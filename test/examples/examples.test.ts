/**
 * Every file in examples/ is run here against a broker on a free port, and its output checked, so
 * that none of them rots: the ones that end by themselves are run to the end; the long-running
 * ones (the TLS broker, the broker thread) are started, used with mosquitto_pub and our Client,
 * then stopped. examples/publish-count.test.ts is a test file and runs with the rest of the suite;
 * here it is checked to be in the README word for word.
 */
import { NatsServer } from "../cluster/nats-server";
import { afterEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Broker, Client, ConnectError, Message } from "../../index";
import { testBroker, testClient } from "../../lib/testing";
import { makeCertificates, tempDir } from "../cli/broker-process";
import { Cli } from "../cli/cli-process";

const root = new URL("../../", import.meta.url).pathname;
const examplesDir = join(root, "examples");
const running: Cli[] = [];
const cleanups: (() => void | Promise<void>)[] = [];

afterEach(async () => {
  for (const cli of running.splice(0)) {
    cli.proc.kill("SIGKILL");
    await cli.exit();
  }
  for (const clean of cleanups.splice(0)) await clean();
});

/** Starts `bun examples/NAME ...args` with stdout read line by line. */
function start(name: string, args: string[], env: Record<string, string> = {}): Cli {
  const proc = Bun.spawn([process.execPath, join(examplesDir, name), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const cli = new Cli(proc);
  running.push(cli);
  return cli;
}

/** Waits for the example's exit; fails unless it is `code`. Resolves with its stdout lines. */
async function exits(cli: Cli, code = 0): Promise<string[]> {
  const got = await cli.exit();
  if (got !== code) throw new Error(`exited with ${got}, not ${code}: ${JSON.stringify(cli.lines)}\n${cli.stderr}`);
  return cli.lines;
}

/** Runs an example to its end (exit code 0); resolves with its stdout lines. */
const run = (name: string, args: string[]) => exits(start(name, args));

/** The first stdout line matching `pattern`, once there is one; resolves with its first group. */
async function captured(cli: Cli, pattern: RegExp): Promise<string> {
  await cli.line(pattern);
  return pattern.exec(cli.lines.find((l) => pattern.test(l)) ?? "")![1]!;
}

/** Runs a Mosquitto command-line client to its end. */
async function mosquitto(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([cmd, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}

/** Waits for the next message a client receives (fails on a lost connection). */
async function nextMessage(client: Client): Promise<Message> {
  const m = await client.messages.get();
  if (m === null) throw new Error("the connection was lost");
  return m;
}

/** The examples this file has tests for (the test file runs in the suite); any other fails the last test. */
const covered = new Set<string>(["publish-count.test.ts"]);

/** A test of an example, named after it. */
function exampleTest(files: string | string[], title: string, fn: () => Promise<void>): void {
  for (const f of [files].flat()) covered.add(f);
  test(`${[files].flat().join(" and ")} ${title}`, fn, 20_000);
}

describe("examples", () => {
  exampleTest(["subscriber.ts", "publisher.ts"], "publish and receive; the subscriber ends after COUNT messages", async () => {
    await using broker = await testBroker();
    const subscriber = start("subscriber.ts", [broker.url, "2"]);
    await subscriber.line("Subscribed.");
    expect(await run("publisher.ts", [broker.url])).toEqual(["Successfully published 'bar' on test/mqtttools/foo."]);
    expect(await run("publisher.ts", [broker.url, "hello"])).toEqual(["Successfully published 'hello' on test/mqtttools/foo."]);
    expect(await exits(subscriber)).toEqual([
      "Subscribed.",
      "Topic:   test/mqtttools/foo",
      "Message: bar",
      "Topic:   test/mqtttools/foo",
      "Message: hello",
    ]);
  });

  exampleTest("broker-tls.ts", "serves TLS clients of its password file until SIGTERM", async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    makeCertificates(dir);
    const passwords = join(dir, "passwords");
    const made = Bun.spawnSync(["mosquitto_passwd", "-c", "-b", passwords, "alice", "secret"], { stderr: "pipe" });
    expect(made.exitCode).toBe(0);
    // the paths as arguments, the port from the environment
    const broker = start("broker-tls.ts", [join(dir, "server.crt"), join(dir, "server.key"), passwords], { MQTT_PORT: "0" });
    const port = await captured(broker, /^Listening on port (\d+) \(TLS, password file .*\)\.$/);
    const tls = ["--cafile", join(dir, "ca.crt"), "-h", "localhost", "-p", port];

    await using client = new Client("127.0.0.1", Number(port), { tls: { ca: Bun.file(join(dir, "ca.crt")) }, username: "alice", password: "secret", connectDelays: [] });
    await client.start();
    await client.subscribe("test/tls");
    const published = await mosquitto("mosquitto_pub", [...tls, "-u", "alice", "-P", "secret", "-t", "test/tls", "-m", "over TLS"]);
    expect(published).toMatchObject({ code: 0, stderr: "" });
    expect((await nextMessage(client)).text).toBe("over TLS");

    const refused = await mosquitto("mosquitto_pub", [...tls, "-u", "alice", "-P", "wrong", "-t", "test/tls", "-m", "x"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("Connection Refused: bad user name or password");
    const anonymous = new Client("127.0.0.1", Number(port), { tls: { ca: Bun.file(join(dir, "ca.crt")) }, connectDelays: [] });
    await expect(anonymous.start()).rejects.toThrow(ConnectError);
    await anonymous.stop();

    broker.proc.kill("SIGTERM");
    expect(await exits(broker)).toEqual([`Listening on port ${port} (TLS, password file ${passwords}).`, "SIGTERM: stopping.", "Stopped."]);
    expect(broker.stderr).toContain("connected client");
  });

  exampleTest("broker-tls.ts", "without its files says how to run it", async () => {
    const cli = start("broker-tls.ts", [], { MQTT_CERT: "", MQTT_KEY: "", MQTT_PASSWORD_FILE: "" });
    await exits(cli, 2);
    expect(cli.stderr).toContain("usage: bun examples/broker-tls.ts CERT KEY PASSWORD_FILE");
  });

  exampleTest("broker-thread.ts", "serves clients while its main thread is busy", async () => {
    const thread = start("broker-thread.ts", ["0", "60"]);
    const port = await captured(thread, /^Listening on port (\d+)\.$/);
    await thread.line("Main thread busy for 60 s.");
    // the main thread is in its loop now: the Worker alone answers
    await using subscriber = await testClient(`mqtt://127.0.0.1:${port}`);
    await subscriber.subscribe("demo");
    const published = await mosquitto("mosquitto_pub", ["-h", "127.0.0.1", "-p", port, "-t", "demo", "-m", "hello"]);
    expect(published.code).toBe(0);
    expect((await nextMessage(subscriber)).text).toBe("hello");
    expect(thread.lines).toEqual([`Listening on port ${port}.`, "Main thread busy for 60 s."]); // still busy
    thread.proc.kill("SIGKILL");
    await thread.exit();
  });

  exampleTest("broker-thread.ts", "stops the thread when its main thread is done", async () => {
    const lines = await run("broker-thread.ts", ["0", "0"]);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^Listening on port \d+\.$/);
    expect(lines.slice(1)).toEqual(["Main thread busy for 0 s.", "Main thread free again (0 primes found); stopping the broker."]);
  });

  exampleTest("reconnect.ts", "reconnects after a broker restart and gets messages again", async () => {
    let broker = new Broker([["127.0.0.1", 0]]);
    const [port] = await broker.start();
    const url = `mqtt://127.0.0.1:${port}`;
    try {
      const cli = start("reconnect.ts", [url, "2"]);
      await cli.line("Connected (session present: false).");
      await using publisher = await testClient(url, { reconnectDelays: [0.05] });
      await publisher.publish(new Message("test/reconnect", "one"));
      await cli.line("Got 'one' on test/reconnect.");

      await broker.stop();
      await cli.line(/^Connection lost \(.*Server Shutting Down.*\); reconnecting\.$/);
      broker = new Broker([["127.0.0.1", port!]]); // the same port, so that the example finds it
      await broker.start();
      await cli.line("Reconnected (session present: false).");
      await publisher.publish(new Message("test/reconnect", "two", { qos: 1 })); // sent once the publisher has reconnected too
      const lines = await exits(cli);
      expect(lines).toHaveLength(5);
      expect(lines[2]).toMatch(/^Connection lost \(Disconnected by 127\.0\.0\.1:\d+: Server Shutting Down \(0x8b\): the broker is shutting down\); reconnecting\.$/);
      expect(lines.filter((_, i) => i !== 2)).toEqual([
        "Connected (session present: false).",
        "Got 'one' on test/reconnect.",
        "Reconnected (session present: false).",
        "Got 'two' on test/reconnect.",
      ]);
    } finally {
      await broker.stop();
    }
  });

  exampleTest("resume-session.ts", "gets what was published while it was away; SessionResumeError the first time", async () => {
    await using broker = await testBroker();
    expect(await run("resume-session.ts", [broker.url])).toEqual(["No session to resume; subscribing to test/resume."]);
    await using publisher = await testClient(broker);
    await publisher.publish(new Message("test/resume", "one", { qos: 1 }));
    await publisher.publish(new Message("test/resume", "two", { qos: 1 }));
    expect(await run("resume-session.ts", [broker.url, "2"])).toEqual(["Session resumed.", "Got 'one' on test/resume.", "Got 'two' on test/resume."]);
    expect(await run("resume-session.ts", [broker.url])).toEqual(["Session resumed."]);
    // another broker has no such session
    await using other = await testBroker();
    expect(await run("resume-session.ts", [other.url])).toEqual(["No session to resume; subscribing to test/resume."]);
  });

  exampleTest("request-response.ts", "matches three answers to their requests", async () => {
    await using broker = await testBroker();
    expect(await run("request-response.ts", [broker.url])).toEqual([
      "request-1: 2+3 = 5",
      "request-2: 40+2 = 42",
      "request-3: 1000+337 = 1337",
    ]);
  });

  exampleTest("topic-aliases.ts", "sends and receives the long topic once, then only its alias", async () => {
    await using broker = await testBroker();
    const topic = "building/north-wing/floor-3/room-301/sensors/temperature";
    const lines = await run("topic-aliases.ts", [broker.url]);
    expect(lines).toEqual([
      `Sent PUBLISH(3): Topic=${topic}, QoS=1, PacketId=2, TopicAlias=1, Payload=4 bytes`,
      `Received PUBLISH(3): Topic=${topic}, QoS=0, TopicAlias=1, Payload=4 bytes`,
      `Received Message('${topic}', '21.5')`,
      "Sent PUBLISH(3): Topic=, QoS=1, PacketId=3, TopicAlias=1, Payload=4 bytes",
      "Received PUBLISH(3): Topic=, QoS=0, TopicAlias=1, Payload=4 bytes",
      `Received Message('${topic}', '21.6')`,
      "Sent PUBLISH(3): Topic=, QoS=1, PacketId=4, TopicAlias=1, Payload=4 bytes",
      "Received PUBLISH(3): Topic=, QoS=0, TopicAlias=1, Payload=4 bytes",
      `Received Message('${topic}', '21.8')`,
    ]);
  });

  exampleTest("qos2.ts", "shows the four-packet handshake and delivers each message once", async () => {
    await using broker = await testBroker();
    expect(await run("qos2.ts", [broker.url, "300"])).toEqual([
      "Sent PUBLISH(3): Topic=test/qos2, QoS=2, PacketId=1, Payload=1 bytes",
      "Received PUBREC(5): PacketId=1",
      "Sent PUBREL(6): PacketId=1",
      "Received PUBCOMP(7): PacketId=1",
      "Received 300 of 300 messages: 0 duplicates, 0 missing.",
    ]);
  });

  exampleTest("worker-pool.ts", "spreads the jobs over the workers, each job to one", async () => {
    await using broker = await testBroker();
    const lines = await run("worker-pool.ts", [broker.url, "30", "3"]);
    expect(lines).toHaveLength(4);
    expect(lines[3]).toBe("30 of 30 jobs done, 0 of them twice.");
    const counts = lines.slice(0, 3).map((l, i) => Number(new RegExp(`^worker-${i + 1} did (\\d+) jobs\\.$`).exec(l)?.[1]));
    expect(counts.every((n) => n > 0)).toBe(true); // all three took part
    expect(counts.reduce((a, b) => a + b)).toBe(30);
  });

  exampleTest("will.ts", "sees the will when its device crashes, and the retained one on the next run", async () => {
    await using broker = await testBroker();
    const device = "device: online; now crashing without a DISCONNECT.";
    const first = await run("will.ts", [broker.url]);
    expect(first.filter((l) => l !== device)).toEqual([
      "monitor: status/device-1 is online.",
      "monitor: status/device-1 is offline.",
      "monitor: the device exited with code 1.",
    ]);
    expect(first).toContain(device);
    const second = await run("will.ts", [broker.url]);
    expect(second.filter((l) => l !== device)).toEqual([
      "monitor: status/device-1 is offline (retained).",
      "monitor: status/device-1 is online.",
      "monitor: status/device-1 is offline.",
      "monitor: the device exited with code 1.",
    ]);
  });

  exampleTest("websocket.ts", "a message published over TCP reaches a subscriber that connected with a ws:// URL", async () => {
    expect(await run("websocket.ts", ["through both"])).toEqual(["Subscribed over WebSocket.", "Received over WebSocket: through both"]);
  });

  exampleTest("cluster.ts", "two nodes on a nats-server act as one: a message and a retained message cross between them", async () => {
    const nats = await NatsServer.start();
    cleanups.push(() => nats.stop());
    expect(await run("cluster.ts", [nats.url])).toEqual([
      "Two nodes joined the cluster.",
      "Node A got fleet/truck-7/temp = 4.5 from node B.",
      "Node A got the retained fleet/truck-7/status = parked.",
    ]);
  });

  test("the README has the publish-count test word for word", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const file = readFileSync(join(examplesDir, "publish-count.test.ts"), "utf8");
    expect(readme.includes("```ts\n" + file + "```\n")).toBe(true); // (toContain would print all of the README)
  });

  test("every example is run here, opens with how to run it, and is listed in the README", () => {
    const files = readdirSync(examplesDir).filter((f) => f.endsWith(".ts")).sort();
    expect(files).toEqual([...covered].sort());
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("\n## Examples\n"));
    for (const f of files) {
      const text = readFileSync(join(examplesDir, f), "utf8");
      expect(text.startsWith("/**\n")).toBe(true);
      expect(text.slice(0, text.indexOf("*/"))).toContain(f.endsWith(".test.ts") ? `bun test examples/${f}` : `bun examples/${f}`);
      expect(section).toContain(`[\`${f}\`](examples/${f})`);
    }
  });
});
