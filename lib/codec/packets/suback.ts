/** SUBACK (MQTT 5.0 section 3.9; 3.1.1 section 3.9): one reason code per requested filter. */
import { PacketType, type ProtocolVersion } from "../constants";
import { ALLOWED_REASON_CODES, ALLOWED_V4_SUBACK, malformed, protocolError } from "../reason-codes";
import { NO_PROPERTIES, type AckProperties } from "../properties";
import type { Reader } from "../reader";
import { propertiesSize, varintSize, type Writer } from "../writer";

/** A SUBACK packet. For protocol level 4 the codes are 0, 1, 2 or 0x80. */
export interface SubackPacket {
  type: typeof PacketType.SUBACK;
  packetId: number;
  reasonCodes: number[];
  properties: AckProperties;
}

/** Decodes a SUBACK. */
export function decodeSuback(r: Reader, version: ProtocolVersion): SubackPacket {
  const packetId = r.u16("the packet identifier");
  if (packetId === 0) malformed("SUBACK packet identifier is 0"); // [MQTT-2.2.1-3]
  const properties = version === 5 ? r.properties(PacketType.SUBACK) : NO_PROPERTIES;
  const allowed = version === 5 ? ALLOWED_REASON_CODES.get(PacketType.SUBACK)! : ALLOWED_V4_SUBACK;
  const reasonCodes: number[] = [];
  while (r.remaining() > 0) {
    const code = r.u8("a reason code");
    if (!allowed.has(code)) malformed(`SUBACK reason code 0x${code.toString(16)} is not defined`); // section 3.9.3
    reasonCodes.push(code);
  }
  if (reasonCodes.length === 0) protocolError("SUBACK has no reason code"); // section 3.9.3
  return { type: PacketType.SUBACK, packetId, reasonCodes, properties };
}

/** Remaining length of a SUBACK. */
export function sizeSuback(p: SubackPacket, version: ProtocolVersion): number {
  let n = 2 + p.reasonCodes.length;
  if (version === 5) {
    const ps = propertiesSize(p.properties);
    n += varintSize(ps) + ps;
  }
  return n;
}

/** Writes a SUBACK. */
export function encodeSuback(w: Writer, p: SubackPacket, version: ProtocolVersion): void {
  w.u16(p.packetId);
  if (version === 5) w.properties(p.properties, propertiesSize(p.properties));
  for (const c of p.reasonCodes) w.u8(c);
}
