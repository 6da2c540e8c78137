/**
 * The packet union and the three entry points every caller uses: decodePacket (one whole frame ->
 * packet), packetSize (exact bytes) and encodePacket / encodePacketInto (size first, one buffer).
 */
import { PACKET_NAMES, PacketType, REQUIRED_FLAGS, type ProtocolVersion } from "./constants";
import { malformed } from "./reason-codes";
import { Reader, type TopicCache } from "./reader";
import { varintSize, Writer } from "./writer";
import { decodeConnect, encodeConnect, sizeConnect, type ConnectPacket } from "./packets/connect";
import { decodeConnack, encodeConnack, sizeConnack, type ConnackPacket } from "./packets/connack";
import { decodePublish, encodePublish, publishFlags, sizePublish, type PublishPacket } from "./packets/publish";
import { decodePubAck, encodePubAck, sizePubAck, type PubAckPacket } from "./packets/pub-acks";
import { decodeSubscribe, encodeSubscribe, sizeSubscribe, type SubscribePacket } from "./packets/subscribe";
import { decodeSuback, encodeSuback, sizeSuback, type SubackPacket } from "./packets/suback";
import { decodeUnsubscribe, encodeUnsubscribe, sizeUnsubscribe, type UnsubscribePacket } from "./packets/unsubscribe";
import { decodeUnsuback, encodeUnsuback, sizeUnsuback, type UnsubackPacket } from "./packets/unsuback";
import type { PingreqPacket, PingrespPacket } from "./packets/ping";
import { decodeDisconnect, encodeDisconnect, sizeDisconnect, type DisconnectPacket } from "./packets/disconnect";
import { decodeAuth, encodeAuth, sizeAuth, type AuthPacket } from "./packets/auth";

/** Any MQTT control packet. */
export type Packet =
  | ConnectPacket | ConnackPacket | PublishPacket | PubAckPacket | SubscribePacket | SubackPacket
  | UnsubscribePacket | UnsubackPacket | PingreqPacket | PingrespPacket | DisconnectPacket | AuthPacket;

// One reader serves every decode: decoding is synchronous and never re-entered.
const reader = new Reader(new Uint8Array(0), 0, 0, "");

/**
 * Decodes exactly one frame (as the Framer returns it) of a connection at `version`; a CONNECT
 * carries its own version. Topic names, payloads and binary properties are views of `frame`.
 * Throws MqttError with the spec's reason code on any malformed input.
 */
export function decodePacket(frame: Uint8Array, version: ProtocolVersion): Packet {
  return decodePacketAt(frame, 0, frame.length, version);
}

/** decodePacket over the frame `buf[start, end)`, without making a view of it first; `topicCache` see TopicCache. */
export function decodePacketAt(buf: Uint8Array, start: number, end: number, version: ProtocolVersion, topicCache: TopicCache | null = null): Packet {
  const length = end - start;
  if (length < 2) malformed(`a frame of ${length} byte(s) is shorter than a fixed header`);
  const b0 = buf[start]!;
  const type = b0 >> 4;
  const flags = b0 & 0x0f;
  if (type === 0) malformed("packet type 0 is reserved"); // section 2.1.2
  if (type === PacketType.AUTH && version !== 5) malformed("packet type 15 (AUTH) is reserved in MQTT 3.1.1"); // 3.1.1 section 2.2.1
  const name = PACKET_NAMES[type]!;
  if (type !== PacketType.PUBLISH && flags !== REQUIRED_FLAGS[type]) {
    malformed(`${name} reserved fixed-header flag bits are 0x${flags.toString(16)}, must be 0x${REQUIRED_FLAGS[type]!.toString(16)}`); // [MQTT-2.1.3-1]
  }
  let rl = 0;
  let mul = 1;
  let pos = start + 1;
  for (;;) {
    if (pos >= end) malformed(`${name} frame ends inside its remaining length`);
    if (pos === start + 5) malformed("invalid variable byte integer in the remaining length: more than four bytes"); // section 1.5.5
    const b = buf[pos++]!;
    rl += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) {
      if (pos > start + 2 && b === 0) malformed("invalid variable byte integer in the remaining length: not in its shortest form"); // [MQTT-1.5.5-1]
      break;
    }
    mul *= 128;
  }
  if (pos + rl !== end) malformed(`${name} remaining length is ${rl} but the frame holds ${end - pos} byte(s)`);
  const r = reader;
  r.buf = buf;
  r.pos = pos;
  r.end = end;
  r.packet = name;
  switch (type) {
    case PacketType.CONNECT: return decodeConnect(r);
    case PacketType.CONNACK: return decodeConnack(r, version);
    case PacketType.PUBLISH: return decodePublish(r, flags, version, topicCache);
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP: return decodePubAck(r, type, version);
    case PacketType.SUBSCRIBE: return decodeSubscribe(r, version);
    case PacketType.SUBACK: return decodeSuback(r, version);
    case PacketType.UNSUBSCRIBE: return decodeUnsubscribe(r, version);
    case PacketType.UNSUBACK: return decodeUnsuback(r, version);
    case PacketType.PINGREQ:
    case PacketType.PINGRESP:
      if (rl !== 0) malformed(`${name} has a remaining length of ${rl}, must be 0`); // sections 3.12, 3.13
      return { type };
    case PacketType.DISCONNECT: return decodeDisconnect(r, version);
    default: return decodeAuth(r);
  }
}

// One writer serves every encode, as the reader does.
const writer = new Writer(new Uint8Array(0));
/** Bun.allocUnsafe (no zero fill) under Bun; a plain Uint8Array elsewhere (a browser). */
const allocUnsafe: (size: number) => Uint8Array = typeof Bun !== "undefined" ? Bun.allocUnsafe : (size) => new Uint8Array(size);

/** Bytes the fixed header (type byte and remaining length) of the well-formed frame at `frame[start]` takes. */
export function fixedHeaderLength(frame: Uint8Array, start = 0): number {
  let i = start + 1;
  while ((frame[i]! & 0x80) !== 0) i++;
  return i + 1 - start;
}

/** Remaining length of a packet (the bytes after its fixed header). */
export function remainingLength(p: Packet, version: ProtocolVersion): number {
  switch (p.type) {
    case PacketType.CONNECT: return sizeConnect(p);
    case PacketType.CONNACK: return sizeConnack(p, version);
    case PacketType.PUBLISH: return sizePublish(p, version);
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP: return sizePubAck(p, version);
    case PacketType.SUBSCRIBE: return sizeSubscribe(p, version);
    case PacketType.SUBACK: return sizeSuback(p, version);
    case PacketType.UNSUBSCRIBE: return sizeUnsubscribe(p, version);
    case PacketType.UNSUBACK: return sizeUnsuback(p, version);
    case PacketType.PINGREQ:
    case PacketType.PINGRESP: return 0;
    case PacketType.DISCONNECT: return sizeDisconnect(p, version);
    case PacketType.AUTH: return sizeAuth(p);
  }
}

/** Exact encoded size of a packet, fixed header included. */
export function packetSize(p: Packet, version: ProtocolVersion): number {
  const rl = remainingLength(p, version);
  return 1 + varintSize(rl) + rl;
}

/**
 * Writes a packet into `buf` at `offset` (the caller made room: see packetSize) and returns the
 * offset after it. `rl` may be passed when the caller already computed remainingLength.
 */
export function encodePacketInto(p: Packet, version: ProtocolVersion, buf: Uint8Array, offset: number, rl = remainingLength(p, version)): number {
  const w = writer;
  w.buf = buf;
  w.pos = offset;
  const type = p.type;
  w.u8((type << 4) | (type === PacketType.PUBLISH ? publishFlags(p) : REQUIRED_FLAGS[type]!));
  w.varint(rl);
  switch (p.type) {
    case PacketType.CONNECT: encodeConnect(w, p); break;
    case PacketType.CONNACK: encodeConnack(w, p, version); break;
    case PacketType.PUBLISH: encodePublish(w, p, version); break;
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP: encodePubAck(w, p, version); break;
    case PacketType.SUBSCRIBE: encodeSubscribe(w, p, version); break;
    case PacketType.SUBACK: encodeSuback(w, p, version); break;
    case PacketType.UNSUBSCRIBE: encodeUnsubscribe(w, p, version); break;
    case PacketType.UNSUBACK: encodeUnsuback(w, p, version); break;
    case PacketType.DISCONNECT: encodeDisconnect(w, p, version); break;
    case PacketType.AUTH: encodeAuth(w, p); break;
  }
  return w.pos;
}

/** Encodes a packet into a new buffer of exactly its size. */
export function encodePacket(p: Packet, version: ProtocolVersion): Uint8Array {
  const rl = remainingLength(p, version);
  // uninitialized memory, without the zero fill: the encoder writes every byte (a standing test
  // encodes every fixture into a buffer of garbage)
  const buf = allocUnsafe(1 + varintSize(rl) + rl);
  encodePacketInto(p, version, buf, 0, rl);
  return buf;
}
