/** lib/broker/cluster/envelope.ts: what crosses between nodes, byte for byte. */
import { expect, test } from "bun:test";
import { decodeEnvelope, decodeRetained, encodeEnvelope, encodeRetained } from "../../lib/broker/cluster/envelope";
import type { Message } from "../../lib/broker/message";

const utf8 = new TextEncoder();
const message = (fields: Partial<Message> = {}): Message => ({ topic: "a/b", topicBytes: utf8.encode("a/b"), payload: utf8.encode("hello"), qos: 1, retain: true, properties: { userProperties: [["k", "v"]] }, expiresAt: 0, persisted: true, ownTopic: true, forms: null, formsShared: true, ...fields });

test("an envelope carries origin and sequence as big-endian float64 (the format nodes of earlier versions read) and the message whole", () => {
  for (const [origin, seq] of [[1, 1], [2 ** 53 - 1, 123_456_789], [0.5, 2 ** 40 + 3]] as const) {
    const bytes = encodeEnvelope(message(), origin, seq, Date.now());
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    expect([bytes[0], view.getFloat64(1), view.getFloat64(9)]).toEqual([1, origin, seq]);
    const back = decodeEnvelope(bytes.slice()); // as received: a buffer of its own
    expect([back.origin, back.seq]).toEqual([origin, seq]);
    expect([back.message.topic, new TextDecoder().decode(back.message.payload), back.message.qos, back.message.retain, back.message.properties]).toEqual(["a/b", "hello", 1, true, { userProperties: [["k", "v"]] }]);
  }
});

test("a retained message keeps its absolute expiry as a big-endian float64", () => {
  const expiresAt = Date.now() + 60_000;
  const bytes = encodeRetained(message({ expiresAt }), Date.now());
  expect(new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getFloat64(1)).toBe(expiresAt);
  expect(decodeRetained(bytes).expiresAt).toBe(expiresAt);
});
