/** UNSUBACK (MQTT 5.0 section 3.11; 3.1.1 section 3.11): v5 carries a reason code per filter, 3.1.1 none. */
import { PacketType, type ProtocolVersion } from "../constants";
import { ALLOWED_REASON_CODES, malformed } from "../reason-codes";
import { NO_PROPERTIES, type AckProperties } from "../properties";
import type { Reader } from "../reader";
import { propertiesSize, varintSize, type Writer } from "../writer";

/** An UNSUBACK packet; `reasonCodes` is empty at protocol level 4. */
export interface UnsubackPacket {
  type: typeof PacketType.UNSUBACK;
  packetId: number;
  reasonCodes: number[];
  properties: AckProperties;
}

/** Decodes an UNSUBACK. */
export function decodeUnsuback(r: Reader, version: ProtocolVersion): UnsubackPacket {
  const packetId = r.u16("the packet identifier");
  if (packetId === 0) malformed("UNSUBACK packet identifier is 0"); // [MQTT-2.2.1-3]
  const reasonCodes: number[] = [];
  let properties: AckProperties = NO_PROPERTIES;
  if (version === 5) {
    properties = r.properties(PacketType.UNSUBACK);
    const allowed = ALLOWED_REASON_CODES.get(PacketType.UNSUBACK)!;
    while (r.remaining() > 0) {
      const code = r.u8("a reason code");
      if (!allowed.has(code)) malformed(`UNSUBACK reason code 0x${code.toString(16)} is not defined`); // section 3.11.3
      reasonCodes.push(code);
    }
  } else if (r.remaining() !== 0) {
    malformed(`UNSUBACK has ${r.remaining()} byte(s) after its packet identifier`); // 3.1.1 section 3.11.3
  }
  return { type: PacketType.UNSUBACK, packetId, reasonCodes, properties };
}

/** Remaining length of an UNSUBACK. */
export function sizeUnsuback(p: UnsubackPacket, version: ProtocolVersion): number {
  if (version !== 5) return 2;
  const ps = propertiesSize(p.properties);
  return 2 + varintSize(ps) + ps + p.reasonCodes.length;
}

/** Writes an UNSUBACK. */
export function encodeUnsuback(w: Writer, p: UnsubackPacket, version: ProtocolVersion): void {
  w.u16(p.packetId);
  if (version !== 5) return;
  w.properties(p.properties, propertiesSize(p.properties));
  for (const c of p.reasonCodes) w.u8(c);
}
