/** Broker addresses and limits, with their defaults. */
import type { TLSOptions } from "bun";
import type { Durability } from "./store/journal";

/** A listener: a host, `[host, port]`, or `[host, port, tls]`. */
export type Address = string | [string, number] | [string, number, TLSOptions];

/** What the broker listens on: one address or several. */
export type Addresses = Address | Address[];

/** Limits and features; every field has a default (see DEFAULT_OPTIONS). */
export interface BrokerOptions {
  /** Most simultaneous connections; more are refused with CONNACK 0x97 (v5) / 0x03 (3.1.1). */
  maxConnections: number;
  /** Largest packet accepted from a client, fixed header included (advertised in CONNACK). */
  maxPacketSize: number;
  /** QoS 1/2 messages kept for one client (queued while offline or while its window is full). */
  maxQueuedMessages: number;
  /** Bytes of payload kept in one client's queue. */
  maxQueuedBytes: number;
  /** Unsent bytes kept for one connection before QoS 0 messages to it are dropped. */
  maxOutputBytes: number;
  /** QoS 1/2 messages sent to one client and not yet acknowledged (also bounded by its Receive Maximum). */
  maxInflight: number;
  /** QoS 2 messages a client may have unreleased towards the broker (advertised as Receive Maximum). */
  receiveMaximum: number;
  /** Milliseconds a new connection has to send CONNECT. */
  connectTimeoutMs: number;
  /** Highest QoS the broker accepts and grants. */
  maximumQoS: 0 | 1 | 2;
  /** Whether retained messages are supported. */
  retainAvailable: boolean;
  /** Topic aliases a v5 client may use towards the broker. */
  topicAliasMaximum: number;
  /** Longest keep alive a v5 client may have, in seconds; one asking for more or for 0 gets this (0 = any). */
  maxKeepAlive: number;
  /** Whether subscriptions with '+' or '#' are allowed (else SUBACK 0xA2). */
  wildcardSubscriptionAvailable: boolean;
  /** Whether SUBSCRIBE may carry a Subscription Identifier (else DISCONNECT 0xA1). */
  subscriptionIdentifierAvailable: boolean;
  /** Whether `$share/` subscriptions are allowed (else SUBACK 0x9E). */
  sharedSubscriptionAvailable: boolean;
  /** Topic filters no client may subscribe to (SUBACK 0x80); a filter they cover is denied too, and messages on topics they match reach nobody. */
  deniedTopicFilters: string[];
  /** Sent as Response Information in CONNACK to a client that asks for it (section 3.1.2.11.7); none when empty. */
  responseInformation: string;
  /**
   * Redirects every client elsewhere: CONNECT is answered with 0x9D Server Moved (`permanent`) or
   * 0x9C Use Another Server, carrying `reference` as Server Reference (section 4.11). Null: serve.
   */
  redirect: { reference: string; permanent: boolean } | null;
  /**
   * A password file in Mosquitto's format (made with `mosquitto_passwd`), read in start(): CONNECT
   * must then carry a user name and password it holds (else CONNACK 0x86 / 3.1.1 0x04). Null: no check.
   */
  passwordFile: string | null;
  /** Whether clients without a user name may connect (else CONNACK 0x87 / 3.1.1 0x05); null: only when there is no password file. */
  allowAnonymous: boolean | null;
  /**
   * An access control file in Mosquitto's acl_file format, read in start(): clients then read and
   * write only the topics its rules grant them (see lib/broker/acl.ts). Null: no check.
   */
  aclFile: string | null;
  /**
   * A SQLite file (created when missing) that keeps retained messages, sessions that outlive their
   * connection and pending wills: every change is committed before the packet that acknowledges
   * it leaves the broker. Null: memory only.
   */
  persistenceFile: string | null;
  /**
   * With persistenceFile, what an acknowledged change survives: "process" (synchronous=NORMAL) a
   * crash of the broker process, "power" (synchronous=FULL, an fsync per commit) the loss of the machine.
   */
  durability: Durability;
  /** Milliseconds between updates of the `$SYS/broker/...` topics (Mosquitto's sys_interval); 0: none. */
  sysIntervalMs: number;
}

/** The defaults: Mosquitto's where it has one. */
export const DEFAULT_OPTIONS: BrokerOptions = {
  maxConnections: 100_000,
  maxPacketSize: 16 * 1024 * 1024,
  maxQueuedMessages: 1000,
  maxQueuedBytes: 16 * 1024 * 1024,
  maxOutputBytes: 1024 * 1024,
  maxInflight: 100,
  receiveMaximum: 65535,
  connectTimeoutMs: 10_000,
  maximumQoS: 2,
  retainAvailable: true,
  topicAliasMaximum: 10,
  maxKeepAlive: 60,
  wildcardSubscriptionAvailable: true,
  subscriptionIdentifierAvailable: true,
  sharedSubscriptionAvailable: true,
  deniedTopicFilters: [],
  responseInformation: "",
  redirect: null,
  passwordFile: null,
  allowAnonymous: null,
  aclFile: null,
  persistenceFile: null,
  durability: "process",
  sysIntervalMs: 10_000,
};

/** One listener, normalized. */
export interface Listener {
  host: string;
  port: number;
  tls: TLSOptions | undefined;
}

/** Normalizes the accepted address forms; a bare host listens on 1883. */
export function normalizeAddresses(addresses: Addresses): Listener[] {
  const list: Address[] = typeof addresses === "string" || isTuple(addresses) ? [addresses as Address] : (addresses as Address[]);
  return list.map((a) => (typeof a === "string" ? { host: a, port: 1883, tls: undefined } : { host: a[0], port: a[1], tls: a[2] }));
}

function isTuple(a: Addresses): boolean {
  return Array.isArray(a) && typeof a[0] === "string" && typeof a[1] === "number";
}
