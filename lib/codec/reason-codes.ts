/** Reason codes of MQTT 5.0 (section 2.4), the 3.1.1 CONNACK return codes, and MqttError. */

/** Every MQTT 5.0 reason code by its spec name. */
export const ReasonCode = {
  Success: 0x00,
  NormalDisconnection: 0x00,
  GrantedQoS0: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWillMessage: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  ContinueAuthentication: 0x18,
  ReAuthenticate: 0x19,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  Banned: 0x8a,
  ServerShuttingDown: 0x8b,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  MessageRateTooHigh: 0x96,
  QuotaExceeded: 0x97,
  AdministrativeAction: 0x98,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  UseAnotherServer: 0x9c,
  ServerMoved: 0x9d,
  SharedSubscriptionsNotSupported: 0x9e,
  ConnectionRateExceeded: 0x9f,
  MaximumConnectTime: 0xa0,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2,
} as const;
export type ReasonCodeValue = number;

/** MQTT 3.1.1 CONNACK return codes (section 3.2.2.3 of the 3.1.1 spec). */
export const ConnackReturnCode = {
  Accepted: 0x00,
  UnacceptableProtocolVersion: 0x01,
  IdentifierRejected: 0x02,
  ServerUnavailable: 0x03,
  BadUserNameOrPassword: 0x04,
  NotAuthorized: 0x05,
} as const;

const NAMES = new Map<number, string>();
for (const [name, code] of Object.entries(ReasonCode)) {
  if (!NAMES.has(code)) NAMES.set(code, name.replace(/([a-z0-9])([A-Z])/g, "$1 $2"));
}
NAMES.set(0x00, "Success");

/** The spec's name of a reason code, e.g. 0x81 -> "Malformed Packet". */
export function reasonName(code: number): string {
  return NAMES.get(code) ?? `Unknown reason 0x${code.toString(16).padStart(2, "0")}`;
}

/** Reason codes each packet type may carry (MQTT 5.0 sections 3.2.2.2 .. 3.15.2.1), by packet type. */
export const ALLOWED_REASON_CODES: ReadonlyMap<number, ReadonlySet<number>> = new Map([
  [2, new Set([0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f])],
  [4, new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99])],
  [5, new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99])],
  [6, new Set([0x00, 0x92])],
  [7, new Set([0x00, 0x92])],
  [9, new Set([0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2])],
  [11, new Set([0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91])],
  [14, new Set([0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2])],
  [15, new Set([0x00, 0x18, 0x19])],
]);

/** Return codes a 3.1.1 CONNACK and SUBACK may carry. */
export const ALLOWED_V4_CONNACK = new Set([0, 1, 2, 3, 4, 5]);
export const ALLOWED_V4_SUBACK = new Set([0, 1, 2, 0x80]);

/**
 * The one error type of the protocol layer: a reason code the spec names for the fault and a
 * message that says exactly what was wrong. The connection layer turns it into CONNACK or DISCONNECT.
 */
export class MqttError extends Error {
  override name = "MqttError";
  constructor(
    readonly reasonCode: number,
    message: string,
  ) {
    super(message);
  }
  /** The spec's name of this error's reason code. */
  get reasonName(): string {
    return reasonName(this.reasonCode);
  }
}

/** Throws a Malformed Packet (0x81) error. */
export function malformed(message: string): never {
  throw new MqttError(ReasonCode.MalformedPacket, `malformed packet: ${message}`);
}

/** Throws a Protocol Error (0x82) error. */
export function protocolError(message: string): never {
  throw new MqttError(ReasonCode.ProtocolError, `protocol error: ${message}`);
}
