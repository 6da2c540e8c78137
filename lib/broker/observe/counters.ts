/**
 * What the broker counts as it works, for `$SYS` and `/metrics`: plain numbers bumped where the
 * code already is (a PUBLISH handled, a packet written, a drop decided), never a lookup on the hot
 * path. Gauges (connections, sessions, queues) are not kept here: they are read when scraped.
 */
import { reasonName } from "../../codec/reason-codes";

/** Why a message did not reach a subscriber (the `reason` label of mqtttools_messages_dropped_total). */
export const DROP_REASONS = ["no_subscribers", "queue_full", "expired", "too_large", "output_full", "not_authorized", "memory_pressure"] as const;

/** One of DROP_REASONS. */
export type DropReason = (typeof DROP_REASONS)[number];

/** The broker's counters. */
export interface BrokerCounters {
  /** PUBLISH packets received from clients, by QoS. */
  received: [number, number, number];
  /** PUBLISH packets sent to clients, by QoS. */
  sent: [number, number, number];
  /** Messages not delivered, by reason (no_subscribers and not_authorized count PUBLISH packets, the others deliveries). */
  dropped: Record<DropReason, number>;
  /** Bytes read from and written to client connections. */
  bytesReceived: number;
  bytesSent: number;
  /** CONNACK packets sent, by reason code. */
  connacks: Map<number, number>;
  /** Connections that ended after CONNECT, by "reason initiator" (initiator: client or server). */
  disconnects: Map<string, number>;
  /** CONNECTs refused for a bad user name or password, or a missing one. */
  authFailures: number;
}

/** New counters, all at zero. */
export function newCounters(): BrokerCounters {
  const dropped = {} as Record<DropReason, number>;
  for (const r of DROP_REASONS) dropped[r] = 0;
  return { received: [0, 0, 0], sent: [0, 0, 0], dropped, bytesReceived: 0, bytesSent: 0, connacks: new Map(), disconnects: new Map(), authFailures: 0 };
}

/** A reason code as a label value: its name in snake case ("keep_alive_timeout"). */
export function reasonLabel(code: number): string {
  return reasonName(code).toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "");
}

/** Counts one ended connection. */
export function countDisconnect(counters: BrokerCounters, reason: string, initiator: "client" | "server"): void {
  const key = `${reason} ${initiator}`;
  counters.disconnects.set(key, (counters.disconnects.get(key) ?? 0) + 1);
}

/** The sum of a per-QoS counter. */
export const total = (byQos: [number, number, number]): number => byQos[0] + byQos[1] + byQos[2];
