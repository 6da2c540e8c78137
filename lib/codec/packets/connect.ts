/** CONNECT (MQTT 5.0 section 3.1; 3.1.1 section 3.1): the first packet a client sends. */
import { ConnectFlag, PacketType, type ProtocolVersion, type QoS } from "../constants";
import { malformed, MqttError, protocolError, ReasonCode } from "../reason-codes";
import { NO_PROPERTIES, WILL_CONTEXT, type ConnectProperties, type WillProperties } from "../properties";
import type { Reader } from "../reader";
import { fieldSize, propertiesSize, varintSize, type Writer } from "../writer";

/** The will message carried by a CONNECT. `topic` is a view of the frame when decoded. */
export interface Will {
  topic: Uint8Array | string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties: WillProperties;
}

/** A CONNECT packet. `protocolVersion` is read from the packet itself. */
export interface ConnectPacket {
  type: typeof PacketType.CONNECT;
  protocolVersion: ProtocolVersion;
  cleanStart: boolean;
  keepAlive: number;
  clientId: string;
  will: Will | null;
  username: string | null;
  password: Uint8Array | null;
  properties: ConnectProperties;
}

const PROTOCOL_NAME = "MQTT";

/** Decodes the variable header and payload of a CONNECT. */
export function decodeConnect(r: Reader): ConnectPacket {
  const name = r.utf8("the protocol name");
  if (name !== PROTOCOL_NAME) {
    throw new MqttError(ReasonCode.UnsupportedProtocolVersion, `unsupported protocol name '${name}'`); // [MQTT-3.1.2-1]
  }
  const level = r.u8("the protocol level");
  if (level !== 4 && level !== 5) {
    throw new MqttError(ReasonCode.UnsupportedProtocolVersion, `unsupported protocol version ${level}`); // [MQTT-3.1.2-2]
  }
  const version = level as ProtocolVersion;
  const flags = r.u8("the connect flags");
  if (flags & ConnectFlag.RESERVED) malformed("CONNECT reserved flag bit 0 is set"); // [MQTT-3.1.2-3]
  const hasWill = (flags & ConnectFlag.WILL) !== 0;
  const willQos = (flags & ConnectFlag.WILL_QOS_MASK) >> ConnectFlag.WILL_QOS_SHIFT;
  const willRetain = (flags & ConnectFlag.WILL_RETAIN) !== 0;
  if (willQos === 3) malformed("CONNECT will QoS is 3"); // [MQTT-3.1.2-12]
  if (!hasWill && willQos !== 0) malformed("CONNECT will QoS is set without a will"); // [MQTT-3.1.2-11]
  if (!hasWill && willRetain) malformed("CONNECT will retain is set without a will"); // [MQTT-3.1.2-13]
  const hasUsername = (flags & ConnectFlag.USERNAME) !== 0;
  const hasPassword = (flags & ConnectFlag.PASSWORD) !== 0;
  if (version === 4 && hasPassword && !hasUsername) malformed("CONNECT password flag is set without the user name flag"); // 3.1.1 [MQTT-3.1.2-22]
  const keepAlive = r.u16("the keep alive");
  const properties = version === 5 ? r.properties(PacketType.CONNECT) : NO_PROPERTIES;
  if (properties.authenticationData !== undefined && properties.authenticationMethod === undefined) {
    protocolError("CONNECT has Authentication Data without an Authentication Method"); // section 3.1.2.11.10
  }
  const clientId = r.utf8("the client identifier"); // [MQTT-3.1.3-4]
  let will: Will | null = null;
  if (hasWill) {
    const willProperties = version === 5 ? r.properties(WILL_CONTEXT) : NO_PROPERTIES;
    const topic = r.topicName("the will topic"); // [MQTT-3.1.3-11]
    if (topic.length === 0) protocolError("the will topic is empty"); // [MQTT-4.7.3-1]
    const payload = r.binary("the will payload");
    will = { topic, payload, qos: willQos as QoS, retain: willRetain, properties: willProperties };
  }
  const username = hasUsername ? r.utf8("the user name") : null; // [MQTT-3.1.3-12]
  const password = hasPassword ? r.binary("the password") : null;
  if (r.remaining() !== 0) malformed(`CONNECT has ${r.remaining()} byte(s) after its payload`);
  return { type: PacketType.CONNECT, protocolVersion: version, cleanStart: (flags & ConnectFlag.CLEAN_START) !== 0, keepAlive, clientId, will, username, password, properties };
}

/** Remaining length of a CONNECT. */
export function sizeConnect(p: ConnectPacket): number {
  const v5 = p.protocolVersion === 5;
  let n = 6 + 1 + 1 + 2 + fieldSize(p.clientId);
  if (v5) {
    const ps = propertiesSize(p.properties);
    n += varintSize(ps) + ps;
  }
  if (p.will !== null) {
    if (v5) {
      const ws = propertiesSize(p.will.properties);
      n += varintSize(ws) + ws;
    }
    n += fieldSize(p.will.topic) + fieldSize(p.will.payload);
  }
  if (p.username !== null) n += fieldSize(p.username);
  if (p.password !== null) n += fieldSize(p.password);
  return n;
}

/** Writes the variable header and payload of a CONNECT. */
export function encodeConnect(w: Writer, p: ConnectPacket): void {
  const v5 = p.protocolVersion === 5;
  w.field(PROTOCOL_NAME);
  w.u8(p.protocolVersion);
  let flags = p.cleanStart ? ConnectFlag.CLEAN_START : 0;
  if (p.will !== null) {
    flags |= ConnectFlag.WILL | (p.will.qos << ConnectFlag.WILL_QOS_SHIFT);
    if (p.will.retain) flags |= ConnectFlag.WILL_RETAIN;
  }
  if (p.username !== null) flags |= ConnectFlag.USERNAME;
  if (p.password !== null) flags |= ConnectFlag.PASSWORD;
  w.u8(flags);
  w.u16(p.keepAlive);
  if (v5) w.properties(p.properties, propertiesSize(p.properties));
  w.field(p.clientId);
  if (p.will !== null) {
    if (v5) w.properties(p.will.properties, propertiesSize(p.will.properties));
    w.field(p.will.topic);
    w.field(p.will.payload);
  }
  if (p.username !== null) w.field(p.username);
  if (p.password !== null) w.field(p.password);
}
