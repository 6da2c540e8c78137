/** UNSUBSCRIBE (MQTT 5.0 section 3.10; 3.1.1 section 3.10). */
import { PacketType, type ProtocolVersion } from "../constants";
import { malformed, protocolError } from "../reason-codes";
import { NO_PROPERTIES, type UnsubscribeProperties } from "../properties";
import type { Reader } from "../reader";
import { fieldSize, propertiesSize, varintSize, type Writer } from "../writer";

/** An UNSUBSCRIBE packet. */
export interface UnsubscribePacket {
  type: typeof PacketType.UNSUBSCRIBE;
  packetId: number;
  topicFilters: string[];
  properties: UnsubscribeProperties;
}

/** Decodes an UNSUBSCRIBE. */
export function decodeUnsubscribe(r: Reader, version: ProtocolVersion): UnsubscribePacket {
  const packetId = r.u16("the packet identifier");
  if (packetId === 0) malformed("UNSUBSCRIBE packet identifier is 0"); // [MQTT-2.2.1-3]
  const properties = version === 5 ? r.properties(PacketType.UNSUBSCRIBE) : NO_PROPERTIES;
  const topicFilters: string[] = [];
  while (r.remaining() > 0) {
    const f = r.utf8("a topic filter");
    if (f.length === 0) protocolError("UNSUBSCRIBE has an empty topic filter"); // [MQTT-4.7.3-1]
    topicFilters.push(f);
  }
  if (topicFilters.length === 0) protocolError("UNSUBSCRIBE has no topic filter"); // [MQTT-3.10.3-2]
  return { type: PacketType.UNSUBSCRIBE, packetId, topicFilters, properties };
}

/** Remaining length of an UNSUBSCRIBE. */
export function sizeUnsubscribe(p: UnsubscribePacket, version: ProtocolVersion): number {
  let n = 2;
  if (version === 5) {
    const ps = propertiesSize(p.properties);
    n += varintSize(ps) + ps;
  }
  for (const f of p.topicFilters) n += fieldSize(f);
  return n;
}

/** Writes an UNSUBSCRIBE. */
export function encodeUnsubscribe(w: Writer, p: UnsubscribePacket, version: ProtocolVersion): void {
  w.u16(p.packetId);
  if (version === 5) w.properties(p.properties, propertiesSize(p.properties));
  for (const f of p.topicFilters) w.field(f);
}
