/** PUBACK, PUBREC, PUBREL and PUBCOMP from a client: the QoS 1/2 flows (section 4.3). */
import { PacketType } from "../../codec/constants";
import { NO_PROPERTIES } from "../../codec/properties";
import { ReasonCode } from "../../codec/reason-codes";
import type { PubackPacket, PubcompPacket, PubrecPacket, PubrelPacket } from "../../codec/packets/pub-acks";
import type { Connection } from "../connection";

/** QoS 1 delivery to the client completed: free the identifier and refill the window. */
export function handlePuback(conn: Connection, p: PubackPacket): void {
  completeQos1(conn, p.packetId); // whatever its reason code, a PUBACK ends the exchange (section 4.3.2)
}

/**
 * PUBACK for `packetId` (also without a packet object: Connection.process reads the common
 * four-byte form itself). With `pump` false the caller refills the window (Outbox.pump) itself,
 * after a run of them; true is returned when one freed a slot.
 */
export function completeQos1(conn: Connection, packetId: number, pump = true): boolean {
  const session = conn.session!;
  const m = session.inflight.get(packetId);
  if (m === undefined || m.qos !== 1) return false; // unknown identifiers are ignored
  session.removeInflight(packetId); // unacknowledged until PUBACK [MQTT-4.3.2-2]
  session.lastAcknowledged = conn.lastReceived;
  if (pump) conn.broker.outbox.pump(session);
  return true;
}

/** QoS 2, step 1 done: answer PUBREL (or forget the message if the client refused it). */
export function handlePubrec(conn: Connection, p: PubrecPacket): void {
  const session = conn.session!;
  const m = session.inflight.get(p.packetId);
  if (m === undefined || m.qos !== 2) {
    conn.writePacket({ type: PacketType.PUBREL, packetId: p.packetId, reasonCode: ReasonCode.PacketIdentifierNotFound, properties: NO_PROPERTIES });
    return;
  }
  if (p.reasonCode >= 0x80) { // section 4.3.3: a failed PUBREC ends the exchange
    session.removeInflight(p.packetId);
    conn.broker.outbox.pump(session);
    return;
  }
  session.releaseInflight(m); // [MQTT-4.3.3-4]
  session.lastAcknowledged = conn.lastReceived;
  conn.writeAck(PacketType.PUBREL, p.packetId);
}

/** QoS 2 from the client, step 2: release the identifier and answer PUBCOMP. */
export function handlePubrel(conn: Connection, p: PubrelPacket): void {
  if (conn.session!.removeIncomingQos2(p.packetId)) conn.writeAck(PacketType.PUBCOMP, p.packetId); // [MQTT-4.3.3-11]
  else conn.writePacket({ type: PacketType.PUBCOMP, packetId: p.packetId, reasonCode: ReasonCode.PacketIdentifierNotFound, properties: NO_PROPERTIES });
}

/** QoS 2 delivery to the client completed. */
export function handlePubcomp(conn: Connection, p: PubcompPacket): void {
  const session = conn.session!;
  const m = session.inflight.get(p.packetId);
  if (m === undefined || m.qos !== 2) return;
  session.removeInflight(p.packetId);
  session.lastAcknowledged = conn.lastReceived;
  conn.broker.outbox.pump(session);
}
