/** The wire format of MQTT 5.0 and 3.1.1: every export of lib/codec. */
export * from "./constants";
export * from "./reason-codes";
export * from "./properties";
export { Reader, decodeUtf8, validateTopicName } from "./reader";
export { Writer, utf8Length, varintSize, fieldSize, propertiesSize, propertyBlockSize } from "./writer";
export { Framer } from "./framer";
export * from "./packet";
export type { ConnectPacket, Will } from "./packets/connect";
export type { ConnackPacket } from "./packets/connack";
export type { PublishPacket } from "./packets/publish";
export type { PubackPacket, PubrecPacket, PubrelPacket, PubcompPacket, PubAckPacket } from "./packets/pub-acks";
export type { SubscribePacket, Subscription } from "./packets/subscribe";
export type { SubackPacket } from "./packets/suback";
export type { UnsubscribePacket } from "./packets/unsubscribe";
export type { UnsubackPacket } from "./packets/unsuback";
export type { PingreqPacket, PingrespPacket } from "./packets/ping";
export type { DisconnectPacket } from "./packets/disconnect";
export type { AuthPacket } from "./packets/auth";
