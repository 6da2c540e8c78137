/** The global `--log-level` and per-packet logging: describePacket, the broker command, the Client. */
import { afterEach, describe, expect, test } from "bun:test";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { PacketType } from "../../lib/codec/constants";
import { describePacket } from "../../lib/codec/describe";
import type { Packet } from "../../lib/codec/packet";
import { finished, startBroker } from "../broker/helpers";
import { entry, startBrokerProcess, type BrokerProcess } from "./broker-process";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("describePacket", () => {
  test.each<[Packet, string]>([
    [{ type: PacketType.PUBLISH, dup: false, qos: 1, retain: false, topic: bytes("/a/b"), packetId: 7, properties: {}, payload: bytes("hello") }, "PUBLISH(3): Topic=/a/b, QoS=1, PacketId=7, Payload=5 bytes"],
    [{ type: PacketType.PUBLISH, dup: true, qos: 2, retain: true, topic: "t", packetId: 9, properties: {}, payload: new Uint8Array(0) }, "PUBLISH(3): Topic=t, QoS=2, PacketId=9, Retain=true, Dup=true, Payload=0 bytes"],
    [{ type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic: "t", packetId: 0, properties: {}, payload: bytes("x") }, "PUBLISH(3): Topic=t, QoS=0, Payload=1 bytes"],
    [{ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 60, clientId: "x", will: null, username: "u", password: bytes("secret"), properties: {} }, "CONNECT(1): ClientId=x, Protocol=5, CleanStart=true, KeepAlive=60, Username=u, Password=***"],
    [{ type: PacketType.CONNACK, sessionPresent: false, reasonCode: 0x87, properties: {} }, "CONNACK(2): SessionPresent=false, ReasonCode=0x87 (Not Authorized)"],
    [{ type: PacketType.PUBACK, packetId: 7, reasonCode: 0, properties: {} }, "PUBACK(4): PacketId=7"],
    [{ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: "a/#", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} }, "SUBSCRIBE(8): PacketId=1, Topics=a/# (QoS 1)"],
    [{ type: PacketType.SUBACK, packetId: 1, reasonCodes: [1, 0x80], properties: {} }, "SUBACK(9): PacketId=1, ReasonCodes=[0x01, 0x80]"],
    [{ type: PacketType.UNSUBSCRIBE, packetId: 2, topicFilters: ["a", "b"], properties: {} }, "UNSUBSCRIBE(10): PacketId=2, Topics=a b"],
    [{ type: PacketType.PINGREQ }, "PINGREQ(12)"],
    [{ type: PacketType.DISCONNECT, reasonCode: 0x8e, properties: { reasonString: "taken over" } }, "DISCONNECT(14): ReasonCode=0x8e (Session Taken Over), ReasonString=taken over"],
  ])("compact: %#", (packet, line) => {
    expect(describePacket(packet)).toBe(line);
  });

  test("verbose shows every field and property, payloads as text or hex, and never a password", () => {
    const publish: Packet = { type: PacketType.PUBLISH, dup: false, qos: 1, retain: true, topic: bytes("/a/b"), packetId: 7, properties: { messageExpiryInterval: 10, userProperties: [["k", "v"]], correlationData: new Uint8Array([0, 1, 0xff]) }, payload: bytes("hello") };
    expect(describePacket(publish, true)).toBe('PUBLISH(3): Dup=false, Qos=1, Retain=true, Topic=/a/b, PacketId=7, Properties={MessageExpiryInterval=10, UserProperties=[["k", "v"]], CorrelationData=0x0001ff}, Payload=5 bytes "hello"');
    const connect: Packet = { type: PacketType.CONNECT, protocolVersion: 4, cleanStart: false, keepAlive: 0, clientId: "c", will: { topic: "w", payload: bytes("bye"), qos: 0, retain: false, properties: {} }, username: "u", password: bytes("secret"), properties: {} };
    const line = describePacket(connect, true);
    expect(line).toContain('Will={Topic=w, Payload=3 bytes "bye", Qos=0, Retain=false, Properties={}}');
    expect(line).toContain("Password=*** (6 bytes)");
    expect(line).not.toContain("secret");
  });
});

describe("--log-level", () => {
  let running: BrokerProcess | null = null;
  afterEach(async () => {
    await running?.stop();
    running = null;
  });

  /** Runs a conversation against a broker started with `args`: subscribe, publish QoS 1 to itself, disconnect. */
  async function conversation(args: string[]): Promise<string> {
    const b = (running = await startBrokerProcess(args));
    const client = new Client("127.0.0.1", b.ports[0]!, { clientId: "x", connectDelays: [] });
    await client.start();
    await client.subscribe("/a/b", { qos: 1 });
    await client.publish(new Message("/a/b", "hello", { qos: 1 }));
    await client.messages.get();
    await client.stop();
    return b.waitStderr(/Received DISCONNECT\(14\)/);
  }

  test("global --log-level info before the command: the broker logs one line per packet received and sent", async () => {
    const err = await conversation(["--log-level", "info", "broker", "--host", "127.0.0.1", "--port", "0"]);
    for (const line of [
      "Received CONNECT(1): ClientId=x, Protocol=5, CleanStart=true, KeepAlive=60",
      "Sent CONNACK(2): SessionPresent=false, ReasonCode=0x00 (Success)",
      "Received SUBSCRIBE(8): PacketId=1, Topics=/a/b (QoS 1)",
      "Sent SUBACK(9): PacketId=1, ReasonCodes=[0x01]",
      "Received PUBLISH(3): Topic=/a/b, QoS=1, PacketId=",
      "Sent PUBLISH(3): Topic=/a/b, QoS=1, PacketId=",
      "Sent PUBACK(4): PacketId=",
      "Received PUBACK(4): PacketId=",
      "Received DISCONNECT(14): ReasonCode=0x00 (Success)",
    ]) expect(err).toContain(line);
    expect(err).toMatch(/info: client 'x' \(127\.0\.0\.1\): Received PUBLISH\(3\): Topic=\/a\/b, QoS=1, PacketId=\d+, Payload=5 bytes\n/);
  });

  test("--log-level=debug logs every field; the broker's own --log-level wins over the global one", async () => {
    const err = await conversation(["--log-level=error", "broker", "--log-level", "debug", "--host", "127.0.0.1", "--port", "0"]);
    expect(err).toMatch(/debug: client 'x' \(127\.0\.0\.1\): Received PUBLISH\(3\): Dup=false, Qos=1, Retain=false, Topic=\/a\/b, PacketId=\d+, Properties=\{\}, Payload=5 bytes "hello"/);
    expect(err).toContain('Sent CONNACK(2): SessionPresent=false, ReasonCode=0x00 (Success), Properties={');
  });

  test("at the default level (error) no packet is logged", async () => {
    const b = (running = await startBrokerProcess(["broker", "--host", "127.0.0.1", "--port", "0"]));
    const client = new Client("127.0.0.1", b.ports[0]!, { connectDelays: [] });
    await client.start();
    await client.stop();
    expect(await b.stop()).toBe(0);
    running = null;
    expect(b.stderr()).not.toContain("CONNECT");
  });

  test.each([
    [["--log-level", "loud", "broker"], "--log-level must be debug, info, warning or error, not 'loud'"],
    [["--log-level"], "--log-level must be debug, info, warning or error, not ''"],
  ])("%p is a one-line usage error, exit code 2", async (args, message) => {
    const r = await finished(Bun.spawn([process.execPath, entry, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(message);
  });
});

describe("Client logLevel option", () => {
  test("info logs the client's side of the conversation to its logger; the default logs nothing", async () => {
    const { port, stop } = await startBroker();
    const lines: string[] = [];
    const client = new Client("127.0.0.1", port, { clientId: "logged", connectDelays: [], logLevel: "info", logger: (l) => lines.push(l) });
    const quiet = new Client("127.0.0.1", port, { connectDelays: [], logger: (l) => lines.push(`quiet: ${l}`) });
    try {
      await client.start();
      await quiet.start();
      await client.publish(new Message("c/t", "abc", { qos: 1 }));
      await client.stop();
      await quiet.stop();
    } finally {
      await stop();
    }
    const text = lines.join("\n");
    expect(text).toMatch(/info: Sent CONNECT\(1\): ClientId=logged, Protocol=5/);
    expect(text).toContain("Received CONNACK(2): SessionPresent=false, ReasonCode=0x00 (Success)");
    expect(text).toMatch(/Sent PUBLISH\(3\): Topic=c\/t, QoS=1, PacketId=\d+, Payload=3 bytes/);
    expect(text).toMatch(/Received PUBACK\(4\): PacketId=\d+/);
    expect(text).toContain("Sent DISCONNECT(14)");
    expect(text).not.toContain("quiet:");
  });
});
