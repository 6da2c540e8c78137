/** PINGREQ and PINGRESP (sections 3.12, 3.13): a fixed header and nothing else. */
import { PacketType } from "../constants";

/** PINGREQ: the client's keep-alive probe. */
export interface PingreqPacket {
  type: typeof PacketType.PINGREQ;
}
/** PINGRESP: the server's answer. */
export interface PingrespPacket {
  type: typeof PacketType.PINGRESP;
}
