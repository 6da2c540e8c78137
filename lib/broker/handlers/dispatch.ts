/** Routes each decoded packet to its handler, by packet type and connection state. */
import { PACKET_NAMES, PacketType } from "../../codec/constants";
import { protocolError } from "../../codec/reason-codes";
import type { Packet } from "../../codec/packet";
import { ConnState, type Connection } from "../connection";
import { handleConnect } from "./connect";
import { handlePublish } from "./publish";
import { handlePuback, handlePubcomp, handlePubrec, handlePubrel } from "./acks";
import { handleSubscribe, handleUnsubscribe } from "./subscribe";
import { handleDisconnect } from "./disconnect";

/** Handles one packet from a client. Throws MqttError for protocol violations. */
export function dispatch(conn: Connection, p: Packet): void {
  if (conn.state === ConnState.AwaitingConnect) {
    handleConnect(conn, p as Extract<Packet, { type: 1 }>); // the connection checked the type
    return;
  }
  switch (p.type) {
    case PacketType.PUBLISH: return handlePublish(conn, p);
    case PacketType.PUBACK: return handlePuback(conn, p);
    case PacketType.PUBREC: return handlePubrec(conn, p);
    case PacketType.PUBREL: return handlePubrel(conn, p);
    case PacketType.PUBCOMP: return handlePubcomp(conn, p);
    case PacketType.SUBSCRIBE: return handleSubscribe(conn, p);
    case PacketType.UNSUBSCRIBE: return handleUnsubscribe(conn, p);
    case PacketType.PINGREQ:
      conn.writePacket({ type: PacketType.PINGRESP }); // [MQTT-3.12.4-1]
      return;
    case PacketType.DISCONNECT: return handleDisconnect(conn, p);
    case PacketType.CONNECT: protocolError("a second CONNECT on one connection"); // [MQTT-3.1.0-2]
    case PacketType.AUTH: protocolError("AUTH without an authentication method in CONNECT"); // [MQTT-4.12.0-1]
    default: protocolError(`a client must not send ${PACKET_NAMES[p.type]}`);
  }
}
