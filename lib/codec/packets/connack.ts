/** CONNACK (MQTT 5.0 section 3.2; 3.1.1 section 3.2): the server's answer to CONNECT. */
import { PacketType, type ProtocolVersion } from "../constants";
import { ALLOWED_REASON_CODES, ALLOWED_V4_CONNACK, malformed } from "../reason-codes";
import { NO_PROPERTIES, type ConnackProperties } from "../properties";
import type { Reader } from "../reader";
import { propertiesSize, varintSize, type Writer } from "../writer";

/** A CONNACK packet. For protocol level 4, `reasonCode` holds the 3.1.1 return code (0..5). */
export interface ConnackPacket {
  type: typeof PacketType.CONNACK;
  sessionPresent: boolean;
  reasonCode: number;
  properties: ConnackProperties;
}

/** Decodes the variable header of a CONNACK. */
export function decodeConnack(r: Reader, version: ProtocolVersion): ConnackPacket {
  const flags = r.u8("the connect acknowledge flags");
  if (flags & 0xfe) malformed("CONNACK reserved flag bits 7-1 are set"); // [MQTT-3.2.2-1]
  const reasonCode = r.u8("the CONNACK reason code");
  const allowed = version === 5 ? ALLOWED_REASON_CODES.get(PacketType.CONNACK)! : ALLOWED_V4_CONNACK;
  if (!allowed.has(reasonCode)) malformed(`CONNACK reason code 0x${reasonCode.toString(16)} is not defined`);
  const sessionPresent = (flags & 1) === 1;
  if (sessionPresent && reasonCode !== 0) malformed("CONNACK has session present with a non-zero reason code"); // [MQTT-3.2.2-6]
  const properties = version === 5 ? r.properties(PacketType.CONNACK) : NO_PROPERTIES;
  if (r.remaining() !== 0) malformed(`CONNACK has ${r.remaining()} byte(s) after its properties`);
  return { type: PacketType.CONNACK, sessionPresent, reasonCode, properties };
}

/** Remaining length of a CONNACK. */
export function sizeConnack(p: ConnackPacket, version: ProtocolVersion): number {
  if (version !== 5) return 2;
  const ps = propertiesSize(p.properties);
  return 2 + varintSize(ps) + ps;
}

/** Writes the variable header of a CONNACK. */
export function encodeConnack(w: Writer, p: ConnackPacket, version: ProtocolVersion): void {
  w.u8(p.sessionPresent ? 1 : 0);
  w.u8(p.reasonCode);
  if (version === 5) w.properties(p.properties, propertiesSize(p.properties));
}
