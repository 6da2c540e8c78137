/**
 * `mqtttools subscribe` and `mqtttools publish`, spawned from source against the project's broker
 * and against Mosquitto: round trips, the exact output lines, --count, the formats, stdin, and
 * the errors with their exit codes.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Broker } from "../../lib/broker/broker";
import { mosquittoClient, startBroker } from "../broker/helpers";
import { freePort, startMosquitto, type Mosquitto } from "../client/helpers";
import { CliProcesses } from "./cli-process";

const cli = new CliProcesses();
const spawn = (args: string[], stdin?: string | Uint8Array, cmd?: string[]) => cli.spawn(args, stdin, cmd);
const run = (args: string[], stdin?: string | Uint8Array) => cli.run(args, stdin);
const subscriber = (args: string[]) => cli.subscriber(args);

afterEach(() => cli.killAll());

describe("against the project's broker", () => {
  let broker: Awaited<ReturnType<typeof startBroker>>;
  let at: string[];
  beforeAll(async () => {
    broker = await startBroker();
    at = ["--host", "127.0.0.1", "--port", String(broker.port)];
  });
  afterAll(() => broker.stop());

  test("a round trip prints exactly the lines of the issue", async () => {
    const sub = await subscriber([...at, "--count", "1", "/test/mqtttools/foo"]);
    const pub = await run(["publish", ...at, "/test/mqtttools/foo", "bar"]);
    expect(pub).toEqual({ code: 0, stdout: [`Connecting to '127.0.0.1:${broker.port}'.`, "", "Published 1 message(s) in 0 seconds from 1 concurrent task(s)."], stderr: "" });
    expect(await sub.exit()).toBe(0);
    expect(sub.lines).toEqual([
      `Connecting to '127.0.0.1:${broker.port}'.`,
      "Connected.",
      "Topic:   /test/mqtttools/foo",
      "Message: bar",
    ]);
  });

  test("publish --count: every message arrives, and the final line counts them", async () => {
    const sub = await subscriber([...at, "--qos", "1", "--count", "200", "--format", "json", "bench/+"]);
    const pub = await run(["publish", ...at, "--qos", "1", "--count", "200", "--concurrency", "4", "bench/a", "x"]);
    expect(pub.code).toBe(0);
    expect(pub.stdout).toHaveLength(3); // a pipe: no progress bar, the Connecting line, a blank line and the final line
    expect(pub.stdout[2]).toMatch(/^Published 200 message\(s\) in \d+\.\d\d seconds from 4 concurrent task\(s\)\. Rate: \d+ messages\/s\.$/);
    expect(await sub.exit()).toBe(0);
    expect(sub.lines.map((l) => JSON.parse(l).payload)).toEqual(Array(200).fill("x"));
    expect(sub.stderr).toContain("Connected."); // status lines go to stderr with --format json
  });

  test("--format json: one object per line with topic, payload, qos, retain and properties", async () => {
    const sub = await subscriber([...at, "-q", "2", "-C", "1", "-F", "json", "json/#"]);
    const pub = await run(["publish", ...at, "-q", "1", "--response-topic", "json/reply", "--user-property", "a=1", "--user-property", "b=x=y",
      "--message-expiry-interval", "60", "json/t", '{"v":1}']);
    expect(pub.code).toBe(0);
    expect(await sub.exit()).toBe(0);
    expect(sub.lines).toHaveLength(1);
    const o = JSON.parse(sub.lines[0]!);
    expect(o).toMatchObject({ topic: "json/t", payload: '{"v":1}', qos: 1, retain: false });
    expect(o.payloadEncoding).toBeUndefined();
    expect(o.properties.responseTopic).toBe("json/reply");
    expect(o.properties.userProperties).toEqual([["a", "1"], ["b", "x=y"]]);
    expect(o.properties.messageExpiryInterval).toBeLessThanOrEqual(60);
  });

  test("a binary payload from stdin ('-') is shown in hex, and as hex with payloadEncoding in JSON", async () => {
    const bytes = new Uint8Array([0x00, 0x01, 0xfe, 0xff]);
    const text = await subscriber([...at, "-C", "1", "bin/t"]);
    const json = await subscriber([...at, "-C", "1", "-F", "json", "bin/t"]);
    const pub = await run(["publish", ...at, "bin/t", "-"], bytes);
    expect(pub.code).toBe(0);
    expect(await text.exit()).toBe(0);
    expect(text.lines.slice(2)).toEqual(["Topic:   bin/t", "Message: 0001feff (4 bytes, hex)"]);
    expect(await json.exit()).toBe(0);
    expect(JSON.parse(json.lines[0]!)).toMatchObject({ topic: "bin/t", payload: "0001feff", payloadEncoding: "hex" });
  });

  test("--format binary shows even a text payload in hex; control characters are never printed raw", async () => {
    const sub = await subscriber([...at, "-C", "1", "--format", "binary", "fmt/t"]);
    const esc = await subscriber([...at, "-C", "1", "fmt/t"]);
    await run(["publish", ...at, "fmt/t", "A\u001b[2J"]);
    expect(await sub.exit()).toBe(0);
    expect(sub.lines[3]).toBe("Message: 411b5b324a (5 bytes, hex)");
    expect(await esc.exit()).toBe(0);
    expect(esc.lines[3]).toBe("Message: 411b5b324a (5 bytes, hex)");
  });

  test("--lines publishes one message per stdin line; without MESSAGE, --size sets the size of the generated one", async () => {
    const sub = await subscriber([...at, "-C", "4", "-F", "json", "lines/+"]);
    const lines = await run(["publish", ...at, "--lines", "lines/a"], "one\ntwo\r\nthree\n");
    expect(lines.code).toBe(0);
    expect(lines.stdout).toHaveLength(3);
    expect(lines.stdout[2]).toMatch(/^Published 3 message\(s\) in \d+\.\d\d seconds from 1 concurrent task\(s\)\. Rate: \d+ messages\/s\.$/);
    const sized = await run(["publish", ...at, "--size", "1000", "lines/b"]);
    expect(sized.code).toBe(0);
    expect(await sub.exit()).toBe(0);
    const got = sub.lines.map((l) => JSON.parse(l));
    expect(got.slice(0, 3).map((o) => o.payload)).toEqual(["one", "two", "three"]);
    expect(got[3].topic).toBe("lines/b");
    expect(got[3].payloadEncoding).toBe("hex"); // "0" then 999 bytes 0xA5: not UTF-8
    expect(got[3].payload).toBe("30" + "a5".repeat(999));
  });

  test("--retain and --retain-handling: a retained message comes after 'Connected.', or not at all with 2", async () => {
    expect((await run(["publish", ...at, "--retain", "ret/t", "kept"])).code).toBe(0);
    const sub = await subscriber([...at, "-C", "1", "-F", "json", "ret/t"]);
    expect(await sub.exit()).toBe(0);
    expect(JSON.parse(sub.lines[0]!)).toMatchObject({ topic: "ret/t", payload: "kept", retain: true });
    const none = await subscriber([...at, "-C", "1", "--retain-handling", "2", "ret/t"]);
    await run(["publish", ...at, "ret/t", "live"]);
    expect(await none.exit()).toBe(0);
    expect(none.lines.slice(2)).toEqual(["Topic:   ret/t", "Message: live"]);
    await run(["publish", ...at, "--retain", "ret/t", ""]); // clears it
  });

  test("the URL form names host, port, user and password", async () => {
    const sub = await subscriber(["--url", `mqtt://user:secret@127.0.0.1:${broker.port}`, "-C", "1", "url/t"]);
    expect(sub.lines[0]).toBe(`Connecting to '127.0.0.1:${broker.port}'.`);
    const pub = await run(["publish", "--host", `mqtt://127.0.0.1:${broker.port}`, "url/t", "via url"]);
    expect(pub.code).toBe(0);
    expect(await sub.exit()).toBe(0);
    expect(sub.lines.slice(2)).toEqual(["Topic:   url/t", "Message: via url"]);
  });
});

describe("a lost connection", () => {
  test("subscribe says so, reconnects when the broker is back, and subscribes again", async () => {
    const port = freePort();
    let broker = new Broker([["127.0.0.1", port]]);
    await broker.start();
    const at = ["--host", "127.0.0.1", "--port", String(port)];
    try {
      const sub = await subscriber([...at, "-C", "1", "lost/t"]);
      await broker.stop();
      // the client tried once at once, and failed: the broker is back for its next try, a second later
      await sub.line(/^Connection lost/);
      broker = new Broker([["127.0.0.1", port]]);
      await broker.start();
      await sub.line("Reconnected.");
      expect(sub.lines[2]).toStartWith(`Connection lost`);
      expect(sub.lines[2]).toEndWith(`Reconnecting to '127.0.0.1:${port}'.`);
      expect((await run(["publish", ...at, "lost/t", "again"])).code).toBe(0);
      expect(await sub.exit()).toBe(0);
      expect(sub.lines.slice(3)).toEqual(["Reconnected.", "Topic:   lost/t", "Message: again"]);
    } finally {
      await broker.stop();
    }
  });
});

describe("errors", () => {
  test.each([["subscribe", ["t"]], ["publish", ["t", "m"]]] as [string, string[]][])("%s to a port where nothing listens: one line, exit code 1", async (command, args) => {
    const port = freePort();
    const r = await run([command, "--host", "127.0.0.1", "--port", String(port), ...args]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(`Connection refused: 127.0.0.1:${port}`);
  });

  test.each([
    [["subscribe", "--bogus", "t"], "Unknown option '--bogus'"],
    [["subscribe"], "missing TOPIC"],
    [["subscribe", "--qos", "3", "t"], "--qos must be 0, 1 or 2"],
    [["subscribe", "--format", "xml", "t"], "--format must be text, binary, json or a template with %"],
    [["publish", "--size", "5", "t", "m"], "--size is the size of a generated message"],
    [["publish", "--count", "0", "t", "m"], "--count must be an integer"],
    [["publish", "--user-property", "novalue", "t", "m"], "--user-property must be KEY=VALUE"],
    [["publish", "--protocol", "6", "t", "m"], "--protocol must be 5 or 3.1.1"],
    [["publish", "--will-message", "x", "t", "m"], "--will-message needs --will-topic"],
    [["publish", "--url", "http://x", "t", "m"], "unsupported URL scheme"],
    [["publish", "--password", "--tls", "t", "m"], "--password needs a value"],
    [["publish", "t", "m", "-P"], "--password needs a value"],
  ])("%p is a one-line usage error, exit code 2", async (args, message) => {
    const r = await run(args, "");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(message);
  });

  test.each(["subscribe", "publish"])("%s --help shows the usage and the connection flags", async (command) => {
    const r = await run([command, "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout.join("\n")).toContain(`mqtttools ${command} [options] TOPIC`);
    expect(r.stdout.join("\n")).toContain("--will-retain");
  });
});

describe("against Mosquitto", () => {
  let mosquitto: Mosquitto;
  let at: string[];
  beforeAll(async () => {
    mosquitto = await startMosquitto({ users: { alice: "wonderland" } });
    at = ["--host", "127.0.0.1", "--port", String(mosquitto.port)];
  });
  afterAll(() => mosquitto.stop());

  test.each(["5", "3.1.1"])("a round trip with --protocol %s and a password", async (protocol) => {
    const auth = ["--protocol", protocol, "-u", "alice", "-P", "wonderland"];
    const sub = await subscriber([...at, ...auth, "-C", "2", "-q", "1", "mosq/#"]);
    expect((await run(["publish", ...at, ...auth, "mosq/a", "hello"])).code).toBe(0);
    expect((await run(["publish", ...at, ...auth, "-q", "2", "mosq/b", "-"], new Uint8Array([0xc3, 0x28]))).code).toBe(0);
    expect(await sub.exit()).toBe(0);
    expect(sub.lines.slice(2)).toEqual(["Topic:   mosq/a", "Message: hello", "Topic:   mosq/b", "Message: c328 (2 bytes, hex)"]);
  });

  test("publish --count reaches mosquitto_sub", async () => {
    // -d prints the SUBACK, so the test knows when mosquitto_sub is subscribed
    const sub = spawn(["-oL", mosquittoClient("mosquitto_sub"), "-d", "-p", String(mosquitto.port), "-h", "127.0.0.1", "-u", "alice", "-P", "wonderland", "-t", "mosq/count", "-C", "50", "-q", "1"],
      undefined, ["stdbuf"]); // stdbuf -oL: a line-buffered stdout, though it is a pipe
    await sub.line("Subscribed (mid: 1): 1");
    const r = await run(["publish", "--url", `mqtt://alice:wonderland@127.0.0.1:${mosquitto.port}`, "-q", "1", "-C", "50", "mosq/count", "m"]);
    expect(r.code).toBe(0);
    expect(r.stdout[2]).toStartWith("Published 50 message(s) in ");
    expect(await sub.exit()).toBe(0);
    expect(sub.lines.filter((l) => l === "m")).toHaveLength(50);
  });

  test("a wrong password is a one-line run-time error, exit code 1", async () => {
    const r = await run(["subscribe", ...at, "-u", "alice", "-P", "nope", "t"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/Connect refused: (Not authorized|Bad user name or password)/i);
  });
});
