/**
 * An application message on its way through the broker. A message routed straight from a received
 * PUBLISH holds views of the frame; persist() is the one place that copies it, once and in place,
 * when it must outlive the frame (retained, queued, in flight). Encoded forms are cached on the
 * message so that every subscriber that gets the same form shares one encoding.
 */
import type { QoS } from "../codec/constants";
import { NO_PROPERTIES, type PublishProperties } from "../codec/properties";
import { encodePacket, remainingLength } from "../codec/packet";
import { PacketType } from "../codec/constants";
import { varintSize } from "../codec/writer";
import type { PublishPacket } from "../codec/packets/publish";
import { copyBytes } from "../codec/bytes";

/** One encoded PUBLISH and where its packet identifier sits (QoS > 0) so it can be patched in place. */
export interface EncodedForm {
  bytes: Uint8Array;
  packetIdOffset: number;
}

/** A message as the broker routes, stores and sends it. */
export interface Message {
  topic: string;
  /** The topic's UTF-8 bytes. */
  topicBytes: Uint8Array;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  /** Properties forwarded to subscribers: never a Topic Alias or Subscription Identifier. */
  properties: PublishProperties;
  /** When the message expires (Date.now() ms), 0 = never. */
  expiresAt: number;
  /** True when topicBytes, payload and binary properties are the broker's own copies. */
  persisted: boolean;
  /**
   * True when topicBytes is the broker's own copy already (a connection's cached topic, which is
   * never changed) though the rest may be views: persist() then keeps it as it is.
   */
  ownTopic: boolean;
  /** Encoded forms, indexed by formIndex(); built lazily. */
  forms: (EncodedForm | undefined)[] | null;
  /**
   * False when the router found one subscriber only: its PUBLISH is encoded straight into that
   * connection's output (publishOf), not into a form kept for others. True: encodeForm() and share.
   */
  formsShared: boolean;
}

/**
 * Builds a message from a received PUBLISH; the result holds views of the frame. `ownTopic`: the
 * topic bytes are the broker's own, unchanging copy (see Message.ownTopic), not a view;
 * `ownPayload`: so is the payload (decoded as a copy). Both, and no Correlation Data (a view):
 * the message is persisted as it is.
 */
export function messageFromPublish(p: PublishPacket, topic: string, topicBytes: Uint8Array, ownTopic = false, ownPayload = false): Message {
  let properties = p.properties;
  if (properties !== NO_PROPERTIES && (properties.topicAlias !== undefined || properties.subscriptionIdentifiers !== undefined)) {
    const { topicAlias: _alias, subscriptionIdentifiers: _ids, ...rest } = properties;
    properties = Object.keys(rest).length === 0 ? NO_PROPERTIES : rest;
  }
  const expiry = properties.messageExpiryInterval;
  return {
    topic,
    topicBytes,
    payload: p.payload,
    qos: p.qos,
    retain: p.retain,
    properties,
    expiresAt: expiry === undefined ? 0 : Date.now() + expiry * 1000,
    persisted: ownTopic && ownPayload && properties.correlationData === undefined,
    ownTopic,
    forms: null,
    formsShared: true,
  };
}

/**
 * Makes a message the broker's own: the one function that copies received bytes. The copies
 * replace the views in place (same bytes), so a message routed to many sessions is copied once
 * and every holder of it, and its cached encodings (which hold no views), stay valid. Returns it.
 */
export function persist(m: Message): Message {
  if (m.persisted) return m;
  const properties = m.properties;
  if (properties.correlationData !== undefined) m.properties = { ...properties, correlationData: copyBytes(properties.correlationData) };
  if (!m.ownTopic) m.topicBytes = copyBytes(m.topicBytes);
  m.payload = copyBytes(m.payload);
  m.persisted = m.ownTopic = true;
  return m;
}

/** Bytes a queued message is charged for. */
export function messageCost(m: Message): number {
  return m.payload.length + m.topicBytes.length + 64;
}

function formIndex(version: 4 | 5, qos: QoS, retain: boolean): number {
  return (version === 5 ? 6 : 0) + qos * 2 + (retain ? 1 : 0);
}

const NO_TOPIC = new Uint8Array(0);

/**
 * Encodes `m` as a PUBLISH for one subscriber. Forms without per-subscriber properties are cached
 * on the message and shared; `subscriptionIds`, a reduced expiry or a topic alias make a form of
 * its own. `alias` > 0 sends the Topic Alias; with `aliasKnown` the topic name is left out
 * (the client already has the mapping, section 3.3.2.3.4).
 */
export function encodeForm(m: Message, version: 4 | 5, qos: QoS, retain: boolean, dup: boolean, subscriptionIds: number[] | null, now: number, alias = 0, aliasKnown = false): EncodedForm {
  const shared = subscriptionIds === null && !dup && alias === 0 && (m.expiresAt === 0 || version === 4);
  const index = formIndex(version, qos, retain);
  if (shared) {
    const cached = m.forms?.[index];
    if (cached !== undefined) return cached;
  }
  const packet = publishOf(m, version, qos, retain, dup, subscriptionIds, now, alias, aliasKnown);
  const rl = remainingLength(packet, version);
  const form: EncodedForm = { bytes: encodePacket(packet, version), packetIdOffset: 1 + varintSize(rl) + 2 + packet.topic.length };
  if (shared) (m.forms ??= new Array(12))[index] = form;
  return form;
}

/** The PUBLISH packet of `m` for one subscriber, with packet identifier `packetId` (QoS > 0); the arguments as encodeForm's. */
export function publishOf(m: Message, version: 4 | 5, qos: QoS, retain: boolean, dup: boolean, subscriptionIds: number[] | null, now: number, alias = 0, aliasKnown = false, packetId = 1): PublishPacket {
  let properties = m.properties;
  if (version === 5 && (subscriptionIds !== null || m.expiresAt !== 0 || alias > 0)) {
    properties = { ...properties };
    if (alias > 0) properties.topicAlias = alias;
    if (subscriptionIds !== null) properties.subscriptionIdentifiers = subscriptionIds;
    if (m.expiresAt !== 0) properties.messageExpiryInterval = Math.max(0, Math.ceil((m.expiresAt - now) / 1000)); // section 3.3.2.3.3
  }
  const topic = aliasKnown ? NO_TOPIC : m.topicBytes;
  return { type: PacketType.PUBLISH, dup, qos, retain, topic, packetId: qos > 0 ? packetId : 0, properties, payload: m.payload };
}
