/**
 * The command-line examples of the documentation this project descends from (the Python mqttools:
 * subscribe, publish, publish --count without MESSAGE, monitor, broker), run as written with the
 * same output lines. The one change: `--port P` is added, since a test never takes the fixed port
 * 1883; the host stays the default, localhost, so the lines name 'localhost:P' as the originals
 * name 'localhost:1883'.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { generatedPayload } from "../../commands/publish";
import { startBrokerProcess, type BrokerProcess } from "./broker-process";
import { CliProcesses } from "./cli-process";
import { Screen } from "./screen";

const cli = new CliProcesses();
let broker: BrokerProcess;
let port: string;

beforeAll(async () => {
  // the broker example, `mqtttools broker`, on any free port of localhost
  broker = await startBrokerProcess(["broker", "--port", "0"]);
  port = String(broker.ports[0]);
});

afterEach(() => {
  cli.killAll();
  Screen.killAll();
});

afterAll(async () => {
  expect(await broker.stop()).toBe(0);
});

describe("the original mqttools examples", () => {
  test("mqtttools broker: listens on localhost", () => {
    expect(broker.stdout).toMatch(/^Listening on localhost:\d+\. Press Ctrl-C to stop\.$/m);
  });

  test("mqtttools subscribe /test/# prints Connecting, Connected, then Topic: / Message: lines", async () => {
    const sub = await cli.subscriber(["/test/#", "--port", port]);
    expect((await cli.run(["publish", "/test", "11", "--port", port])).code).toBe(0);
    expect((await cli.run(["publish", "/test/mqttools/foo", "bar", "--port", port])).code).toBe(0);
    await sub.line("Message: bar");
    expect(sub.lines).toEqual([
      `Connecting to 'localhost:${port}'.`,
      "Connected.",
      "Topic:   /test",
      "Message: 11",
      "Topic:   /test/mqttools/foo",
      "Message: bar",
    ]);
  });

  test("mqtttools publish /test/mqttools/foo bar prints Connecting, then Published 1 message(s)", async () => {
    const r = await cli.run(["publish", "/test/mqttools/foo", "bar", "--port", port]);
    expect(r).toEqual({
      code: 0,
      stdout: [`Connecting to 'localhost:${port}'.`, "", "Published 1 message(s) in 0 seconds from 1 concurrent task(s)."],
      stderr: "",
    });
  });

  test("mqtttools publish --count 100 /test/mqttools/foo: no MESSAGE, 100 generated ones (number, then 0xA5 up to 10 bytes)", async () => {
    const sub = await cli.subscriber(["--port", port, "--count", "100", "--format", "json", "/test/mqttools/foo"]);
    const r = await cli.run(["publish", "--count", "100", "/test/mqttools/foo", "--port", port]);
    expect(r.code).toBe(0);
    expect(r.stdout).toHaveLength(3);
    expect(r.stdout.slice(0, 2)).toEqual([`Connecting to 'localhost:${port}'.`, ""]);
    expect(r.stdout[2]).toMatch(/^Published 100 message\(s\) in \d+\.\d\d seconds from 10 concurrent task\(s\)\./);
    expect(await sub.exit()).toBe(0);
    const payloads = sub.lines.map((l) => JSON.parse(l).payload as string).sort();
    const expected = Array.from({ length: 100 }, (_, n) => Buffer.from(String(n).padStart(2, "0")).toString("hex") + "a5".repeat(8));
    expect(payloads).toEqual(expected);
  });

  test("mqtttools monitor /test/# shows the topics' messages; q quits", async () => {
    const screen = Screen.start(["/test/#", "--port", port]);
    await screen.shows("TOPIC & MESSAGE");
    expect((await cli.run(["publish", "/test/mqttools/foo", "bar", "--port", port])).code).toBe(0);
    const text = await screen.shows("Messages: 1 ");
    expect(text).toMatch(/\/test\/mqttools\/foo  \(1\)\n {14}bar/);
    screen.keys("q");
    await screen.shows("EXIT=0");
  });
});

describe("the generated message", () => {
  test.each([
    [0, 1, 10, "30" + "a5".repeat(9)], // one message: "0"
    [7, 100, 10, "3037" + "a5".repeat(8)], // zero-padded to the width of 99
    [42, 1000, 3, "303432"], // exactly the number
    [1234, 100000, 3, "303132"], // "01234" cut to --size
    [5, 10, 0, ""],
  ])("number %p of %p at size %p is %p", (n, count, size, hex) => {
    expect(Buffer.from(generatedPayload(n, count, size)).toString("hex")).toBe(hex);
  });
});
