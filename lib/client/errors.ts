/** The client's errors: each carries the MQTT reason code (where there is one) and its spec name. */
import { reasonName } from "../codec/reason-codes";

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

/** The broker refused CONNECT (CONNACK with a failure code). */
export class ConnectError extends ClientError {
  override name = "ConnectError";
  constructor(reasonCode: number, reasonString?: string) {
    super(`Connect refused: ${reasonName(reasonCode)} (0x${reasonCode.toString(16).padStart(2, "0")})${reasonString ? `: ${reasonString}` : ""}`, reasonCode);
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
