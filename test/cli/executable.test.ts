/** The single executable (`bun run build`): it runs every command exactly as `bun index.ts` does. */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { COMMANDS } from "../../commands/cli";
import { finished, mosquittoClient } from "../broker/helpers";
import { freePort, startMosquitto, type Mosquitto } from "../client/helpers";
import { entry, startBrokerProcess, tempDir } from "./broker-process";
import { CliProcesses } from "./cli-process";
import { Screen } from "./screen";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";

const root = new URL("../..", import.meta.url).pathname;
let tmp: ReturnType<typeof tempDir>;
let exe: string;

/** Every command the CLI dispatches. */
const commands = Object.keys(COMMANDS);

beforeAll(async () => {
  tmp = tempDir();
  exe = join(tmp.dir, "mqtttools");
  // the same command as `bun run build`, into a temporary directory
  const build = pkg.scripts.build.replace("dist/mqtttools", exe).split(" ");
  expect(build.slice(0, 3)).toEqual(["bun", "build", "--compile"]);
  const started = performance.now();
  const r = await finished(Bun.spawn([process.execPath, ...build.slice(1)], { cwd: root, stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
  const seconds = (performance.now() - started) / 1000;
  if (r.code !== 0) throw new Error(`the build failed: ${r.stderr}`);
  expect(seconds).toBeLessThan(60);
}, 60_000);

afterAll(() => tmp.remove());

/** Runs the executable from a directory outside the checkout, so nothing is read from the sources. */
const run = (...args: string[]) => finished(Bun.spawn([exe, ...args], { cwd: tmp.dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
const fromSource = (...args: string[]) => finished(Bun.spawn([process.execPath, entry, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }));

describe("the compiled executable", () => {
  test("--version prints the package version", async () => {
    const r = await run("--version");
    expect(r).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
  });

  test("--help is the same as from source", async () => {
    const [a, b] = await Promise.all([run("--help"), fromSource("--help")]);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
  });

  test.each(commands)("every command is bundled: %s --help is the same as from source", async (command) => {
    const [a, b] = await Promise.all([run(command, "--help"), fromSource(command, "--help")]);
    expect(a.code).toBe(b.code);
    expect(a.stdout).toBe(b.stdout);
  });

  test("usage errors and the global --log-level behave as from source", async () => {
    for (const args of [["frobnicate"], ["--log-level", "loud", "broker"], ["broker", "--bogus"]]) {
      const [a, b] = await Promise.all([run(...args), fromSource(...args)]);
      expect(a).toEqual(b);
    }
  });

  test("the broker round trip: a client subscribes and receives its own message, packets logged at info", async () => {
    const b = await startBrokerProcess(["--log-level", "info", "broker", "--host", "127.0.0.1", "--port", "0"], [exe]);
    try {
      const mqtt = (await import("mqtt")).default;
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.ports[0]}`, { reconnectPeriod: 0, clientId: "exe" });
      const got = Promise.withResolvers<string>();
      client.on("message", (_t, m) => got.resolve(m.toString()));
      await client.subscribeAsync("exe/test");
      await client.publishAsync("exe/test", "from the executable");
      expect(await got.promise).toBe("from the executable");
      await client.endAsync();
      const err = await b.waitStderr(/Received DISCONNECT\(14\)/);
      expect(err).toContain("Received CONNECT(1): ClientId=exe");
      expect(err).toContain("Sent CONNACK(2)");
    } finally {
      expect(await b.stop()).toBe(0);
    }
  });
});

describe("the compiled executable's broker --thread (the Worker is bundled as a second entrypoint)", () => {
  test("serves MQTT.js from its worker thread, run from a directory without the sources", async () => {
    const b = await startBrokerProcess(["broker", "--thread", "--host", "127.0.0.1", "--port", "0"], [exe], tmp.dir);
    try {
      expect(b.stdout).toContain("(in a worker thread)");
      const mqtt = (await import("mqtt")).default;
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.ports[0]}`, { reconnectPeriod: 0, clientId: "exe-thread", protocolVersion: 5 });
      const got = Promise.withResolvers<string>();
      client.on("message", (_t, m) => got.resolve(m.toString()));
      await client.subscribeAsync("exe/thread", { qos: 2 });
      await client.publishAsync("exe/thread", "from the worker", { qos: 2 });
      expect(await got.promise).toBe("from the worker");
      await client.endAsync();
    } finally {
      expect(await b.stop()).toBe(0);
    }
  });
});

describe("the compiled executable against Mosquitto", () => {
  let mosquitto: Mosquitto;
  let at: string[];
  let exeCli: CliProcesses;
  beforeAll(async () => {
    mosquitto = await startMosquitto({ users: { alice: "wonderland" } });
    at = ["--host", "127.0.0.1", "--port", String(mosquitto.port), "-u", "alice", "-P", "wonderland"];
    exeCli = new CliProcesses([exe], tmp.dir); // a directory without the sources
  });
  afterEach(() => exeCli.killAll());
  afterAll(() => mosquitto.stop());

  test.each(["5", "3.1.1"])("subscribe and publish round trip with --protocol %s: the exact lines", async (protocol) => {
    const sub = await exeCli.subscriber([...at, "--protocol", protocol, "-C", "2", "-q", "1", "/test/mqtttools/#"]);
    const pub = await exeCli.run(["publish", ...at, "--protocol", protocol, "/test/mqtttools/foo", "bar"]);
    expect(pub).toEqual({ code: 0, stdout: [`Connecting to '127.0.0.1:${mosquitto.port}'.`, "", "Published 1 message(s) in 0 seconds from 1 concurrent task(s)."], stderr: "" });
    expect((await exeCli.run(["publish", ...at, "-q", "2", "/test/mqtttools/bin", "-"], new Uint8Array([0xc3, 0x28]))).code).toBe(0);
    expect(await sub.exit()).toBe(0);
    expect(sub.lines).toEqual([
      `Connecting to '127.0.0.1:${mosquitto.port}'.`,
      "Connected.",
      "Topic:   /test/mqtttools/foo",
      "Message: bar",
      "Topic:   /test/mqtttools/bin",
      "Message: c328 (2 bytes, hex)",
    ]);
  });

  test("publish --count reaches mosquitto_sub; mosquitto_pub reaches subscribe --format json", async () => {
    const mosqSub = exeCli.spawn(["-oL", mosquittoClient("mosquitto_sub"), "-d", "-p", String(mosquitto.port), "-h", "127.0.0.1", "-u", "alice", "-P", "wonderland", "-t", "exe/count", "-C", "100", "-q", "1"],
      undefined, ["stdbuf"]); // stdbuf -oL: a line-buffered stdout, though it is a pipe
    await mosqSub.line("Subscribed (mid: 1): 1");
    const r = await exeCli.run(["publish", "--url", `mqtt://alice:wonderland@127.0.0.1:${mosquitto.port}`, "-q", "1", "-C", "100", "exe/count", "m"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toHaveLength(3); // a pipe: no progress bar, the Connecting line, a blank line and the final line
    expect(r.stdout[2]).toMatch(/^Published 100 message\(s\) in \d+\.\d\d seconds from 10 concurrent task\(s\)\. Rate: \d+ messages\/s\.$/);
    expect(await mosqSub.exit()).toBe(0);
    expect(mosqSub.lines.filter((l) => l === "m")).toHaveLength(100);

    const sub = await exeCli.subscriber([...at, "-q", "1", "-C", "1", "-F", "json", "exe/json"]);
    const pub = Bun.spawn([mosquittoClient("mosquitto_pub"), "-V", "5", "-p", String(mosquitto.port), "-h", "127.0.0.1", "-u", "alice", "-P", "wonderland",
      "-t", "exe/json", "-q", "1", "-m", '{"v":1}', "-D", "publish", "user-property", "k", "v"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    expect((await finished(pub)).code).toBe(0);
    expect(await sub.exit()).toBe(0);
    const m = JSON.parse(sub.lines[0]!);
    expect(m).toMatchObject({ topic: "exe/json", payload: '{"v":1}', qos: 1, retain: false });
    expect(m.properties.userProperties).toEqual([["k", "v"]]);
  });

  test("errors: a wrong password and a refused connection are one line and exit code 1, as from source", async () => {
    const wrong = await exeCli.run(["subscribe", "--host", "127.0.0.1", "--port", String(mosquitto.port), "-u", "alice", "-P", "nope", "t"]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim().split("\n")).toHaveLength(1);
    expect(wrong.stderr).toMatch(/Connect refused: (Not authorized|Bad user name or password)/i);
    const port = String(freePort());
    const [a, b] = await Promise.all([run("publish", "--host", "127.0.0.1", "--port", port, "t", "m"), fromSource("publish", "--host", "127.0.0.1", "--port", port, "t", "m")]);
    expect(a).toEqual(b);
    expect(a.code).toBe(1);
    expect(a.stderr).toStartWith(`mqtttools publish: Connection refused: 127.0.0.1:${port}`);
    expect(a.stderr.trim().split("\n")).toHaveLength(1);
  });
});

describe("the compiled executable's monitor (in a tmux terminal)", () => {
  afterEach(() => Screen.killAll());

  test("shows the messages of a Mosquitto broker, f cycles the format, q quits and gives the terminal back", async () => {
    const mosquitto = await startMosquitto();
    const client = new Client("127.0.0.1", mosquitto.port, { connectDelays: [] });
    try {
      await client.start();
      const screen = Screen.start(["#", "--host", "127.0.0.1", "--port", String(mosquitto.port)], 100, 30, [exe], tmp.dir);
      await screen.shows("TOPIC & MESSAGE");
      expect(screen.format("alternate_on")).toBe("1");
      await client.publish(new Message("exe/monitor", "from mosquitto"));
      let text = await screen.shows("from mosquitto");
      expect(text).toContain("q: Quit, p: Play/Pause, f: Format (auto)");
      screen.keys("f");
      text = await screen.shows("f: Format (binary)");
      expect(text).toContain("66 72 6f 6d"); // "from" as a hex dump
      screen.keys("q");
      text = await screen.shows("EXIT=0");
      expect(text).not.toContain("TOPIC & MESSAGE");
      expect(screen.format("alternate_on")).toBe("0");
      expect(screen.format("cursor_flag")).toBe("1");
    } finally {
      await client.stop();
      await mosquitto.stop();
    }
  });
});
