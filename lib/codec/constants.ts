/** Wire constants of MQTT 5.0 and 3.1.1: packet types, protocol levels, flag masks, limits. */

/** Control packet types, the high nibble of the first byte (MQTT 5.0 section 2.1.2). */
export const PacketType = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const;
export type PacketTypeValue = (typeof PacketType)[keyof typeof PacketType];

/** Packet type names by number, for messages. */
export const PACKET_NAMES: readonly string[] = [
  "reserved(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
  "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
];

/** Protocol levels this codec speaks: 4 = MQTT 3.1.1, 5 = MQTT 5.0. */
export const ProtocolVersion = { V311: 4, V5: 5 } as const;
export type ProtocolVersion = (typeof ProtocolVersion)[keyof typeof ProtocolVersion];

/** Quality of service levels. */
export type QoS = 0 | 1 | 2;

/** Fixed-header flag nibble every packet type but PUBLISH must carry [MQTT-2.1.3-1]. */
export const REQUIRED_FLAGS: readonly number[] = [
  -1, 0, 0, -1, 0, 0, 0b0010, 0, 0b0010, 0, 0b0010, 0, 0, 0, 0, 0,
];

/** PUBLISH fixed-header flag bits. */
export const PublishFlag = { RETAIN: 0x01, QOS_MASK: 0x06, QOS_SHIFT: 1, DUP: 0x08 } as const;

/** CONNECT flag bits (MQTT 5.0 section 3.1.2.3). */
export const ConnectFlag = {
  RESERVED: 0x01,
  CLEAN_START: 0x02,
  WILL: 0x04,
  WILL_QOS_MASK: 0x18,
  WILL_QOS_SHIFT: 3,
  WILL_RETAIN: 0x20,
  PASSWORD: 0x40,
  USERNAME: 0x80,
} as const;

/** SUBSCRIBE option bits (MQTT 5.0 section 3.8.3.1). */
export const SubscribeOption = {
  QOS_MASK: 0x03,
  NO_LOCAL: 0x04,
  RETAIN_AS_PUBLISHED: 0x08,
  RETAIN_HANDLING_MASK: 0x30,
  RETAIN_HANDLING_SHIFT: 4,
  RESERVED_V5: 0xc0,
  RESERVED_V4: 0xfc,
} as const;

/** Largest value of a Variable Byte Integer, and so of a remaining length (section 1.5.5). */
export const MAX_VARIABLE_BYTE_INTEGER = 268_435_455;

/** Largest packet the protocol can express: 1 type byte + 4 length bytes + the largest remaining length. */
export const MAX_PACKET_SIZE = 1 + 4 + MAX_VARIABLE_BYTE_INTEGER;
