/**
 * What crosses between nodes: the codec's own MQTT 5 PUBLISH encoding, behind a small header.
 *
 * A message on a subject: [1 version][8 origin node id][8 sequence][PUBLISH, v5]. The PUBLISH
 * carries QoS, RETAIN, the payload and every v5 property, the Message Expiry Interval as what is
 * left of it when sent. The origin and sequence let a node drop the copies NATS delivers when
 * several of its subscriptions match one subject.
 *
 * A retained message in the KV bucket: [1 version][8 expires at, ms since the epoch, 0 = never]
 * [PUBLISH, v5], so that expiry holds however late it is read.
 */
import { PacketType } from "../../codec/constants";
import { decodePacketAt, encodePacketInto, remainingLength } from "../../codec/packet";
import type { PublishPacket } from "../../codec/packets/publish";
import { decodeUtf8 } from "../../codec/reader";
import { varintSize } from "../../codec/writer";
import { messageFromPublish, type Message } from "../message";

const VERSION = 1;
const HEADER = 17;
const RETAINED_HEADER = 9;

// float64 fields, big-endian (as DataView writes them), through one scratch array: a DataView
// over a fresh Uint8Array makes its ArrayBuffer first, which cost a tenth of a node's time per
// message published
const scratch = new Float64Array(1);
const scratchBytes = new Uint8Array(scratch.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function setFloat64(bytes: Uint8Array, at: number, v: number): void {
  scratch[0] = v;
  for (let i = 0; i < 8; i++) bytes[at + i] = scratchBytes[LITTLE_ENDIAN ? 7 - i : i]!;
}

function getFloat64(bytes: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) scratchBytes[LITTLE_ENDIAN ? 7 - i : i] = bytes[at + i]!;
  return scratch[0]!;
}

/** The PUBLISH a message crosses as: QoS 0 packet identifier left out, expiry as what is left. */
function publishOf(m: Message, now: number): PublishPacket {
  let properties = m.properties;
  if (m.expiresAt !== 0) properties = { ...properties, messageExpiryInterval: Math.max(0, Math.ceil((m.expiresAt - now) / 1000)) };
  return { type: PacketType.PUBLISH, dup: false, qos: m.qos, retain: m.retain, topic: m.topicBytes, packetId: m.qos > 0 ? 1 : 0, properties, payload: m.payload };
}

/** Encodes `m` with `header` bytes in front (left zero). */
function encodeWith(m: Message, header: number, now: number): Uint8Array {
  const p = publishOf(m, now);
  const rl = remainingLength(p, 5);
  const bytes = new Uint8Array(header + 1 + varintSize(rl) + rl);
  encodePacketInto(p, 5, bytes, header, rl);
  bytes[0] = VERSION;
  return bytes;
}

/** A message as published on its subject, from node `origin` with sequence number `seq`. */
export function encodeEnvelope(m: Message, origin: number, seq: number, now: number): Uint8Array {
  const bytes = encodeWith(m, HEADER, now);
  setFloat64(bytes, 1, origin);
  setFloat64(bytes, 9, seq);
  return bytes;
}

/** A message received from another node, with its origin and sequence number. */
export interface Envelope {
  origin: number;
  seq: number;
  message: Message;
}

/** Reads a PUBLISH encoded at `from` into a message (views of `bytes`); throws on what is not one. */
function messageAt(bytes: Uint8Array, from: number): Message {
  const p = decodePacketAt(bytes, from, bytes.length, 5);
  if (p.type !== PacketType.PUBLISH) throw new Error("the envelope does not hold a PUBLISH");
  const topicBytes = p.topic as Uint8Array;
  return messageFromPublish(p, decodeUtf8(topicBytes, 0, topicBytes.length, "the topic name"), topicBytes);
}

/** Decodes what encodeEnvelope made; throws on anything else. */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length < HEADER + 2 || bytes[0] !== VERSION) throw new Error(`not a message envelope of version ${VERSION}`);
  return { origin: getFloat64(bytes, 1), seq: getFloat64(bytes, 9), message: messageAt(bytes, HEADER) };
}

/** A retained message as kept in the KV bucket. */
export function encodeRetained(m: Message, now: number): Uint8Array {
  const bytes = encodeWith(m, RETAINED_HEADER, now);
  setFloat64(bytes, 1, m.expiresAt);
  return bytes;
}

/** Decodes what encodeRetained made: the message with its expiry (absolute, as stored). */
export function decodeRetained(bytes: Uint8Array): Message {
  if (bytes.length < RETAINED_HEADER + 2 || bytes[0] !== VERSION) throw new Error(`not a retained message of version ${VERSION}`);
  const m = messageAt(bytes, RETAINED_HEADER);
  m.expiresAt = getFloat64(bytes, 1);
  return m;
}
