/**
 * The property table of MQTT 5.0 section 2.2.2.2: for each identifier its name, its wire type and
 * the packets it may appear in. Reader and writer walk this one table; nothing else lists properties.
 */
import { PacketType } from "./constants";

/** Where a property block sits: a packet type, or the will properties of a CONNECT. */
export const WILL_CONTEXT = 16;

/** Property wire types (section 1.5). */
export const PropertyType = {
  Byte: 1,
  TwoByteInteger: 2,
  FourByteInteger: 3,
  VariableByteInteger: 4,
  Utf8String: 5,
  BinaryData: 6,
  Utf8StringPair: 7,
} as const;

/** Property identifiers (section 2.2.2.2). */
export const PropertyId = {
  PayloadFormatIndicator: 0x01,
  MessageExpiryInterval: 0x02,
  ContentType: 0x03,
  ResponseTopic: 0x08,
  CorrelationData: 0x09,
  SubscriptionIdentifier: 0x0b,
  SessionExpiryInterval: 0x11,
  AssignedClientIdentifier: 0x12,
  ServerKeepAlive: 0x13,
  AuthenticationMethod: 0x15,
  AuthenticationData: 0x16,
  RequestProblemInformation: 0x17,
  WillDelayInterval: 0x18,
  RequestResponseInformation: 0x19,
  ResponseInformation: 0x1a,
  ServerReference: 0x1c,
  ReasonString: 0x1f,
  ReceiveMaximum: 0x21,
  TopicAliasMaximum: 0x22,
  TopicAlias: 0x23,
  MaximumQoS: 0x24,
  RetainAvailable: 0x25,
  UserProperty: 0x26,
  MaximumPacketSize: 0x27,
  WildcardSubscriptionAvailable: 0x28,
  SubscriptionIdentifierAvailable: 0x29,
  SharedSubscriptionAvailable: 0x2a,
} as const;

/** Every MQTT 5.0 property; each packet type allows the subset its `...Properties` type names. */
export interface Properties {
  payloadFormatIndicator?: number;
  messageExpiryInterval?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Uint8Array;
  /** Several in a PUBLISH sent to a client; exactly one in a SUBSCRIBE. */
  subscriptionIdentifiers?: number[];
  sessionExpiryInterval?: number;
  assignedClientIdentifier?: string;
  serverKeepAlive?: number;
  authenticationMethod?: string;
  authenticationData?: Uint8Array;
  requestProblemInformation?: number;
  willDelayInterval?: number;
  requestResponseInformation?: number;
  responseInformation?: string;
  serverReference?: string;
  reasonString?: string;
  receiveMaximum?: number;
  topicAliasMaximum?: number;
  topicAlias?: number;
  maximumQoS?: number;
  retainAvailable?: number;
  /** In wire order; a name may repeat [MQTT-3.1.2-??]. */
  userProperties?: [string, string][];
  maximumPacketSize?: number;
  wildcardSubscriptionAvailable?: number;
  subscriptionIdentifierAvailable?: number;
  sharedSubscriptionAvailable?: number;
}

/** One row of the table. */
export interface PropertySpec {
  id: number;
  key: keyof Properties;
  name: string;
  type: number;
  /** Bit (1 << packet type) set for each packet it may appear in; bit 16 for will properties. */
  contexts: number;
  /** Inclusive value range for integer properties; values outside it are a Protocol Error. */
  min?: number;
  max?: number;
}

const { CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH } = PacketType;
const bit = (...types: number[]): number => types.reduce((m, t) => m | (1 << t), 0);
const T = PropertyType;
const ACKS = bit(PUBACK, PUBREC, PUBREL, PUBCOMP);

/** The table, in identifier order. Encoders write a packet's properties in the key order of its object (decoders give wire order). */
export const PROPERTY_TABLE: readonly PropertySpec[] = [
  { id: 0x01, key: "payloadFormatIndicator", name: "Payload Format Indicator", type: T.Byte, contexts: bit(PUBLISH, WILL_CONTEXT), min: 0, max: 1 },
  { id: 0x02, key: "messageExpiryInterval", name: "Message Expiry Interval", type: T.FourByteInteger, contexts: bit(PUBLISH, WILL_CONTEXT) },
  { id: 0x03, key: "contentType", name: "Content Type", type: T.Utf8String, contexts: bit(PUBLISH, WILL_CONTEXT) },
  { id: 0x08, key: "responseTopic", name: "Response Topic", type: T.Utf8String, contexts: bit(PUBLISH, WILL_CONTEXT) },
  { id: 0x09, key: "correlationData", name: "Correlation Data", type: T.BinaryData, contexts: bit(PUBLISH, WILL_CONTEXT) },
  { id: 0x0b, key: "subscriptionIdentifiers", name: "Subscription Identifier", type: T.VariableByteInteger, contexts: bit(PUBLISH, SUBSCRIBE), min: 1 },
  { id: 0x11, key: "sessionExpiryInterval", name: "Session Expiry Interval", type: T.FourByteInteger, contexts: bit(CONNECT, CONNACK, DISCONNECT) },
  { id: 0x12, key: "assignedClientIdentifier", name: "Assigned Client Identifier", type: T.Utf8String, contexts: bit(CONNACK) },
  { id: 0x13, key: "serverKeepAlive", name: "Server Keep Alive", type: T.TwoByteInteger, contexts: bit(CONNACK) },
  { id: 0x15, key: "authenticationMethod", name: "Authentication Method", type: T.Utf8String, contexts: bit(CONNECT, CONNACK, AUTH) },
  { id: 0x16, key: "authenticationData", name: "Authentication Data", type: T.BinaryData, contexts: bit(CONNECT, CONNACK, AUTH) },
  { id: 0x17, key: "requestProblemInformation", name: "Request Problem Information", type: T.Byte, contexts: bit(CONNECT), min: 0, max: 1 },
  { id: 0x18, key: "willDelayInterval", name: "Will Delay Interval", type: T.FourByteInteger, contexts: bit(WILL_CONTEXT) },
  { id: 0x19, key: "requestResponseInformation", name: "Request Response Information", type: T.Byte, contexts: bit(CONNECT), min: 0, max: 1 },
  { id: 0x1a, key: "responseInformation", name: "Response Information", type: T.Utf8String, contexts: bit(CONNACK) },
  { id: 0x1c, key: "serverReference", name: "Server Reference", type: T.Utf8String, contexts: bit(CONNACK, DISCONNECT) },
  { id: 0x1f, key: "reasonString", name: "Reason String", type: T.Utf8String, contexts: bit(CONNACK, SUBACK, UNSUBACK, DISCONNECT, AUTH) | ACKS },
  { id: 0x21, key: "receiveMaximum", name: "Receive Maximum", type: T.TwoByteInteger, contexts: bit(CONNECT, CONNACK), min: 1 },
  { id: 0x22, key: "topicAliasMaximum", name: "Topic Alias Maximum", type: T.TwoByteInteger, contexts: bit(CONNECT, CONNACK) },
  { id: 0x23, key: "topicAlias", name: "Topic Alias", type: T.TwoByteInteger, contexts: bit(PUBLISH), min: 1 },
  { id: 0x24, key: "maximumQoS", name: "Maximum QoS", type: T.Byte, contexts: bit(CONNACK), min: 0, max: 1 },
  { id: 0x25, key: "retainAvailable", name: "Retain Available", type: T.Byte, contexts: bit(CONNACK), min: 0, max: 1 },
  { id: 0x26, key: "userProperties", name: "User Property", type: T.Utf8StringPair, contexts: bit(CONNECT, CONNACK, PUBLISH, WILL_CONTEXT, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH) | ACKS },
  { id: 0x27, key: "maximumPacketSize", name: "Maximum Packet Size", type: T.FourByteInteger, contexts: bit(CONNECT, CONNACK), min: 1 },
  { id: 0x28, key: "wildcardSubscriptionAvailable", name: "Wildcard Subscription Available", type: T.Byte, contexts: bit(CONNACK), min: 0, max: 1 },
  { id: 0x29, key: "subscriptionIdentifierAvailable", name: "Subscription Identifier Available", type: T.Byte, contexts: bit(CONNACK), min: 0, max: 1 },
  { id: 0x2a, key: "sharedSubscriptionAvailable", name: "Shared Subscription Available", type: T.Byte, contexts: bit(CONNACK), min: 0, max: 1 },
];

/** Table rows by identifier (index = id). */
export const PROPERTY_BY_ID: readonly (PropertySpec | undefined)[] = (() => {
  const byId: (PropertySpec | undefined)[] = new Array(0x2b).fill(undefined);
  for (const spec of PROPERTY_TABLE) byId[spec.id] = spec;
  return byId;
})();

/** The shared empty property set: decoders return it when a packet has no properties. */
export const NO_PROPERTIES: Properties = Object.freeze({}) as Properties;

type Pick5<K extends keyof Properties> = Pick<Properties, K | "userProperties">;
/** Properties of each packet, named as in the spec. */
export type ConnectProperties = Pick5<"sessionExpiryInterval" | "receiveMaximum" | "maximumPacketSize" | "topicAliasMaximum" | "requestResponseInformation" | "requestProblemInformation" | "authenticationMethod" | "authenticationData">;
export type WillProperties = Pick5<"willDelayInterval" | "payloadFormatIndicator" | "messageExpiryInterval" | "contentType" | "responseTopic" | "correlationData">;
export type ConnackProperties = Pick5<"sessionExpiryInterval" | "receiveMaximum" | "maximumQoS" | "retainAvailable" | "maximumPacketSize" | "assignedClientIdentifier" | "topicAliasMaximum" | "reasonString" | "wildcardSubscriptionAvailable" | "subscriptionIdentifierAvailable" | "sharedSubscriptionAvailable" | "serverKeepAlive" | "responseInformation" | "serverReference" | "authenticationMethod" | "authenticationData">;
export type PublishProperties = Pick5<"payloadFormatIndicator" | "messageExpiryInterval" | "topicAlias" | "responseTopic" | "correlationData" | "subscriptionIdentifiers" | "contentType">;
export type AckProperties = Pick5<"reasonString">;
export type SubscribeProperties = Pick5<"subscriptionIdentifiers">;
export type UnsubscribeProperties = Pick5<never>;
export type DisconnectProperties = Pick5<"sessionExpiryInterval" | "reasonString" | "serverReference">;
export type AuthProperties = Pick5<"authenticationMethod" | "authenticationData" | "reasonString">;
