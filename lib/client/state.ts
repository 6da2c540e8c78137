/**
 * The client's protocol state, apart from any socket: packet identifiers, outgoing QoS 1/2
 * messages until their acknowledgement, incoming QoS 2 identifiers until PUBREL, and topic
 * aliases in both directions. It takes packets in and gives packets out; client.ts moves them.
 *
 * Outgoing QoS 1/2 messages stay here across reconnects: with a resumed session they are re-sent
 * with DUP [MQTT-4.4.0-1]; without one they are published again as new messages, so a publish()
 * promise always ends in an acknowledgement (or in stop()).
 */
import { PacketType, type ProtocolVersion } from "../codec/constants";
import type { Packet } from "../codec/packet";
import type { PublishPacket } from "../codec/packets/publish";
import { NO_PROPERTIES, type PublishProperties } from "../codec/properties";
import { MqttError, ReasonCode, protocolError } from "../codec/reason-codes";
import { decodeUtf8 } from "../codec/reader";
import { PublishError } from "./errors";
import { Message } from "./message";
import { copyBytes } from "../codec/bytes";

/** An outgoing QoS 1/2 message waiting for its acknowledgement. */
interface Outgoing {
  packet: PublishPacket;
  /** Sent on the current connection (else it waits for room in the broker's Receive Maximum). */
  sent: boolean;
  /** QoS 2: PUBREC received, PUBREL sent; waiting for PUBCOMP. */
  released: boolean;
  /** Sent on some connection before: a re-send carries DUP [MQTT-3.3.1-1]. */
  transmitted: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

const noop = () => undefined;

/** Shared answers of receive() that carry nothing: callers only read them. */
const NO_PACKETS: Packet[] = [];
const NO_REPLY = { reply: NO_PACKETS, message: null };

/** A SUBSCRIBE or UNSUBSCRIBE waiting for its acknowledgement. */
export interface PendingAck {
  resolve: (codes: number[]) => void;
  reject: (e: Error) => void;
}

/** Protocol state of one client, kept across connections. */
export class ClientState {
  private readonly outgoing = new Map<number, Outgoing>();
  /** Outgoing messages not yet sent on this connection, oldest first, from unsentHead on. */
  private unsent: Outgoing[] = [];
  private unsentHead = 0;
  /** Outgoing messages sent on this connection and not yet acknowledged: the broker's window in use. */
  private outstanding = 0;
  private readonly incomingQos2 = new Set<number>();
  private readonly acks = new Map<number, PendingAck>();
  private nextId = 1;
  /** Receive Maximum of the broker (CONNACK), bounding our unacknowledged sends [MQTT-3.3.4-7]. */
  brokerReceiveMaximum = 65535;
  /** Topic Alias Maximum of the broker (CONNACK): aliases we may use. */
  brokerTopicAliasMaximum = 0;
  /** Aliases we use for the topics the options name, by topic. */
  private readonly outAliases = new Map<string, number>();
  /** Aliases already sent with their topic on this connection. */
  private readonly outAliasesSent = new Set<number>();
  /** Aliases the broker set towards us on this connection [MQTT-3.3.2-7]. */
  private readonly inAliases = new Map<number, string>();

  constructor(
    readonly version: ProtocolVersion,
    aliasedTopics: string[],
    /** Aliases we accept from the broker (our CONNECT's Topic Alias Maximum). */
    readonly topicAliasMaximum: number,
  ) {
    aliasedTopics.forEach((t, i) => this.outAliases.set(t, i + 1));
  }

  /** Unacknowledged QoS 1/2 messages. */
  get inflight(): number {
    return this.outgoing.size;
  }

  private allocateId(): number {
    if (this.outgoing.size + this.acks.size >= 65535) throw new MqttError(ReasonCode.QuotaExceeded, "all 65535 packet identifiers are in use");
    let id = this.nextId;
    while (this.outgoing.has(id) || this.acks.has(id)) id = id === 65535 ? 1 : id + 1;
    this.nextId = id === 65535 ? 1 : id + 1;
    return id;
  }

  /** A new connection begins: aliases are per connection [MQTT-3.3.2-7]; nothing counts as sent. */
  connectionStarted(): void {
    this.outAliasesSent.clear();
    this.inAliases.clear();
    this.restartWindow();
  }

  /**
   * Recounts the broker's window for a new connection: released QoS 2 messages stay outstanding
   * (their PUBREL is re-sent), every other one waits to be sent, in order.
   */
  private restartWindow(): void {
    this.unsent = [];
    this.unsentHead = 0;
    this.outstanding = 0;
    for (const o of this.outgoing.values()) {
      o.sent = o.released;
      if (o.released) this.outstanding++;
      else this.unsent.push(o);
    }
  }

  /**
   * CONNACK arrived: the packets to send now. With a session present, unacknowledged messages
   * are re-sent with DUP and released QoS 2 ones as PUBREL [MQTT-4.4.0-1]; without one, the
   * broker forgot them, so they are published again as new messages (but a QoS 2 one already
   * released, which the broker had received, completes instead).
   */
  resume(sessionPresent: boolean): Packet[] {
    const out: Packet[] = [];
    if (!sessionPresent) {
      this.incomingQos2.clear();
      const again = [...this.outgoing.values()];
      this.outgoing.clear();
      for (const o of again) {
        if (o.released) {
          o.resolve(); // PUBREC came: the broker had it; publishing it again would deliver it twice
          continue;
        }
        const packetId = this.allocateId();
        o.packet = { ...o.packet, packetId, dup: false };
        o.released = false;
        o.transmitted = false;
        this.outgoing.set(packetId, o);
      }
      this.restartWindow();
    }
    for (const o of this.outgoing.values()) {
      if (o.released) out.push({ type: PacketType.PUBREL, packetId: o.packet.packetId, reasonCode: 0, properties: {} });
    }
    return out.concat(this.sendable());
  }

  /** Messages not yet sent on this connection that fit in the broker's window [MQTT-3.3.4-7]. */
  sendable(): Packet[] {
    if (this.unsentHead >= this.unsent.length || this.outstanding >= this.brokerReceiveMaximum) return NO_PACKETS;
    const out: Packet[] = [];
    const aliases = this.version === 5 && this.outAliases.size > 0;
    while (this.outstanding < this.brokerReceiveMaximum && this.unsentHead < this.unsent.length) {
      const o = this.unsent[this.unsentHead]!;
      this.unsent[this.unsentHead++] = undefined!;
      if (this.outgoing.get(o.packet.packetId) !== o) continue; // acknowledged or renumbered meanwhile
      o.sent = true;
      this.outstanding++;
      // DUP on a re-send [MQTT-3.3.1-1]; a first send without aliases goes out as it is
      out.push(!o.transmitted && !aliases ? o.packet : { ...o.packet, dup: o.transmitted, ...this.topicFor(o.packet) });
      o.transmitted = true;
    }
    if (this.unsentHead > 1024 && this.unsentHead * 2 > this.unsent.length) {
      this.unsent = this.unsent.slice(this.unsentHead);
      this.unsentHead = 0;
    }
    return out;
  }

  /** Ends an outgoing message's exchange (acknowledged, or refused by the broker). */
  private finish(o: Outgoing, reasonCode = 0): void {
    this.outgoing.delete(o.packet.packetId);
    if (o.sent) this.outstanding--;
    if (reasonCode < 0x80) o.resolve();
    else {
      const t = o.packet.topic;
      o.reject(new PublishError(reasonCode, typeof t === "string" ? t : decodeUtf8(t, 0, t.length, "topic")));
    }
  }

  /** Topic and alias fields for a PUBLISH on this connection. */
  private topicFor(p: PublishPacket): Pick<PublishPacket, "topic" | "properties"> {
    const topic = typeof p.topic === "string" ? p.topic : decodeUtf8(p.topic, 0, p.topic.length, "topic");
    const alias = this.version === 5 ? this.outAliases.get(topic) : undefined;
    if (alias === undefined || alias > this.brokerTopicAliasMaximum) return { topic: p.topic, properties: p.properties };
    const properties = { ...p.properties, topicAlias: alias };
    if (this.outAliasesSent.has(alias)) return { topic: "", properties };
    this.outAliasesSent.add(alias);
    return { topic: p.topic, properties };
  }

  /** The PUBLISH of a QoS 0 message, to send now; null while disconnected (it is dropped). */
  publishQos0(m: Message, connected: boolean): PublishPacket | null {
    if (!connected) return null;
    const packet: PublishPacket = { type: PacketType.PUBLISH, dup: false, qos: 0, retain: m.retain, topic: m.topic, packetId: 0, properties: this.propertiesOf(m), payload: m.payload };
    return this.outAliases.size === 0 ? packet : { ...packet, ...this.topicFor(packet) };
  }

  /** The PUBLISH properties of a message (none at 3.1.1). */
  private propertiesOf(m: Message): PublishProperties {
    let properties: PublishProperties = NO_PROPERTIES;
    if (this.version === 5 && m.hasProperties) {
      properties = {};
      if (m.payloadFormatIndicator !== undefined) properties.payloadFormatIndicator = m.payloadFormatIndicator;
      if (m.messageExpiryInterval !== undefined) properties.messageExpiryInterval = m.messageExpiryInterval;
      if (m.contentType !== undefined) properties.contentType = m.contentType;
      if (m.responseTopic !== undefined) properties.responseTopic = m.responseTopic;
      if (m.correlationData !== undefined) properties.correlationData = m.correlationData;
      if (m.userProperties.length > 0) properties.userProperties = m.userProperties;
    }
    return properties;
  }

  /**
   * Tracks a QoS 1/2 message until it is acknowledged; `done` settles then. `packet` is its
   * PUBLISH to send now, when the broker's window has room and nothing waits before it; otherwise
   * it waits its turn in sendable() (null then).
   */
  publishTracked(m: Message, connected: boolean): { packet: PublishPacket | null; done: Promise<void> } {
    const packet: PublishPacket = { type: PacketType.PUBLISH, dup: false, qos: m.qos, retain: m.retain, topic: m.topic, packetId: this.allocateId(), properties: this.propertiesOf(m), payload: m.payload };
    const o: Outgoing = { packet, sent: false, released: false, transmitted: false, resolve: noop, reject: noop };
    // a Promise with an executor costs less than Promise.withResolvers() here, per message
    const promise = new Promise<void>((resolve, reject) => {
      o.resolve = resolve;
      o.reject = reject;
    });
    this.outgoing.set(packet.packetId, o);
    if (connected && this.unsentHead >= this.unsent.length && this.outstanding < this.brokerReceiveMaximum && this.outAliases.size === 0) {
      o.sent = o.transmitted = true;
      this.outstanding++;
      return { packet, done: promise };
    }
    this.unsent.push(o);
    return { packet: null, done: promise };
  }

  /** A SUBSCRIBE or UNSUBSCRIBE: its packet identifier and a promise of its reason codes. */
  expectAck(): { packetId: number; done: Promise<number[]> } {
    const packetId = this.allocateId();
    const { promise, resolve, reject } = Promise.withResolvers<number[]>();
    this.acks.set(packetId, { resolve, reject });
    return { packetId, done: promise };
  }

  /** Forgets a SUBSCRIBE/UNSUBSCRIBE whose answer will not come (timeout, lost connection). */
  dropAck(packetId: number, error: Error): void {
    const a = this.acks.get(packetId);
    this.acks.delete(packetId);
    a?.reject(error);
  }

  /** Rejects every waiting SUBSCRIBE/UNSUBSCRIBE (the connection is gone). */
  failAcks(error: Error): void {
    for (const id of [...this.acks.keys()]) this.dropAck(id, error);
  }

  /** Rejects everything pending (the client stops). */
  failAll(error: Error): void {
    this.failAcks(error);
    for (const o of this.outgoing.values()) o.reject(error);
    this.outgoing.clear();
    this.restartWindow();
  }

  /**
   * Handles a packet from the broker after CONNACK: the packets to answer with and the message
   * to deliver, if any. Throws MqttError for protocol violations.
   */
  receive(p: Packet): { reply: Packet[]; message: Message | null } {
    switch (p.type) {
      case PacketType.PUBLISH: return this.receivePublish(p);
      case PacketType.PUBACK:
      case PacketType.PUBCOMP: {
        const o = this.outgoing.get(p.packetId);
        if (o === undefined || o.packet.qos !== (p.type === PacketType.PUBACK ? 1 : 2)) return NO_REPLY; // unknown: ignored
        // a PUBACK failure code (v5) ends the exchange with the message refused; a PUBCOMP one
        // (0x92) comes after the PUBREC accepted it
        this.finish(o, p.type === PacketType.PUBACK ? p.reasonCode : 0);
        const next = this.sendable();
        return next === NO_PACKETS ? NO_REPLY : { reply: next, message: null };
      }
      case PacketType.PUBREC: {
        const o = this.outgoing.get(p.packetId);
        if (o === undefined || o.packet.qos !== 2) {
          return { reply: [{ type: PacketType.PUBREL, packetId: p.packetId, reasonCode: ReasonCode.PacketIdentifierNotFound, properties: {} }], message: null };
        }
        if (p.reasonCode >= 0x80) { // the broker refused it: the exchange ends (section 4.3.3)
          this.finish(o, p.reasonCode);
          return { reply: this.sendable(), message: null };
        }
        o.released = true;
        return { reply: [{ type: PacketType.PUBREL, packetId: p.packetId, reasonCode: 0, properties: {} }], message: null };
      }
      case PacketType.PUBREL: {
        const known = this.incomingQos2.delete(p.packetId);
        return { reply: [{ type: PacketType.PUBCOMP, packetId: p.packetId, reasonCode: known ? 0 : ReasonCode.PacketIdentifierNotFound, properties: {} }], message: null };
      }
      case PacketType.SUBACK:
      case PacketType.UNSUBACK: {
        const a = this.acks.get(p.packetId);
        if (a !== undefined) {
          this.acks.delete(p.packetId);
          a.resolve(p.reasonCodes);
        }
        return { reply: [], message: null };
      }
      case PacketType.PINGRESP: return { reply: [], message: null };
      case PacketType.AUTH: protocolError("AUTH without an authentication method in CONNECT");
      case PacketType.CONNACK: protocolError("a second CONNACK on one connection");
      default: protocolError(`a broker must not send packet type ${p.type}`);
    }
  }

  private receivePublish(p: PublishPacket): { reply: Packet[]; message: Message | null } {
    const bytes = p.topic as Uint8Array;
    let topic: string;
    const alias = p.properties.topicAlias;
    if (alias !== undefined) {
      if (alias > this.topicAliasMaximum) throw new MqttError(ReasonCode.TopicAliasInvalid, `topic alias invalid: ${alias} exceeds our Topic Alias Maximum ${this.topicAliasMaximum}`); // [MQTT-3.3.2-10]
      if (bytes.length === 0) {
        const known = this.inAliases.get(alias);
        if (known === undefined) protocolError(`topic alias ${alias} was never set`); // section 3.3.2.3.4
        topic = known;
      } else {
        topic = decodeUtf8(bytes, 0, bytes.length, "the topic name");
        this.inAliases.set(alias, topic);
      }
    } else {
      topic = decodeUtf8(bytes, 0, bytes.length, "the topic name");
    }
    const reply: Packet[] = [];
    let deliver = true;
    if (p.qos === 1) reply.push({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
    else if (p.qos === 2) {
      deliver = !this.incomingQos2.has(p.packetId); // a re-sent one was delivered already [MQTT-4.3.3-10]
      this.incomingQos2.add(p.packetId);
      reply.push({ type: PacketType.PUBREC, packetId: p.packetId, reasonCode: 0, properties: {} });
    }
    if (!deliver) return { reply, message: null };
    const props = p.properties;
    const m = new Message(topic, copyBytes(p.payload), {
      qos: p.qos,
      retain: p.retain,
      responseTopic: props.responseTopic,
      correlationData: props.correlationData === undefined ? undefined : copyBytes(props.correlationData),
      userProperties: props.userProperties ?? [],
      messageExpiryInterval: props.messageExpiryInterval,
      contentType: props.contentType,
      payloadFormatIndicator: props.payloadFormatIndicator as 0 | 1 | undefined,
    });
    if (props.subscriptionIdentifiers !== undefined) m.subscriptionIdentifiers = props.subscriptionIdentifiers;
    return { reply, message: m };
  }
}

