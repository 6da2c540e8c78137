/**
 * PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5.0 sections 3.4-3.7): the four QoS 1/2 acknowledgements
 * share one layout, so one file serves them: packet identifier, then (v5) an optional reason code
 * and optional properties.
 */
import { PACKET_NAMES, PacketType, type ProtocolVersion } from "../constants";
import { ALLOWED_REASON_CODES, malformed } from "../reason-codes";
import { NO_PROPERTIES, type AckProperties } from "../properties";
import type { Reader } from "../reader";
import { propertiesSize, varintSize, type Writer } from "../writer";

interface PubAck<T extends number> {
  type: T;
  packetId: number;
  reasonCode: number;
  properties: AckProperties;
}
/** PUBACK: QoS 1 acknowledgement. */
export type PubackPacket = PubAck<typeof PacketType.PUBACK>;
/** PUBREC: QoS 2 delivery, part 1. */
export type PubrecPacket = PubAck<typeof PacketType.PUBREC>;
/** PUBREL: QoS 2 delivery, part 2. */
export type PubrelPacket = PubAck<typeof PacketType.PUBREL>;
/** PUBCOMP: QoS 2 delivery, part 3. */
export type PubcompPacket = PubAck<typeof PacketType.PUBCOMP>;
/** Any of the four. */
export type PubAckPacket = PubackPacket | PubrecPacket | PubrelPacket | PubcompPacket;

/** Decodes one of the four; `type` comes from the fixed header. */
export function decodePubAck(r: Reader, type: PubAckPacket["type"], version: ProtocolVersion): PubAckPacket {
  const name = PACKET_NAMES[type];
  const packetId = r.u16("the packet identifier");
  if (packetId === 0) malformed(`${name} packet identifier is 0`); // [MQTT-2.2.1-3]
  let reasonCode = 0;
  let properties: AckProperties = NO_PROPERTIES;
  if (version === 5) {
    if (r.remaining() > 0) { // section 3.4.2.1: absent means 0x00
      reasonCode = r.u8("the reason code");
      if (!ALLOWED_REASON_CODES.get(type)!.has(reasonCode)) malformed(`${name} reason code 0x${reasonCode.toString(16)} is not defined for ${name}`);
    }
    if (r.remaining() > 0) properties = r.properties(type); // section 3.4.2.2: absent means none
  }
  if (r.remaining() !== 0) malformed(`${name} has ${r.remaining()} byte(s) after its ${version === 5 ? "properties" : "packet identifier"}`);
  return { type, packetId, reasonCode, properties } as PubAckPacket;
}

/** Remaining length: the shortest form the spec allows. */
export function sizePubAck(p: PubAckPacket, version: ProtocolVersion): number {
  if (version !== 5) return 2;
  const ps = propertiesSize(p.properties);
  if (ps > 0) return 3 + varintSize(ps) + ps;
  return p.reasonCode === 0 ? 2 : 3;
}

/** Writes one of the four in its shortest form. */
export function encodePubAck(w: Writer, p: PubAckPacket, version: ProtocolVersion): void {
  w.u16(p.packetId);
  if (version !== 5) return;
  const ps = propertiesSize(p.properties);
  if (ps === 0 && p.reasonCode === 0) return;
  w.u8(p.reasonCode);
  if (ps > 0) w.properties(p.properties, ps);
}
