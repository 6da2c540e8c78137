/**
 * A connection the broker accepted only to refuse it (over the descriptor bound, or short of
 * memory). If its CONNECT arrives within a short grace it is answered with CONNACK 0x97 Quota
 * Exceeded (3.1.1: 0x03 Server Unavailable) [MQTT-3.2.2-7]; either way the socket is then ended.
 * No Connection or Session is made for it.
 */
import { PacketType } from "../../codec/constants";
import { ConnackReturnCode, ReasonCode } from "../../codec/reason-codes";
import { encodePacket } from "../../codec/packet";
import type { Transport } from "../transport/transport";
import { copyBytes } from "../../codec/bytes";

/** Milliseconds a refused connection has to send CONNECT before it is closed without an answer. */
export const REFUSAL_GRACE_MS = 50;

/** The refusal of one socket: waits for its CONNECT, answers, ends it. */
export class Refusal {
  private timer: Timer | null = null;
  private done = false;
  /** What arrived so far, while it is too short to hold the protocol level. */
  private head: Uint8Array = new Uint8Array(0);

  /**
   * `reason` goes into the v5 CONNACK's Reason String; `onDone` runs once when the refusal is over
   * (answered, timed out or closed by the peer).
   */
  constructor(
    private readonly socket: Transport,
    readonly reason: string,
    private readonly onDone: () => void,
  ) {
    this.timer = setTimeout(() => this.finish(), REFUSAL_GRACE_MS);
  }

  /** Bytes from the socket: a CONNECT's protocol level decides the form of the CONNACK. */
  receive(data: Uint8Array): void {
    if (this.done) return;
    if (this.head.length > 0) {
      const joined = new Uint8Array(this.head.length + data.length);
      joined.set(this.head);
      joined.set(data, this.head.length);
      data = joined;
    }
    const level = connectLevel(data);
    if (level === null) return this.finish(); // not (the start of) a CONNECT: just close
    if (level === undefined) {
      if (data.length > 300) return this.finish(); // a protocol name that long is no MQTT
      this.head = copyBytes(data);
      return;
    }
    const v5 = level === 5;
    const connack = encodePacket(
      { type: PacketType.CONNACK, sessionPresent: false, reasonCode: v5 ? ReasonCode.QuotaExceeded : ConnackReturnCode.ServerUnavailable, properties: v5 ? { reasonString: this.reason } : {} },
      v5 ? 5 : 4,
    );
    this.socket.write(connack);
    this.finish();
  }

  /** The peer closed first. */
  closed(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (!this.done) {
      this.done = true;
      this.onDone();
    }
  }

  private finish(): void {
    if (this.done) return;
    this.socket.end();
    this.closed();
  }
}

/**
 * The protocol level of a CONNECT at the start of `b`: undefined while more bytes are needed,
 * null when `b` does not start a CONNECT.
 */
function connectLevel(b: Uint8Array): number | null | undefined {
  if (b.length === 0) return undefined;
  if (b[0] !== 0x10) return null;
  let i = 1;
  while (i < b.length && i < 5 && b[i]! & 0x80) i++;
  i++; // past the remaining length
  if (b.length < i + 2) return undefined;
  const nameLen = (b[i]! << 8) | b[i + 1]!;
  const at = i + 2 + nameLen;
  return at < b.length ? b[at]! : undefined;
}
