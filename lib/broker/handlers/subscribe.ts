/** SUBSCRIBE and UNSUBSCRIBE: filter validation, the trie, SUBACK/UNSUBACK, retained delivery. */
import { PacketType, type QoS } from "../../codec/constants";
import { MqttError, protocolError, ReasonCode } from "../../codec/reason-codes";
import type { SubscribePacket } from "../../codec/packets/subscribe";
import type { UnsubscribePacket } from "../../codec/packets/unsubscribe";
import { filterCovers } from "../../topic/match";
import { hasWildcard, parseShared, topicFilterError } from "../../topic/validate";
import type { Connection } from "../connection";
import type { SubscriptionEntry } from "../session";

/** Handles a SUBSCRIBE: one reason code per filter [MQTT-3.8.4-6], then the retained messages. */
export function handleSubscribe(conn: Connection, p: SubscribePacket): void {
  const broker = conn.broker;
  const o = broker.options;
  const session = conn.session!;
  const v5 = conn.version === 5;
  const failure = (code: number) => (v5 ? code : 0x80); // 3.1.1 has one failure code
  const subscriptionId = p.properties.subscriptionIdentifiers?.[0];
  if (subscriptionId !== undefined && !o.subscriptionIdentifierAvailable) {
    throw new MqttError(ReasonCode.SubscriptionIdentifiersNotSupported, "subscription identifiers not supported"); // section 3.2.2.3.12
  }
  const reasonCodes: number[] = [];
  const retainedFor: SubscriptionEntry[] = [];
  for (const s of p.subscriptions) {
    const shared = parseShared(s.topicFilter);
    if (typeof shared === "string") {
      if (broker.logs("info")) broker.log("info", `${conn.describe()}: invalid shared subscription: ${shared}`);
      reasonCodes.push(failure(ReasonCode.TopicFilterInvalid)); // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
      continue;
    }
    if (shared !== null && s.noLocal) protocolError(`No Local on the shared subscription '${s.topicFilter}'`); // [MQTT-3.8.3-4]
    const filter = shared === null ? s.topicFilter : shared.filter;
    const error = topicFilterError(filter);
    if (error !== null) {
      if (broker.logs("info")) broker.log("info", `${conn.describe()}: invalid topic filter: ${error}`);
      reasonCodes.push(failure(ReasonCode.TopicFilterInvalid)); // [MQTT-4.7.1-1] [MQTT-4.7.1-2]
      continue;
    }
    if (levelCount(filter) > o.maxTopicLevels) {
      if (broker.logs("info")) broker.log("info", `${conn.describe()}: topic filter '${filter}' has more than maxTopicLevels (${o.maxTopicLevels}) levels`);
      reasonCodes.push(failure(ReasonCode.TopicFilterInvalid));
      continue;
    }
    if (session.subscriptions.size >= o.maxSubscriptionsPerClient && !session.subscriptions.has(s.topicFilter)) {
      if (broker.logs("info")) broker.log("info", `${conn.describe()}: subscription to '${s.topicFilter}' refused: maxSubscriptionsPerClient (${o.maxSubscriptionsPerClient}) reached`);
      reasonCodes.push(failure(ReasonCode.QuotaExceeded));
      continue;
    }
    if (shared !== null && !o.sharedSubscriptionAvailable) {
      reasonCodes.push(failure(ReasonCode.SharedSubscriptionsNotSupported)); // section 3.2.2.3.13
      continue;
    }
    if (!o.wildcardSubscriptionAvailable && hasWildcard(filter)) {
      reasonCodes.push(failure(ReasonCode.WildcardSubscriptionsNotSupported)); // section 3.2.2.3.11
      continue;
    }
    if (o.deniedTopicFilters.some((denied) => filterCovers(denied, filter))) {
      if (broker.logs("info")) broker.log("info", `${conn.describe()}: subscription to '${filter}' denied by the configuration`);
      reasonCodes.push(ReasonCode.UnspecifiedError);
      continue;
    }
    const qos = (s.qos < o.maximumQoS ? s.qos : o.maximumQoS) as QoS; // granted no higher than the Maximum QoS, section 3.2.2.3.4
    const entry: SubscriptionEntry = {
      session,
      filter,
      qos,
      noLocal: s.noLocal,
      retainAsPublished: s.retainAsPublished,
      retainHandling: s.retainHandling,
      subscriptionId,
      shareName: shared === null ? null : shared.shareName,
    };
    const isNew = broker.subscribe(session, s.topicFilter, entry); // replaces an existing one [MQTT-3.8.4-3]
    reasonCodes.push(qos); // [MQTT-3.9.3-1]
    // no retained messages for a shared subscription (section 4.8.2)
    if (shared === null && (!v5 || s.retainHandling === 0 || (s.retainHandling === 1 && isNew))) retainedFor.push(entry); // [MQTT-3.3.1-9] [MQTT-3.3.1-10]
  }
  // in a cluster, SUBACK once NATS has the interest: what is published after it is delivered
  broker.acknowledge(conn, { type: PacketType.SUBACK, packetId: p.packetId, reasonCodes, properties: {} }, broker.cluster !== null); // [MQTT-3.8.4-1]
  for (const entry of retainedFor) broker.sendRetained(session, entry);
}

/**
 * Handles an UNSUBSCRIBE: one reason code per filter (v5) [MQTT-3.10.4-5]. A long list is
 * removed in slices (Broker.inSlices); the connection's next packets wait until its UNSUBACK is out.
 */
export function handleUnsubscribe(conn: Connection, p: UnsubscribePacket): void {
  const session = conn.session!;
  const filters = p.topicFilters;
  const reasonCodes: number[] = [];
  let held = false;
  const finished = conn.broker.inSlices(() => {
    for (let end = Math.min(reasonCodes.length + 64, filters.length); reasonCodes.length < end; ) {
      reasonCodes.push(conn.broker.unsubscribe(session, filters[reasonCodes.length]!) ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted); // [MQTT-3.10.4-1]
    }
    if (reasonCodes.length < filters.length) return false;
    if (!conn.connected) return true;
    conn.writePacket({ type: PacketType.UNSUBACK, packetId: p.packetId, reasonCodes: conn.version === 5 ? reasonCodes : [], properties: {} }); // [MQTT-3.10.4-4]
    if (held && conn.releaseHold("slices")) conn.resume();
    return true;
  });
  if (!finished) {
    held = true;
    conn.holdBack("slices");
  }
}

/** Levels of a topic filter: one more than its slashes. */
function levelCount(filter: string): number {
  let n = 1;
  for (let i = filter.indexOf("/"); i >= 0; i = filter.indexOf("/", i + 1)) n++;
  return n;
}
