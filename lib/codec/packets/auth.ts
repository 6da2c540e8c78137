/** AUTH (MQTT 5.0 section 3.15): extended authentication exchange; v5 only. */
import { PacketType } from "../constants";
import { ALLOWED_REASON_CODES, malformed, protocolError } from "../reason-codes";
import { NO_PROPERTIES, type AuthProperties } from "../properties";
import type { Reader } from "../reader";
import { propertiesSize, varintSize, type Writer } from "../writer";

/** An AUTH packet. */
export interface AuthPacket {
  type: typeof PacketType.AUTH;
  reasonCode: number;
  properties: AuthProperties;
}

/** Decodes an AUTH. */
export function decodeAuth(r: Reader): AuthPacket {
  let reasonCode = 0;
  let properties: AuthProperties = NO_PROPERTIES;
  if (r.remaining() > 0) { // [MQTT-3.15.2-1]: absent means 0x00 Success
    reasonCode = r.u8("the reason code");
    if (!ALLOWED_REASON_CODES.get(PacketType.AUTH)!.has(reasonCode)) malformed(`AUTH reason code 0x${reasonCode.toString(16)} is not defined`); // [MQTT-3.15.2-1]
    if (r.remaining() > 0) properties = r.properties(PacketType.AUTH);
  }
  if (r.remaining() !== 0) malformed(`AUTH has ${r.remaining()} byte(s) after its properties`);
  if ((reasonCode !== 0 || properties !== NO_PROPERTIES) && properties.authenticationMethod === undefined) {
    protocolError("AUTH has no Authentication Method"); // section 3.15.2.2.2
  }
  return { type: PacketType.AUTH, reasonCode, properties };
}

/** Remaining length: the shortest form the spec allows. */
export function sizeAuth(p: AuthPacket): number {
  const ps = propertiesSize(p.properties);
  if (ps > 0) return 1 + varintSize(ps) + ps;
  return p.reasonCode === 0 ? 0 : 1;
}

/** Writes an AUTH in its shortest form. */
export function encodeAuth(w: Writer, p: AuthPacket): void {
  const ps = propertiesSize(p.properties);
  if (ps === 0 && p.reasonCode === 0) return;
  w.u8(p.reasonCode);
  if (ps > 0) w.properties(p.properties, ps);
}
