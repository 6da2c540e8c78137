/** DISCONNECT (MQTT 5.0 section 3.14; 3.1.1 section 3.14): sent by either side in v5, by the client in 3.1.1. */
import { PacketType, type ProtocolVersion } from "../constants";
import { ALLOWED_REASON_CODES, malformed } from "../reason-codes";
import { NO_PROPERTIES, type DisconnectProperties } from "../properties";
import type { Reader } from "../reader";
import { propertiesSize, varintSize, type Writer } from "../writer";

/** A DISCONNECT packet; at protocol level 4 it is always reason 0 with no properties. */
export interface DisconnectPacket {
  type: typeof PacketType.DISCONNECT;
  reasonCode: number;
  properties: DisconnectProperties;
}

/** Decodes a DISCONNECT. */
export function decodeDisconnect(r: Reader, version: ProtocolVersion): DisconnectPacket {
  let reasonCode = 0;
  let properties: DisconnectProperties = NO_PROPERTIES;
  if (version === 5) {
    if (r.remaining() > 0) { // section 3.14.2.1: absent means 0x00
      reasonCode = r.u8("the reason code");
      if (!ALLOWED_REASON_CODES.get(PacketType.DISCONNECT)!.has(reasonCode)) malformed(`DISCONNECT reason code 0x${reasonCode.toString(16)} is not defined`);
    }
    if (r.remaining() > 0) properties = r.properties(PacketType.DISCONNECT); // section 3.14.2.2
  }
  if (r.remaining() !== 0) malformed(`DISCONNECT has ${r.remaining()} unexpected byte(s)`); // 3.1.1 [MQTT-2.2.2-?]: no variable header
  return { type: PacketType.DISCONNECT, reasonCode, properties };
}

/** Remaining length: the shortest form the spec allows. */
export function sizeDisconnect(p: DisconnectPacket, version: ProtocolVersion): number {
  if (version !== 5) return 0;
  const ps = propertiesSize(p.properties);
  if (ps > 0) return 1 + varintSize(ps) + ps;
  return p.reasonCode === 0 ? 0 : 1;
}

/** Writes a DISCONNECT in its shortest form. */
export function encodeDisconnect(w: Writer, p: DisconnectPacket, version: ProtocolVersion): void {
  if (version !== 5) return;
  const ps = propertiesSize(p.properties);
  if (ps === 0 && p.reasonCode === 0) return;
  w.u8(p.reasonCode);
  if (ps > 0) w.properties(p.properties, ps);
}
