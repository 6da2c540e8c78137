/** The client's errors: each carries the MQTT reason code (where there is one) and its spec name. */
import { ConnackReturnCode, reasonName } from "../codec/reason-codes";

/** Base class of the client's errors. */
export class ClientError extends Error {
  override name = "ClientError";
  /** The MQTT reason code behind the error, or null. */
  readonly reasonCode: number | null;
  constructor(message: string, reasonCode: number | null = null) {
    super(message);
    this.reasonCode = reasonCode;
  }
  /** The spec's name of the reason code, or "". */
  get reasonName(): string {
    return this.reasonCode === null ? "" : reasonName(this.reasonCode);
  }
}

/** Names of the MQTT 3.1.1 CONNACK return codes, which differ from the 5.0 reason codes of the same value. */
const V4_CONNACK_NAMES = new Map<number, string>(Object.entries(ConnackReturnCode).map(([name, code]) => [code, name.replace(/([a-z0-9])([A-Z])/g, "$1 $2")]));

/** The spec's name of a CONNACK code of the given protocol version. */
function connackName(code: number, protocolVersion: 5 | 4): string {
  return protocolVersion === 4 ? (V4_CONNACK_NAMES.get(code) ?? `Unknown return code 0x${code.toString(16).padStart(2, "0")}`) : reasonName(code);
}

/** The broker refused CONNECT (CONNACK with a failure code; a 3.1.1 return code when protocolVersion is 4). */
export class ConnectError extends ClientError {
  override name = "ConnectError";
  private readonly protocolVersion: 5 | 4;
  constructor(reasonCode: number, reasonString?: string, protocolVersion: 5 | 4 = 5) {
    super(`Connect refused: ${connackName(reasonCode, protocolVersion)} (0x${reasonCode.toString(16).padStart(2, "0")})${reasonString ? `: ${reasonString}` : ""}`, reasonCode);
    this.protocolVersion = protocolVersion;
  }
  override get reasonName(): string {
    return connackName(this.reasonCode!, this.protocolVersion);
  }
}

/** start({ resumeSession: true }) found no session on the broker; a new one was created. */
export class SessionResumeError extends ClientError {
  override name = "SessionResumeError";
  constructor() {
    super("Session resume failed: the broker had no session for this client; a new one was created");
  }
}

/** The broker refused a subscription (SUBACK failure code). */
export class SubscribeError extends ClientError {
  override name = "SubscribeError";
  constructor(reasonCode: number, topic: string) {
    super(`Subscribe to '${topic}' refused: ${reasonName(reasonCode)} (0x${reasonCode.toString(16).padStart(2, "0")})`, reasonCode);
  }
}

/** The broker refused a QoS 1/2 message (v5 PUBACK, PUBREC or PUBCOMP failure code): it was not delivered. */
export class PublishError extends ClientError {
  override name = "PublishError";
  constructor(reasonCode: number, topic: string) {
    super(`Publish to '${topic}' refused: ${reasonName(reasonCode)} (0x${reasonCode.toString(16).padStart(2, "0")})`, reasonCode);
  }
}

/** The broker refused an unsubscription (UNSUBACK failure code). */
export class UnsubscribeError extends ClientError {
  override name = "UnsubscribeError";
  constructor(reasonCode: number, topic: string) {
    super(`Unsubscribe from '${topic}' refused: ${reasonName(reasonCode)} (0x${reasonCode.toString(16).padStart(2, "0")})`, reasonCode);
  }
}

/** The broker did not answer within the response timeout. */
export class TimeoutError extends ClientError {
  override name = "TimeoutError";
}

/** Nothing listens at the address, or the TCP connection failed. */
export class ConnectionRefusedError extends ClientError {
  override name = "ConnectionRefusedError";
  constructor(host: string, port: number, cause?: string) {
    super(`Connection refused: ${host}:${port}${cause ? ` (${cause})` : ""}`);
  }
}

/** The connection was lost, or the client was stopped, before the operation completed. */
export class ConnectionLostError extends ClientError {
  override name = "ConnectionLostError";
}

/** The broker sent something malformed or against the protocol; the connection was ended. */
export class ProtocolError extends ClientError {
  override name = "ProtocolError";
}
