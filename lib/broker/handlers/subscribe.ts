/** SUBSCRIBE and UNSUBSCRIBE: filter validation, the trie, SUBACK/UNSUBACK, retained delivery. */
import { PacketType, type QoS } from "../../codec/constants";
import { ReasonCode } from "../../codec/reason-codes";
import type { SubscribePacket } from "../../codec/packets/subscribe";
import type { UnsubscribePacket } from "../../codec/packets/unsubscribe";
import { parseShared, topicFilterError } from "../../topic/validate";
import type { Connection } from "../connection";
import type { SubscriptionEntry } from "../session";

/** Handles a SUBSCRIBE: one reason code per filter [MQTT-3.8.4-6], then the retained messages. */
export function handleSubscribe(conn: Connection, p: SubscribePacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const v5 = conn.version === 5;
  const failure = (code: number) => (v5 ? code : 0x80);
  const reasonCodes: number[] = [];
  const retainedFor: SubscriptionEntry[] = [];
  const subscriptionId = p.properties.subscriptionIdentifiers?.[0];
  for (const s of p.subscriptions) {
    const shared = parseShared(s.topicFilter);
    if (shared !== null) {
      reasonCodes.push(failure(typeof shared === "string" ? ReasonCode.TopicFilterInvalid : ReasonCode.SharedSubscriptionsNotSupported));
      continue;
    }
    const error = topicFilterError(s.topicFilter);
    if (error !== null) {
      broker.log("info", `${conn.describe()}: invalid topic filter: ${error}`);
      reasonCodes.push(failure(ReasonCode.TopicFilterInvalid)); // [MQTT-4.7.1-1] [MQTT-4.7.1-2]
      continue;
    }
    const qos = (s.qos < broker.options.maximumQoS ? s.qos : broker.options.maximumQoS) as QoS; // granted no higher than the Maximum QoS, section 3.2.2.3.4
    const existed = session.subscriptions.has(s.topicFilter);
    const entry: SubscriptionEntry = {
      session,
      filter: s.topicFilter,
      qos,
      noLocal: s.noLocal,
      retainAsPublished: s.retainAsPublished,
      retainHandling: s.retainHandling,
      subscriptionId,
      shareName: null,
    };
    const node = broker.trie.add(s.topicFilter, session, entry); // replaces an existing one [MQTT-3.8.4-3]
    session.subscriptions.set(s.topicFilter, { entry, node });
    reasonCodes.push(qos); // [MQTT-3.9.3-1]
    if (!v5 || s.retainHandling === 0 || (s.retainHandling === 1 && !existed)) retainedFor.push(entry); // [MQTT-3.3.1-9] [MQTT-3.3.1-10]
  }
  conn.writePacket({ type: PacketType.SUBACK, packetId: p.packetId, reasonCodes, properties: {} }); // [MQTT-3.8.4-1]
  for (const entry of retainedFor) broker.sendRetained(session, entry);
}

/** Handles an UNSUBSCRIBE: one reason code per filter (v5) [MQTT-3.10.4-5]. */
export function handleUnsubscribe(conn: Connection, p: UnsubscribePacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const reasonCodes: number[] = [];
  for (const filter of p.topicFilters) {
    const held = session.subscriptions.get(filter);
    if (held === undefined) {
      reasonCodes.push(ReasonCode.NoSubscriptionExisted);
      continue;
    }
    broker.trie.removeAt(held.node, session); // [MQTT-3.10.4-1]
    session.subscriptions.delete(filter);
    reasonCodes.push(ReasonCode.Success);
  }
  conn.writePacket({ type: PacketType.UNSUBACK, packetId: p.packetId, reasonCodes: conn.version === 5 ? reasonCodes : [], properties: {} }); // [MQTT-3.10.4-4]
}
