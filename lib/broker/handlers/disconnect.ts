/** DISCONNECT from a client: a normal end, with or without its will. */
import type { DisconnectPacket } from "../../codec/packets/disconnect";
import { protocolError, ReasonCode } from "../../codec/reason-codes";
import type { Connection } from "../connection";

/** Handles DISCONNECT: 0x04 keeps the will, anything else discards it [MQTT-3.14.4-3]. */
export function handleDisconnect(conn: Connection, p: DisconnectPacket): void {
  const session = conn.session!;
  const expiry = p.properties.sessionExpiryInterval;
  if (expiry !== undefined) {
    if (session.expiryInterval === 0 && expiry !== 0) protocolError("DISCONNECT cannot set a Session Expiry Interval when CONNECT had 0"); // [MQTT-3.14.2-2]
    session.expiryInterval = expiry;
  }
  if (p.reasonCode !== ReasonCode.DisconnectWithWillMessage) conn.will = null;
  conn.close(null, `client disconnected (${p.reasonCode === 0 ? "normal" : `reason 0x${p.reasonCode.toString(16)}`})`, p.reasonCode);
}
