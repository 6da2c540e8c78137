/**
 * `$SYS` topics, as Mosquitto publishes them: retained messages under `$SYS/broker/` with the
 * broker's version, uptime and counters, refreshed every `sysIntervalMs`; a value is published
 * again only when it changed (the uptime always). `$`-topics reach only subscriptions that name
 * `$SYS` [MQTT-4.7.2-1], and they are not written to the persistence file.
 */
import { NO_PROPERTIES } from "../../codec/properties";
import type { Message } from "../message";
import { total, type BrokerCounters } from "./counters";

/** The values of one `$SYS` round, by topic. */
export function sysValues(version: string, startedAt: number, counters: BrokerCounters, state: { connected: number; sessions: number; subscriptions: number; retained: number }, now = Date.now()): [string, string][] {
  return [
    ["$SYS/broker/version", `mqtttools ${version}`],
    ["$SYS/broker/uptime", `${Math.floor((now - startedAt) / 1000)} seconds`],
    ["$SYS/broker/clients/connected", String(state.connected)],
    ["$SYS/broker/clients/total", String(state.sessions)],
    ["$SYS/broker/messages/received", String(total(counters.received))],
    ["$SYS/broker/messages/sent", String(total(counters.sent))],
    // as Mosquitto's: messages dropped because a client's queue or output was full
    ["$SYS/broker/publish/messages/dropped", String(counters.dropped.queue_full + counters.dropped.output_full)],
    ["$SYS/broker/subscriptions/count", String(state.subscriptions)],
    ["$SYS/broker/retained messages/count", String(state.retained)],
  ];
}

const encoder = new TextEncoder();

/** A retained QoS 0 message of the broker's own. */
export function sysMessage(topic: string, value: string): Message {
  return {
    topic,
    topicBytes: encoder.encode(topic),
    payload: encoder.encode(value),
    qos: 0,
    retain: true,
    properties: NO_PROPERTIES,
    expiresAt: 0,
    persisted: true,
    ownTopic: true,
    forms: null,
    formsShared: true,
  };
}
