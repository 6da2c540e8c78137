/** PUBLISH from a client: checks, topic alias resolution, routing, and the QoS 1/2 acknowledgement. */
import { PacketType } from "../../codec/constants";
import { NO_PROPERTIES } from "../../codec/properties";
import { MqttError, protocolError, ReasonCode } from "../../codec/reason-codes";
import { decodeUtf8 } from "../../codec/reader";
import { DEFERRED_PAYLOAD, type PublishPacket } from "../../codec/packets/publish";
import type { Connection } from "../connection";
import { messageFromPublish } from "../message";

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Handles a PUBLISH received from a client. */
export function handlePublish(conn: Connection, p: PublishPacket): void {
  const broker = conn.broker;
  const o = broker.options;
  const session = conn.session!;
  const counters = broker.counters;
  // first, before anything can throw: the decoder may have written this topic over the last one's bytes
  if ((p.topic as Uint8Array).length > 0) conn.takeTopic(p.topic as Uint8Array);
  counters.received[p.qos]++;
  if (p.qos > o.maximumQoS) throw new MqttError(ReasonCode.QoSNotSupported, `QoS ${p.qos} exceeds the maximum QoS ${o.maximumQoS}`); // [MQTT-3.2.2-11]
  if (p.retain && !o.retainAvailable) throw new MqttError(ReasonCode.RetainNotSupported, "retained messages are not supported"); // [MQTT-3.2.2-14]

  let topicBytes = p.topic as Uint8Array;
  let topic: string | null = null; // made only when needed (Connection.topic()), with a topic alias always
  let ownTopic = true; // topicBytes is the broker's own copy, not a view of the frame
  let levels = 0; // 0: takeTopic() counted them
  const props = p.properties;
  const alias = props.topicAlias;
  if (alias !== undefined) {
    if (alias > o.topicAliasMaximum) {
      throw new MqttError(ReasonCode.TopicAliasInvalid, `topic alias invalid: ${alias} exceeds the Topic Alias Maximum ${o.topicAliasMaximum}`); // [MQTT-3.3.2-9]
    }
    if (topicBytes.length === 0) {
      const known = conn.inboundAliases?.get(alias);
      if (known === undefined) protocolError(`topic alias ${alias} was never set on this connection`); // section 3.3.2.3.4
      topic = known;
      topicBytes = encoder.encode(known);
    } else {
      topic = decodeUtf8(topicBytes, 0, topicBytes.length, "the topic name");
      (conn.inboundAliases ??= new Map()).set(alias, topic);
      ownTopic = false;
    }
    levels = topic.split("/").length;
  } // else topicBytes are lastTopicBytes (takeTopic), the connection's copy: persist() need not copy them again
  if (props.subscriptionIdentifiers !== undefined) protocolError("a PUBLISH from a client must not carry a Subscription Identifier"); // [MQTT-3.3.4-6]
  // a QoS 0 payload decoded deferred (Connection.deferPayloads) is viewed only when needed: not
  // when the frame goes as it came to its one subscriber (Outbox.forwardQos0)
  const framer = conn.framer!;
  let deferred = p.payload === DEFERRED_PAYLOAD;
  if (deferred && (p.retain || props.payloadFormatIndicator === 1 || props.messageExpiryInterval !== undefined || alias !== undefined)) {
    p.payload = conn.deferredPayload();
    deferred = false;
  }
  if (props.payloadFormatIndicator === 1) {
    try {
      strictUtf8.decode(p.payload);
    } catch {
      throw new MqttError(ReasonCode.PayloadFormatInvalid, "payload format invalid: the payload is marked UTF-8 but is not valid UTF-8"); // section 3.3.2.3.2
    }
  }

  if (p.qos === 2) {
    if (session.incomingQos2.has(p.packetId)) {
      // a re-sent PUBLISH of a message already received: acknowledge, do not deliver again [MQTT-4.3.3-10]
      broker.acknowledge(conn, { type: PacketType.PUBREC, packetId: p.packetId, reasonCode: 0, properties: NO_PROPERTIES }, false);
      return;
    }
    if (session.incomingQos2.size >= o.receiveMaximum) {
      throw new MqttError(ReasonCode.ReceiveMaximumExceeded, `receive maximum exceeded: more than ${o.receiveMaximum} QoS 2 messages unacknowledged`); // [MQTT-3.3.4-7] (the client broke it)
    }
  }

  // not authorized, too many levels, or a new retained topic past the bounds: nothing is
  // delivered or retained. v5 acknowledgements say so (0x87, 0x90, 0x97; each ends a QoS 2
  // exchange); QoS 0 and 3.1.1 ones cannot, so the message is acknowledged and dropped, and logged
  let reasonCode = 0;
  let viaCluster = false; // in a cluster, acknowledged once NATS accepted it
  if ((levels === 0 ? conn.lastTopicLevels : levels) > o.maxTopicLevels) {
    if (broker.logs("warning")) broker.log("warning", `${conn.describe()}: PUBLISH to a topic of more than maxTopicLevels (${o.maxTopicLevels}) levels dropped`);
    if (conn.version === 5) reasonCode = ReasonCode.TopicNameInvalid;
  } else if (p.retain && p.payload.length > 0 && broker.retainRefused((topic ??= conn.topic()), topicBytes.length + p.payload.length) !== null) {
    if (conn.version === 5) reasonCode = ReasonCode.QuotaExceeded;
  } else if (broker.checksAccess && !conn.mayWrite((topic ??= conn.topic()))) {
    counters.dropped.not_authorized++;
    if (conn.version === 5) reasonCode = ReasonCode.NotAuthorized;
  } else {
    // a message that reaches nobody and is not retained is not built at all
    // matched by its bytes when it can be (Router.matchAscii), and kept for a topic that repeats
    const matches = topic === null ? conn.matches() : broker.match(topic);
    viaCluster = broker.router.outbound !== null && broker.router.sendsOut((topic ??= conn.topic()));
    const outbox = broker.outbox;
    if (deferred && !viaCluster && matches.groups.length === 0 && matches.deliveries.length === 1 && outbox.forwardQos0(session, matches.deliveries[0]!, conn.version, framer.frameBuf, framer.frameStart, framer.frameEnd, framer.frameEnd - conn.deferredAt)) {
      // delivered as it came, or dropped as a QoS 0 delivery is (the subscriber offline, its output full)
    } else if (p.retain || viaCluster || matches.deliveries.length > 0 || matches.groups.length > 0) {
      if (deferred) p.payload = conn.deferredPayload();
      outbox.publisher = conn; // a full queue holds this connection back (flow control, section 4.9)
      const ownPayload = p.qos > 0 && p.payload.length <= conn.copyPayloadsUpTo; // decoded as a copy (Connection.copyPayloadsUpTo)
      if (topicBytes === conn.lastTopicBytes) conn.lastTopicKept = true; // the message holds them: the next topic may not be written over them
      const message = messageFromPublish(p, (topic ??= conn.topic()), topicBytes, ownTopic, ownPayload);
      // a subscriber that gets what came in gets the frame itself (no Topic Alias to remove, no expiry to count down)
      const forward = alias === undefined && !p.dup && message.expiresAt === 0;
      if (forward) outbox.forward(message, framer.frameBuf, framer.frameStart, framer.frameEnd, conn.version);
      try {
        broker.route(message, session, matches);
      } finally {
        if (forward) outbox.forward(null);
        outbox.publisher = null;
      }
    } else counters.dropped.no_subscribers++;
  }

  if (p.qos === 1) {
    broker.acknowledgePublish(conn, PacketType.PUBACK, p.packetId, reasonCode, viaCluster); // [MQTT-4.3.2-4]
  } else if (p.qos === 2) {
    if (reasonCode === 0) session.addIncomingQos2(p.packetId);
    broker.acknowledgePublish(conn, PacketType.PUBREC, p.packetId, reasonCode, viaCluster); // [MQTT-4.3.3-8]
  }
  if (broker.memoryPressure) broker.outbox.holdForMemory(conn); // read no more from it until memory is back under the bound
}
