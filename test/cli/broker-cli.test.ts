/** `mqtttools broker`: the TLS listener (--secure-port, --certfile, --keyfile, --cafile), --config FILE.toml and --thread. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { PacketType } from "../../lib/codec/constants";
import { RawClient, finished, mosquittoClient } from "../broker/helpers";
import { entry, makeCertificates, startBrokerProcess, tempDir, type BrokerProcess, brokerProcesses, runCli } from "./broker-process";

let tmp: ReturnType<typeof tempDir>;
let certs: { ca: string; cert: string; key: string };
const { broker, stop, stopAll, track } = brokerProcesses();

beforeAll(async () => {
  tmp = tempDir();
  makeCertificates(tmp.dir);
  const read = (f: string) => Bun.file(join(tmp.dir, f)).text();
  certs = { ca: await read("ca.crt"), cert: await read("client.crt"), key: await read("client.key") };
});

afterAll(async () => {
  await stopAll();
  tmp.remove();
});


/** Connects our Client over TLS, subscribes and publishes to itself, and stops. */
async function tlsRoundTrip(port: number, tls: Record<string, string>): Promise<string> {
  const client = new Client("127.0.0.1", port, { tls, connectDelays: [] });
  await client.start();
  try {
    await client.subscribe("cli/tls");
    await client.publish(new Message("cli/tls", "over TLS"));
    const m = await client.messages.get();
    return m!.text;
  } finally {
    await client.stop();
  }
}

const cli = runCli;
const file = (name: string) => join(tmp.dir, name);

describe("broker TLS listener", () => {
  test("--certfile/--keyfile add a TLS listener on --secure-port next to the plain one", async () => {
    const b = await broker("--host", "127.0.0.1", "--port", "0", "--secure-port", "0", "--certfile", file("server.crt"), "--keyfile", file("server.key"));
    expect(b.ports).toHaveLength(2);
    expect(b.stdout).toMatch(/Listening on 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ \(TLS\)\./);
    expect(await tlsRoundTrip(b.ports[1]!, { ca: certs.ca })).toBe("over TLS");
    // the plain listener still speaks MQTT without TLS
    const raw = await RawClient.connect(b.ports[0]!);
    raw.end();
    await stop(b);
  });

  test("--cafile requires a client certificate signed by that CA", async () => {
    const b = await broker("--host", "127.0.0.1", "--port", "0", "--secure-port", "0", "--certfile", file("server.crt"), "--keyfile", file("server.key"), "--cafile", file("ca.crt"));
    const port = b.ports[1]!;
    expect(await tlsRoundTrip(port, { ca: certs.ca, cert: certs.cert, key: certs.key })).toBe("over TLS");
    const anonymous = new Client("127.0.0.1", port, { tls: { ca: certs.ca }, connectDelays: [] });
    await expect(anonymous.start()).rejects.toThrow(/Connection refused|closed before CONNACK|CERTIFICATE/i);
    await stop(b);
  });

  test.each([
    [["--certfile", "x.crt"], "--certfile and --keyfile go together"],
    [["--cafile", "ca.crt"], "--cafile needs --certfile and --keyfile"],
    [["--secure-port", "8883"], "--secure-port needs --certfile and --keyfile"],
    [["--certfile", "/nonexistent/s.crt", "--keyfile", "/nonexistent/s.key"], "cannot read --certfile '/nonexistent/s.crt'"],
  ])("%p is a one-line error", async (args, message) => {
    const r = await cli("broker", "--port", "0", ...args);
    expect(r.code).toBe(message.startsWith("cannot read") ? 1 : 2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(message);
  });
});

describe("broker --config FILE.toml", () => {
  test("listeners and limits come from the file: a limit shows in CONNACK, certificate paths are relative to the file", async () => {
    writeFileSync(file("broker.toml"), `
[[listener]]
host = "127.0.0.1"
port = 0

[[listener]]
host = "127.0.0.1"
port = 0
certfile = "server.crt"
keyfile = "server.key"

[limits]
maxPacketSize = 4096
maxKeepAlive = 30
`);
    const b = await broker("--config", file("broker.toml"));
    expect(b.ports).toHaveLength(2);
    const raw = await RawClient.open(b.ports[0]!);
    raw.send({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: "c", will: null, username: null, password: null, properties: {} });
    const ack = await raw.next(PacketType.CONNACK);
    expect(ack.type === PacketType.CONNACK && ack.properties).toMatchObject({ maximumPacketSize: 4096, serverKeepAlive: 30 });
    raw.end();
    expect(await tlsRoundTrip(b.ports[1]!, { ca: certs.ca })).toBe("over TLS");
    await stop(b);
  });

  test("flags override the file: a limit flag wins over [limits], listener flags replace [[listener]]", async () => {
    writeFileSync(file("override.toml"), `[[listener]]\nhost = "127.0.0.1"\nport = 1\n\n[limits]\nmaxPacketSize = 4096\n`);
    const b = await broker("--config", file("override.toml"), "--host", "127.0.0.1", "--port", "0", "--max-packet-size", "2048");
    expect(b.ports).toHaveLength(1);
    const raw = await RawClient.open(b.ports[0]!);
    raw.send({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: "c", will: null, username: null, password: null, properties: {} });
    const ack = await raw.next(PacketType.CONNACK);
    expect(ack.type === PacketType.CONNACK && ack.properties.maximumPacketSize).toBe(2048);
    raw.end();
    await stop(b);
  });

  test("the slow-consumer policy from [limits], and --slow-consumer-policy over it: \"disconnect\" ends a subscriber whose queue is full with 0x97, \"drop\" keeps it", async () => {
    writeFileSync(file("slow.toml"), `[limits]\nmaxInflight = 1\nmaxQueuedMessages = 1\nslowConsumerPolicy = "disconnect"\n`);
    for (const [extra, disconnected] of [[[], true], [["--slow-consumer-policy", "drop"], false]] as const) {
      const b = await broker("--config", file("slow.toml"), "--host", "127.0.0.1", "--port", "0", ...extra);
      const connect = (clientId: string) => ({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId, will: null, username: null, password: null, properties: {} }) as const;
      const sub = await RawClient.connect(b.ports[0]!, connect("sub"));
      sub.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: "s", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} });
      await sub.next(PacketType.SUBACK);
      const pub = await RawClient.connect(b.ports[0]!, connect("pub"));
      for (let id = 1; id <= 3; id++) pub.send({ type: PacketType.PUBLISH, dup: false, qos: 1, retain: false, topic: "s", packetId: id, properties: {}, payload: new Uint8Array(1) }); // one in flight, one queued, one over
      await pub.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === 3);
      sub.send({ type: PacketType.PINGREQ });
      const answer = await sub.next(undefined, (p) => p.type === PacketType.DISCONNECT || p.type === PacketType.PINGRESP);
      expect(answer.type === PacketType.DISCONNECT && answer.reasonCode).toBe(disconnected ? 0x97 : false);
      sub.end();
      pub.end();
      await stop(b);
    }
  });

  test("the overload limits come from [limits]: maxMemoryBytes below what the broker uses refuses clients with CONNACK 0x97; 0 is allowed for the rate and the reserve", async () => {
    writeFileSync(file("overload.toml"), `[[listener]]\nhost = "127.0.0.1"\nport = 0\n\n[limits]\nmaxConnectionRate = 0\nfdReserve = 0\nmaxMemoryBytes = 1048576\n`);
    const b = await broker("--config", file("overload.toml"));
    const raw = await RawClient.open(b.ports[0]!);
    raw.send({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: "c", will: null, username: null, password: null, properties: {} });
    const ack = await raw.next(PacketType.CONNACK);
    expect(ack.type === PacketType.CONNACK && [ack.reasonCode, ack.properties.reasonString]).toEqual([0x97, "the broker is short of memory"]);
    await raw.closed.promise;
    await stop(b);
  });
  // bad files: broker-config.test.ts
});

describe("broker --http-port", () => {
  test("prints where HTTP listens and serves the dashboard, /metrics and /readyz there", async () => {
    const b = await broker("--host", "127.0.0.1", "--port", "0", "--http-port", "0");
    const m = /^HTTP on 127\.0\.0\.1:(\d+): the dashboard at \/, \/metrics, \/livez, \/readyz\.$/m.exec(b.stdout);
    expect(m).not.toBeNull();
    const http = Number(m![1]);
    expect((await fetch(`http://127.0.0.1:${http}/readyz`)).status).toBe(200);
    expect(await (await fetch(`http://127.0.0.1:${http}/metrics`)).text()).toContain('mqtttools_build_info{version="');
    expect(await (await fetch(`http://127.0.0.1:${http}/`)).text()).toContain("<title>mqtttools broker</title>");
    await stop(b);
  });
});

describe("broker --thread", () => {
  test("runs the broker in a worker thread: mosquitto_sub and mosquitto_pub round trip, packets logged at info, SIGTERM stops it with exit code 0", async () => {
    const b = await startBrokerProcess(["--log-level", "info", "broker", "--thread", "--host", "127.0.0.1", "--port", "0"]);
    track(b);
    expect(b.stdout).toBe(`Listening on 127.0.0.1:${b.ports[0]} (in a worker thread). Press Ctrl-C to stop.\n`);
    const at = ["-h", "127.0.0.1", "-p", String(b.ports[0])];
    const sub = Bun.spawn([mosquittoClient("mosquitto_sub"), ...at, "-i", "thread-sub", "-t", "cli/thread", "-C", "1", "-q", "1"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    try {
      await b.waitStderr(/client 'thread-sub' .*Sent SUBACK/);
      expect((await finished(Bun.spawn([mosquittoClient("mosquitto_pub"), ...at, "-t", "cli/thread", "-m", "from a worker", "-q", "1"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }))).code).toBe(0);
      expect(await finished(sub)).toEqual({ code: 0, stdout: "from a worker\n", stderr: "" });
    } finally {
      sub.kill();
    }
    await stop(b);
    expect(b.stderr()).toContain("Received PUBLISH(3): Topic=cli/thread, QoS=1");
  });

  test("an error in the worker (a port in use) is the same one-line run-time error, exit code 1", async () => {
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const [inThread, inMain] = await Promise.all([
        cli("broker", "--thread", "--host", "127.0.0.1", "--port", String(server.port)),
        cli("broker", "--host", "127.0.0.1", "--port", String(server.port)),
      ]);
      expect(inThread).toEqual(inMain);
      expect(inThread.code).toBe(1);
      expect(inThread.stderr).toBe(`mqtttools broker: cannot listen on 127.0.0.1:${server.port}: the address is already in use\n`);
    } finally {
      server.stop(true);
    }
  });
});

describe("broker --password-file", () => {
  let passwords: string;
  beforeAll(() => {
    passwords = file("passwords");
    const made = Bun.spawnSync([Bun.which("mosquitto_passwd") ?? "/usr/bin/mosquitto_passwd", "-c", "-b", passwords, "alice", "wonderland"], { stdout: "pipe", stderr: "pipe" });
    if (made.exitCode !== 0) throw new Error(`mosquitto_passwd: ${made.stderr.toString()}`);
  });

  test("a file made by mosquitto_passwd: the right password subscribes and receives, a wrong one and none are one-line errors with exit code 1", async () => {
    const b = await broker("--host", "127.0.0.1", "--port", "0", "--password-file", passwords);
    const at = ["--host", "127.0.0.1", "--port", String(b.ports[0])];
    const sub = Bun.spawn([process.execPath, entry, "subscribe", ...at, "-u", "alice", "-P", "wonderland", "-C", "1", "auth/t"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const reader = sub.stdout.getReader();
    let out = "";
    while (!out.includes("Connected.")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`subscribe ended: ${out}`);
      out += new TextDecoder().decode(value);
    }
    expect((await finished(Bun.spawn([mosquittoClient("mosquitto_pub"), "-h", "127.0.0.1", "-p", String(b.ports[0]), "-u", "alice", "-P", "wonderland", "-t", "auth/t", "-m", "let in"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }))).code).toBe(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    expect(await sub.exited).toBe(0);
    expect(out).toContain("Topic:   auth/t\nMessage: let in\n");

    const wrong = await cli("publish", ...at, "-u", "alice", "-P", "nope", "auth/t", "m");
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe("mqtttools publish: Connect refused: Bad User Name Or Password (0x86): bad user name or password\n");
    const anonymous = await cli("publish", ...at, "--protocol", "3.1.1", "auth/t", "m");
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr.trim().split("\n")).toHaveLength(1);
    expect(anonymous.stderr).toContain("Not Authorized");
    await stop(b);
  });

  test("--allow-anonymous lets clients without a user name in; [auth] in --config does the same with a file name relative to the config", async () => {
    for (const args of [["--password-file", passwords, "--allow-anonymous"], ["--config", file("auth.toml")]]) {
      writeFileSync(file("auth.toml"), 'listener = [{ host = "127.0.0.1", port = 0 }]\n[auth]\npasswordFile = "passwords"\nallowAnonymous = true\n');
      const b = await broker(...(args[0] === "--config" ? args : ["--host", "127.0.0.1", "--port", "0", ...args]));
      const at = ["--host", "127.0.0.1", "--port", String(b.ports[0])];
      expect((await cli("publish", ...at, "auth/t", "anonymous")).code).toBe(0);
      expect((await cli("publish", ...at, "-u", "alice", "-P", "nope", "auth/t", "m")).code).toBe(1);
      await stop(b);
    }
  });

  test("--acl-file: a publish the rules refuse is an error line with exit code 1; an allowed one is delivered", async () => {
    writeFileSync(file("acl"), "user alice\ntopic readwrite mine/#\n");
    const b = await broker("--host", "127.0.0.1", "--port", "0", "--password-file", passwords, "--acl-file", file("acl"));
    const at = ["--host", "127.0.0.1", "--port", String(b.ports[0]), "-u", "alice", "-P", "wonderland"];
    const refused = await cli("publish", ...at, "-q", "1", "theirs/t", "m");
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toContain("Not Authorized");
    expect((await cli("publish", ...at, "-q", "1", "--retain", "mine/t", "kept")).code).toBe(0);
    const sub = await cli("subscribe", ...at, "-C", "1", "mine/#");
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain("Topic:   mine/t\nMessage: kept\n");
    await stop(b);
  });

  test("a password file it cannot use is a one-line run-time error, exit code 1", async () => {
    writeFileSync(file("plain"), "alice:wonderland\n");
    const r = await cli("broker", "--host", "127.0.0.1", "--port", "0", "--password-file", file("plain"));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`mqtttools broker: ${file("plain")} line 1: the password is not a $7$ or $6$ hash (make the file with mosquitto_passwd)\n`);
  });
});

describe("broker --persistence", () => {
  test("retained messages published through one broker process are there for the next one on the same file", async () => {
    const db = file("retained.db");
    const first = await broker("--host", "127.0.0.1", "--port", "0", "--persistence", db);
    const at = (b: BrokerProcess) => ["--host", "127.0.0.1", "--port", String(b.ports[0])];
    expect((await cli("publish", ...at(first), "-q", "1", "--retain", "kept/t", "across restarts")).code).toBe(0);
    await stop(first); // SIGTERM: the broker writes what is pending before it exits
    // the second broker takes the same file from a config's [persistence] table
    writeFileSync(file("persist.toml"), 'listener = [{ host = "127.0.0.1", port = 0 }]\n[persistence]\nfile = "retained.db"\ndurability = "power"\n');
    const second = await broker("--config", file("persist.toml"));
    expect(second.stdout).toMatch(/^Restored from .*retained\.db in [\d.]+ ms: 0 sessions \(.*\), 1 retained messages, 0 pending wills\.\n/);
    const sub = await cli("subscribe", ...at(second), "-C", "1", "kept/#");
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain("Topic:   kept/t\nMessage: across restarts\n");
    await stop(second);
  });
});
