/**
 * Every malformed packet a client can send (the MALFORMED cases marked clientToServer), sent to
 * one broker on port 0: after a successful CONNECT, or as the CONNECT itself. A v5 connection is
 * answered with DISCONNECT (CONNACK for a CONNECT) carrying the case's reason code and a reason
 * string, and closed [MQTT-4.13.1-1]; a 3.1.1 connection is closed. Meanwhile two clients that
 * connected first keep exchanging messages, and the broker keeps accepting connections.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ConnackReturnCode, PacketType, ReasonCode, type ConnackPacket, type DisconnectPacket } from "../../lib/codec";
import { MALFORMED, type MalformedCase } from "../fixtures/malformed";
import { nextPublish, publishPacket, rawSubscribe, RawHarness, text, type RawClient } from "./helpers";

const CASES = MALFORMED.filter((c) => c.clientToServer);
const isConnect = (c: MalformedCase): boolean => c.bytes[0]! >> 4 === PacketType.CONNECT;

let h: RawHarness;
let witnessSub: RawClient;
let witnessPub: RawClient;
let round = 0;

beforeAll(async () => {
  h = await RawHarness.start();
  witnessSub = await h.connect({ protocolVersion: 5, clientId: "witness-sub" });
  witnessPub = await h.connect({ protocolVersion: 4, clientId: "witness-pub" });
  expect(await rawSubscribe(witnessSub, "witness/#", 1)).toBe(1);
});
afterAll(async () => {
  await h.cleanup();
});

/** The clients connected before every case still work: a QoS 1 message from one reaches the other. */
async function witnessesStillWork(): Promise<void> {
  const n = ++round;
  witnessPub.send(publishPacket(`witness/${n}`, `round ${n}`, { qos: 1, packetId: (n % 65535) + 1 }));
  const p = await nextPublish(witnessSub, `witness/${n}`);
  expect(text(p.payload)).toBe(`round ${n}`);
  witnessSub.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
  await witnessPub.next(PacketType.PUBACK);
  expect(witnessSub.isClosed || witnessPub.isClosed).toBe(false);
}

describe("malformed packets from a client", () => {
  test("the table has client-to-server cases of both protocol levels, CONNECT and otherwise", () => {
    expect(CASES.some((c) => c.version === 5 && isConnect(c))).toBe(true);
    expect(CASES.some((c) => c.version === 4 && isConnect(c))).toBe(true);
    expect(CASES.some((c) => c.version === 5 && !isConnect(c))).toBe(true);
    expect(CASES.some((c) => c.version === 4 && !isConnect(c))).toBe(true);
  });

  test.each(CASES.map((c) => [`v${c.version === 5 ? "5" : "3.1.1"} ${c.name}`, c] as const))("%s", async (_name, c) => {
    let client: RawClient;
    if (isConnect(c)) {
      client = await h.open(c.version);
      client.send(c.bytes);
      await client.closed.promise;
      const connacks = client.received.filter((p): p is ConnackPacket => p.type === PacketType.CONNACK);
      expect(client.received.filter((p) => p.type !== PacketType.CONNACK)).toEqual([]);
      if (c.version === 5) {
        expect(connacks.length).toBe(1); // [MQTT-3.2.2-8] refused with a reason code, then closed
        expect(connacks[0]!.reasonCode).toBe(c.reasonCode);
        expect(connacks[0]!.sessionPresent).toBe(false);
        expect(connacks[0]!.properties.reasonString).toMatch(c.message);
      } else {
        // 3.1.1: closed; at most a CONNACK 0x01 for a protocol it does not speak [MQTT-3.1.2-2]
        for (const ack of connacks) expect(ack.reasonCode).toBe(ConnackReturnCode.UnacceptableProtocolVersion);
        if (c.reasonCode !== ReasonCode.UnsupportedProtocolVersion) expect(connacks).toEqual([]);
      }
    } else {
      client = await h.connect({ protocolVersion: c.version, clientId: `malformed-${round}` });
      client.send(c.bytes);
      await client.closed.promise;
      if (c.version === 5) {
        expect(client.received.map((p) => p.type)).toEqual([PacketType.DISCONNECT]);
        const d = client.received[0] as DisconnectPacket;
        expect(d.reasonCode).toBe(c.reasonCode);
        expect(d.properties.reasonString).toMatch(c.message);
      } else {
        expect(client.received).toEqual([]); // (3.1.1) [MQTT-4.8.0-1]: the connection is closed, nothing sent
      }
    }
    expect(client.isClosed).toBe(true);
    await witnessesStillWork();
  });

  test("afterwards the broker still accepts new connections at both protocol levels, and the witnesses are connected", async () => {
    for (const version of [5, 4] as const) {
      const c = await h.connect({ protocolVersion: version, clientId: `after-${version}` });
      expect(await rawSubscribe(c, "after/x", 1)).toBe(1);
      c.send(publishPacket("after/x", "hello", { qos: 1, packetId: 1 }));
      expect(text((await nextPublish(c, "after/x")).payload)).toBe("hello");
    }
    await witnessesStillWork();
    expect(h.broker.clients.has("witness-sub") && h.broker.clients.has("witness-pub")).toBe(true);
  });
});
