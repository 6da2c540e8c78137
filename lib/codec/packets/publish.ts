/** PUBLISH (MQTT 5.0 section 3.3; 3.1.1 section 3.3): an application message. */
import { PacketType, PublishFlag, type ProtocolVersion, type QoS } from "../constants";
import { malformed, protocolError } from "../reason-codes";
import { NO_PROPERTIES, type PublishProperties } from "../properties";
import type { Reader, TopicCache } from "../reader";
import { fieldSize, propertiesSize, varintSize, type Writer } from "../writer";

/**
 * A PUBLISH packet. Decoded, `topic` and `payload` are views of the received frame (copy them
 * before the frame's buffer is reused); to encode, `topic` may also be a string.
 * `packetId` is 0 at QoS 0.
 */
export interface PublishPacket {
  type: typeof PacketType.PUBLISH;
  dup: boolean;
  qos: QoS;
  retain: boolean;
  topic: Uint8Array | string;
  packetId: number;
  properties: PublishProperties;
  payload: Uint8Array;
}

/** The payload of a PUBLISH decoded with TopicCache.deferPayloads: not made, see there. */
export const DEFERRED_PAYLOAD = new Uint8Array(0);

/** Decodes a PUBLISH; `flags` is the fixed header's low nibble; `topicCache` see TopicCache (it may also ask for the payload as a copy, or deferred). */
export function decodePublish(r: Reader, flags: number, version: ProtocolVersion, topicCache: TopicCache | null = null): PublishPacket {
  const qos = (flags & PublishFlag.QOS_MASK) >> PublishFlag.QOS_SHIFT;
  if (qos === 3) malformed("PUBLISH QoS is 3"); // [MQTT-3.3.1-4]
  const dup = (flags & PublishFlag.DUP) !== 0;
  if (dup && qos === 0) malformed("PUBLISH has DUP set at QoS 0"); // [MQTT-3.3.1-2]
  const topic = r.topicName("the topic name", topicCache); // [MQTT-3.3.2-1] [MQTT-3.3.2-2]
  let packetId = 0;
  if (qos > 0) {
    packetId = r.u16("the packet identifier");
    if (packetId === 0) malformed("PUBLISH packet identifier is 0"); // [MQTT-2.2.1-3]
  }
  const properties = version === 5 ? r.properties(PacketType.PUBLISH) : NO_PROPERTIES;
  if (topic.length === 0 && properties.topicAlias === undefined) {
    protocolError("PUBLISH has an empty topic name and no Topic Alias"); // [MQTT-3.3.2-1] [MQTT-4.7.3-1]
  }
  let payload: Uint8Array;
  if (topicCache === null) payload = r.rest();
  else if (qos > 0) payload = r.end - r.pos <= (topicCache.copyPayloadsUpTo ?? 0) ? r.restCopy() : r.rest();
  else if (topicCache.deferPayloads === true) {
    topicCache.deferredAt = r.pos;
    r.pos = r.end;
    payload = DEFERRED_PAYLOAD;
  } else payload = r.rest();
  return { type: PacketType.PUBLISH, dup, qos: qos as QoS, retain: (flags & PublishFlag.RETAIN) !== 0, topic, packetId, properties, payload };
}

/** Fixed-header flags of a PUBLISH. */
export function publishFlags(p: PublishPacket): number {
  return (p.dup ? PublishFlag.DUP : 0) | (p.qos << PublishFlag.QOS_SHIFT) | (p.retain ? PublishFlag.RETAIN : 0);
}

/** Remaining length of a PUBLISH. */
export function sizePublish(p: PublishPacket, version: ProtocolVersion): number {
  let n = fieldSize(p.topic) + p.payload.length;
  if (p.qos > 0) n += 2;
  if (version === 5) {
    const ps = propertiesSize(p.properties);
    n += varintSize(ps) + ps;
  }
  return n;
}

/** Writes the variable header and payload of a PUBLISH. */
export function encodePublish(w: Writer, p: PublishPacket, version: ProtocolVersion): void {
  w.field(p.topic);
  if (p.qos > 0) w.u16(p.packetId);
  if (version === 5) w.properties(p.properties, propertiesSize(p.properties));
  w.raw(p.payload);
}
