/**
 * MQTT over WebSocket from the command line: `broker --ws-port/--wss-port/--ws-path`, the
 * `[[listener]] protocol = "websocket"` table of --config, and `subscribe`/`publish` given a
 * ws:// URL as --url or --host.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Broker } from "../../lib/broker/broker";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { RawClient } from "../broker/helpers";
import { WsRawClient, type UpgradeAnswer } from "../broker/ws-helpers";
import { makeCertificates, tempDir, brokerProcesses, runCli } from "./broker-process";
import { CliProcesses } from "./cli-process";

let tmp: ReturnType<typeof tempDir>;
let ca: string;
const { broker, stop, stopAll } = brokerProcesses();
const processes = new CliProcesses();

beforeAll(async () => {
  tmp = tempDir();
  makeCertificates(tmp.dir);
  ca = await Bun.file(join(tmp.dir, "ca.crt")).text();
});

afterEach(() => processes.killAll());

afterAll(async () => {
  await stopAll();
  tmp.remove();
});


/** Connects our Client to `url`, publishes to itself, and stops; resolves with what came back. */
async function roundTrip(url: string, tls?: { ca: string }): Promise<string> {
  const client = new Client(url, { connectDelays: [], tls });
  await client.start();
  try {
    await client.subscribe("cli/ws");
    await client.publish(new Message("cli/ws", `over ${url.split(":")[0]}`));
    return (await client.messages.get())!.text;
  } finally {
    await client.stop();
  }
}

const cli = runCli;
const file = (name: string) => join(tmp.dir, name);

describe("broker WebSocket listeners", () => {
  test("--ws-port and --wss-port add ws:// and wss:// listeners beside the plain and TLS ones", async () => {
    const b = await broker("--host", "127.0.0.1", "--port", "0", "--secure-port", "0", "--ws-port", "0", "--wss-port", "0", "--certfile", file("server.crt"), "--keyfile", file("server.key"));
    expect(b.stdout).toMatch(/Listening on 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ \(TLS\), ws:\/\/127\.0\.0\.1:\d+\/mqtt, wss:\/\/127\.0\.0\.1:\d+\/mqtt\./);
    const [tcp, , ws, wss] = b.ports as [number, number, number, number];
    expect(await roundTrip(`ws://127.0.0.1:${ws}/mqtt`)).toBe("over ws");
    expect(await roundTrip(`wss://127.0.0.1:${wss}/mqtt`, { ca })).toBe("over wss");
    (await RawClient.connect(tcp)).end();
    await stop(b);
  });

  test("--ws-path serves another path; the default one is then 404", async () => {
    const b = await broker("--host", "127.0.0.1", "--port", "0", "--ws-port", "0", "--ws-path", "/brokers/one");
    const ws = b.ports[1]!;
    expect(((await WsRawClient.upgrade(ws, { path: "/mqtt" })) as UpgradeAnswer).status).toBe(404);
    expect(await roundTrip(`ws://127.0.0.1:${ws}/brokers/one`)).toBe("over ws");
    await stop(b);
  });

  test("[[listener]] protocol = \"websocket\" with path and trustProxy in --config", async () => {
    writeFileSync(file("ws.toml"), `
[[listener]]
host = "127.0.0.1"
port = 0

[[listener]]
host = "127.0.0.1"
port = 0
protocol = "websocket"
path = "/ws"
trustProxy = true
`);
    const b = await broker("--config", file("ws.toml"), "--log-level", "info");
    expect(b.stdout).toMatch(/ws:\/\/127\.0\.0\.1:\d+\/ws\./);
    const c = await WsRawClient.open(b.ports[1]!, { path: "/ws", headers: { "X-Forwarded-For": "203.0.113.9" } });
    c.send({ type: 1, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: "behind-proxy", will: null, username: null, password: null, properties: {} });
    await c.next(2);
    await b.waitStderr(/client 'behind-proxy' \(203\.0\.113\.9\)/);
    c.end();
    await stop(b);
  });

  test.each([
    [["--wss-port", "0"], "--wss-port needs --certfile and --keyfile"],
    [["--ws-path", "/x"], "--ws-path needs --ws-port or --wss-port"],
    [["--ws-port", "0", "--ws-path", "x"], "--ws-path must start with /"],
    [["--trust-proxy"], "--trust-proxy needs --ws-port or --wss-port"],
  ])("%p is a one-line error", async (args, message) => {
    const r = await cli("broker", "--port", "0", ...args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(message);
  });

  test.each([
    ["protocol = \"quic\"", "protocol must be \"mqtt\" or \"websocket\""],
    ["path = \"/x\"", "path and trustProxy need protocol = \"websocket\""],
    ["protocol = \"websocket\"\npath = \"x\"", "path must start with /"],
  ])("a [[listener]] with %p is a one-line error", async (lines, message) => {
    writeFileSync(file("bad-ws.toml"), `[[listener]]\nport = 0\n${lines}\n`);
    const r = await cli("broker", "--config", file("bad-ws.toml"));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });
});

describe("subscribe and publish over WebSocket", () => {
  let b: Broker;
  let ws: number;
  beforeAll(async () => {
    b = new Broker([["127.0.0.1", 0, { websocket: true }]]);
    [ws] = (await b.start()) as [number];
  });
  afterAll(() => b.stop());

  test("subscribe --url ws://user:pass@host:port/mqtt and publish --host ws://...: a round trip, with the URL's user name", async () => {
    const sub = await processes.subscriber(["--url", `ws://reader:pw@127.0.0.1:${ws}/mqtt`, "-C", "1", "ws/t"]);
    expect([...b.clients.values()].some((c) => c.session?.username === "reader")).toBe(true);
    const pub = await processes.run(["publish", "--host", `ws://127.0.0.1:${ws}/mqtt`, "ws/t", "via ws"]);
    expect(pub.code).toBe(0);
    expect(await sub.exit()).toBe(0);
    expect(sub.lines.slice(-2)).toEqual(["Topic:   ws/t", "Message: via ws"]);
  });
});
