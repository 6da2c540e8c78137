/** SUBSCRIBE (MQTT 5.0 section 3.8; 3.1.1 section 3.8): topic filters with their options. */
import { PacketType, SubscribeOption, type ProtocolVersion, type QoS } from "../constants";
import { malformed, protocolError } from "../reason-codes";
import { NO_PROPERTIES, type SubscribeProperties } from "../properties";
import type { Reader } from "../reader";
import { fieldSize, propertiesSize, varintSize, type Writer } from "../writer";

/** One topic filter and its subscription options (section 3.8.3.1). */
export interface Subscription {
  topicFilter: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
}

/** A SUBSCRIBE packet. */
export interface SubscribePacket {
  type: typeof PacketType.SUBSCRIBE;
  packetId: number;
  subscriptions: Subscription[];
  properties: SubscribeProperties;
}

/** Decodes a SUBSCRIBE. */
export function decodeSubscribe(r: Reader, version: ProtocolVersion): SubscribePacket {
  const packetId = r.u16("the packet identifier");
  if (packetId === 0) malformed("SUBSCRIBE packet identifier is 0"); // [MQTT-2.2.1-3]
  const properties = version === 5 ? r.properties(PacketType.SUBSCRIBE) : NO_PROPERTIES;
  const subscriptions: Subscription[] = [];
  while (r.remaining() > 0) {
    const topicFilter = r.utf8("a topic filter");
    if (topicFilter.length === 0) protocolError("SUBSCRIBE has an empty topic filter"); // [MQTT-4.7.3-1]
    const options = r.u8("the subscription options");
    if (version === 5) {
      if (options & SubscribeOption.RESERVED_V5) malformed("SUBSCRIBE reserved option bits 7-6 are set"); // [MQTT-3.8.3-5]
    } else if (options & SubscribeOption.RESERVED_V4) {
      malformed("SUBSCRIBE reserved option bits 7-2 are set"); // 3.1.1 [MQTT-3-8.3-4]
    }
    const qos = options & SubscribeOption.QOS_MASK;
    if (qos === 3) {
      if (version === 5) protocolError("SUBSCRIBE maximum QoS is 3"); // section 3.8.3.1: a Protocol Error in MQTT 5.0
      malformed("SUBSCRIBE maximum QoS is 3"); // 3.1.1 [MQTT-3-8.3-4]
    }
    const retainHandling = (options & SubscribeOption.RETAIN_HANDLING_MASK) >> SubscribeOption.RETAIN_HANDLING_SHIFT;
    if (retainHandling === 3) protocolError("SUBSCRIBE retain handling is 3"); // section 3.8.3.1
    subscriptions.push({
      topicFilter,
      qos: qos as QoS,
      noLocal: (options & SubscribeOption.NO_LOCAL) !== 0,
      retainAsPublished: (options & SubscribeOption.RETAIN_AS_PUBLISHED) !== 0,
      retainHandling: retainHandling as 0 | 1 | 2,
    });
  }
  if (subscriptions.length === 0) protocolError("SUBSCRIBE has no topic filter"); // [MQTT-3.8.3-2]
  return { type: PacketType.SUBSCRIBE, packetId, subscriptions, properties };
}

/** Remaining length of a SUBSCRIBE. */
export function sizeSubscribe(p: SubscribePacket, version: ProtocolVersion): number {
  let n = 2;
  if (version === 5) {
    const ps = propertiesSize(p.properties);
    n += varintSize(ps) + ps;
  }
  for (const s of p.subscriptions) n += fieldSize(s.topicFilter) + 1;
  return n;
}

/** Writes a SUBSCRIBE. */
export function encodeSubscribe(w: Writer, p: SubscribePacket, version: ProtocolVersion): void {
  w.u16(p.packetId);
  if (version === 5) w.properties(p.properties, propertiesSize(p.properties));
  for (const s of p.subscriptions) {
    w.field(s.topicFilter);
    let options: number = s.qos;
    if (version === 5) {
      if (s.noLocal) options |= SubscribeOption.NO_LOCAL;
      if (s.retainAsPublished) options |= SubscribeOption.RETAIN_AS_PUBLISHED;
      options |= s.retainHandling << SubscribeOption.RETAIN_HANDLING_SHIFT;
    }
    w.u8(options);
  }
}
