/** Session's packet identifiers and its table of messages in flight, without a broker. */
import { describe, expect, test } from "bun:test";
import { NO_PROPERTIES } from "../../lib/codec/properties";
import type { Message } from "../../lib/broker/message";
import { Session, type InflightMessage } from "../../lib/broker/session";

const message: Message = {
  topic: "t", topicBytes: new Uint8Array([0x74]), payload: new Uint8Array(0), qos: 1, retain: false, properties: NO_PROPERTIES,
  expiresAt: 0, persisted: true, ownTopic: true, forms: null, formsShared: true,
};

/** Sends one message: a fresh identifier, recorded as in flight. */
function send(s: Session): InflightMessage {
  const packetId = s.allocatePacketId();
  const m: InflightMessage = { packetId, message, qos: 1, retain: false, subscriptionIds: null, released: false, held: false };
  if (packetId !== 0) s.addInflight(m);
  return m;
}

describe("packet identifiers of a session", () => {
  test("[MQTT-2.2.1-3] all 65 535 can be in flight at once, each once; the next is 0 (none free) until one is acknowledged, which is then used again", () => {
    const s = new Session("c");
    const ids = new Set<number>();
    for (let i = 0; i < 65535; i++) {
      const { packetId } = send(s);
      expect(packetId).toBeGreaterThan(0);
      ids.add(packetId);
    }
    expect(ids.size).toBe(65535);
    expect(s.inflight.size).toBe(65535);
    expect(s.allocatePacketId()).toBe(0);
    expect(s.removeInflight(40000)).toBe(true);
    expect(s.removeInflight(40000)).toBe(false);
    expect(s.allocatePacketId()).toBe(40000);
  });

  test("they go round 1..N, N twice the number in flight (at least 256), skipping the ones still unacknowledged", () => {
    const s = new Session("c");
    const stuck = send(s).packetId; // never acknowledged
    const used = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const m = send(s);
      used.add(m.packetId);
      s.removeInflight(m.packetId); // acknowledged at once
    }
    expect(stuck).toBe(1);
    expect(used.has(stuck)).toBe(false);
    expect(Math.max(...used)).toBe(256);
    expect(used.size).toBe(255);
    // 300 in flight: the range grows to 600
    const window = Array.from({ length: 300 }, () => send(s).packetId);
    expect(new Set(window).size).toBe(300);
    for (let i = 0; i < 1000; i++) {
      const m = send(s);
      expect(m.packetId).toBeLessThanOrEqual(2 * s.inflight.size);
      s.removeInflight(window.shift()!);
      window.push(m.packetId);
    }
  });

  test("values() are the messages in flight in the order they were sent, across the identifiers going round", () => {
    const s = new Session("c");
    const sent: number[] = [];
    for (let i = 0; i < 600; i++) {
      sent.push(send(s).packetId);
      if (sent.length > 100) s.removeInflight(sent.shift()!);
    }
    expect(s.inflight.values().map((m) => m.packetId)).toEqual(sent);
    expect(sent.some((id, i) => i > 0 && id < sent[i - 1]!)).toBe(true); // it did go round
    s.clearMessages();
    expect(s.inflight.size).toBe(0);
    expect(s.inflight.values()).toEqual([]);
  });
});
