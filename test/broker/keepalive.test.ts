/**
 * Keep alive as raw conversations with a broker on port 0: a silent client is disconnected after
 * one and a half keep-alive periods, any packet (PINGREQ or other) keeps it connected, keep alive
 * 0 turns the check off, and a Server Keep Alive the broker imposes is enforced.
 *
 * No timing is asserted: a client that must stay connected is compared with a silent client
 * connected at the same moment, which must be disconnected first.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { PacketType, ReasonCode, type DisconnectPacket, type Packet } from "../../lib/codec";
import type { BrokerInit } from "../../lib/broker/broker";
import { publishPacket, RawHarness, roundTrip, type RawClient } from "./helpers";

let h: RawHarness | null = null;
const start = async (options: BrokerInit = {}): Promise<RawHarness> => (h = await RawHarness.start(options));
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

/** How often an active client sends something: well inside a keep alive of 1 s, as a real client would. */
const ACTIVITY_PERIOD_MS = 250;

/** Sends `packet` (and waits for `answer`, when given) every ACTIVITY_PERIOD_MS until `until` is closed. */
async function keepBusy(c: RawClient, until: RawClient, packet: Packet, answer?: number): Promise<void> {
  while (!until.isClosed) {
    c.send(packet);
    if (answer !== undefined) await c.next(answer);
    await Promise.race([Bun.sleep(ACTIVITY_PERIOD_MS), until.closed.promise]);
  }
}

describe("keep alive", () => {
  test("v5: a client with keep alive 1 that sends nothing gets DISCONNECT 0x8D Keep Alive Timeout and is closed [MQTT-3.1.2-22]", async () => {
    const h = await start();
    const c = await h.connect({ clientId: "silent", keepAlive: 1 });
    const d = (await c.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.KeepAliveTimeout);
    await c.closed.promise;
    expect(h.broker.clients.has("silent")).toBe(false);
  });

  test("3.1.1: a client with keep alive 1 that sends nothing is closed (3.1.1 [MQTT-3.1.2-24])", async () => {
    const h = await start();
    const c = await h.connect({ protocolVersion: 4, clientId: "silent-v4", keepAlive: 1 });
    await c.closed.promise;
    expect(c.received).toEqual([]); // 3.1.1 has no server DISCONNECT
    expect(h.broker.clients.has("silent-v4")).toBe(false);
  });

  test.each([5, 4] as const)("v%d: PINGREQ gets PINGRESP [MQTT-3.12.4-1] and keeps the client connected past the interval", async (version) => {
    const h = await start();
    const pinger = await h.connect({ protocolVersion: version, clientId: "pinger", keepAlive: 1 });
    const silent = await h.connect({ protocolVersion: version, clientId: "silent", keepAlive: 1 });
    await keepBusy(pinger, silent, { type: PacketType.PINGREQ }, PacketType.PINGRESP);
    expect(pinger.isClosed).toBe(false);
    await roundTrip(pinger);
    expect(h.broker.clients.has("pinger")).toBe(true);
  });

  test("v5: any control packet counts, not only PINGREQ: a client publishing QoS 0 stays connected", async () => {
    const h = await start();
    const talker = await h.connect({ clientId: "talker", keepAlive: 1 });
    const silent = await h.connect({ clientId: "silent", keepAlive: 1 });
    await keepBusy(talker, silent, publishPacket("keepalive/chatter", "still here"));
    expect(talker.isClosed).toBe(false);
    await roundTrip(talker);
  });

  test.each([5, 4] as const)("v%d: keep alive 0 turns the check off", async (version) => {
    const h = await start();
    const idle = await h.connect({ protocolVersion: version, clientId: "idle", keepAlive: 0 });
    const silent = await h.connect({ protocolVersion: version, clientId: "silent", keepAlive: 1 });
    await silent.closed.promise;
    expect(idle.isClosed).toBe(false);
    await roundTrip(idle);
    expect(h.broker.clients.has("idle")).toBe(true);
  });

  test("v5: a Server Keep Alive imposed on a client that asked for 0 is enforced [MQTT-3.2.2-21]", async () => {
    const h = await start({ maxKeepAlive: 1 });
    const { client, connack } = await h.connectAck({ clientId: "imposed", keepAlive: 0 });
    expect(connack.properties.serverKeepAlive).toBe(1);
    const d = (await client.next(PacketType.DISCONNECT)) as DisconnectPacket;
    expect(d.reasonCode).toBe(ReasonCode.KeepAliveTimeout);
    await client.closed.promise;
  });
});
