/** Broker addresses and limits, with their defaults. */
import type { TLSOptions } from "bun";
import type { Durability } from "./store/journal";
import type { ClusterOptions } from "./cluster/cluster";

/** A WebSocket listener's options: the third element of an address (`[host, port, { websocket: true }]`). */
export interface WebSocketListenerOptions {
  websocket: true;
  /** The path served (default "/mqtt"); "*" accepts any path. */
  path?: string;
  /** TLS options: a wss:// listener. */
  tls?: TLSOptions;
  /** Behind a reverse proxy: the remote address in logs is the last one in X-Forwarded-For. */
  trustProxy?: boolean;
}

/** A listener: a host, `[host, port]`, `[host, port, tls]`, or `[host, port, { websocket: true, path, tls, trustProxy }]`. */
export type Address = string | [string, number] | [string, number, TLSOptions] | [string, number, WebSocketListenerOptions];

/** What the broker listens on: one address or several. */
export type Addresses = Address | Address[];

/** What the broker does when a connected client's queue is full: see BrokerOptions.slowConsumerPolicy. */
export type SlowConsumerPolicy = "backpressure" | "drop" | "disconnect";

/** The slow-consumer policies, for validating configuration. */
export const SLOW_CONSUMER_POLICIES: readonly SlowConsumerPolicy[] = ["backpressure", "drop", "disconnect"];

/** Limits and features; every field has a default (see DEFAULT_OPTIONS). */
export interface BrokerOptions {
  /** Most simultaneous connections; more are refused with CONNACK 0x97 (v5) / 0x03 (3.1.1). */
  maxConnections: number;
  /** New connections a listener accepts per second (a token bucket holding one second's worth); more are closed at once; 0 = no bound. */
  maxConnectionRate: number;
  /** File descriptors kept back from client sockets (persistence, logs, other listeners): sockets beyond the descriptor limit less this are refused. */
  fdReserve: number;
  /** Bound on the broker's RSS and heap: above it new connections get CONNACK 0x97 and QoS 0 deliveries are dropped until memory falls below 80 % of it; null = 3/4 of the memory available (cgroup or machine), 0 = none. */
  maxMemoryBytes: number | null;
  /** Largest packet accepted from a client, fixed header included (advertised in CONNACK). */
  maxPacketSize: number;
  /**
   * QoS 1/2 messages kept for one client (queued while offline or while its window is full). What
   * happens at the bound to an online client is slowConsumerPolicy's choice; an offline client's
   * new messages are dropped and counted.
   */
  maxQueuedMessages: number;
  /** Bytes of payload kept in one client's queue (same policy as maxQueuedMessages). */
  maxQueuedBytes: number;
  /**
   * What happens when a QoS 1/2 message is for an online client whose queue is at its bound:
   * "backpressure" queues it and stops reading from its publisher until the queue is down to half
   * (no message is lost); "drop" drops and counts it; "disconnect" ends the client with 0x97.
   */
  slowConsumerPolicy: SlowConsumerPolicy;
  /**
   * Milliseconds a client may hold publishers back (backpressure) without acknowledging anything;
   * it is then disconnected with 0x97 Quota Exceeded and its session goes offline.
   */
  slowConsumerTimeoutMs: number;
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
  /** Most retained messages held; a new retained topic past it is refused: v5 PUBACK/PUBREC 0x97, else dropped and logged. */
  maxRetainedMessages: number;
  /** Most topic and payload bytes of the retained messages held; a new retained topic past it is refused as for maxRetainedMessages. */
  maxRetainedBytes: number;
  /** Most subscriptions one session may hold; SUBACK refuses the excess filters with 0x97 (3.1.1: 0x80). */
  maxSubscriptionsPerClient: number;
  /** Most levels of a topic name or filter: past it a PUBLISH is refused (v5 PUBACK/PUBREC 0x90, else dropped and logged), a filter gets SUBACK 0x8F (3.1.1: 0x80). */
  maxTopicLevels: number;
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
  /**
   * After a DISCONNECT with an error reason: milliseconds the broker keeps reading (and
   * discarding) what the client still sends, its own side closed (FIN), before it closes the
   * socket; a client that closes its side ends it sooner. 0: close at once.
   */
  lingerMs: number;
  /** Connections that may linger (lingerMs) at once; more are closed at once. */
  maxLingering: number;
  /** The HTTP endpoint: Prometheus /metrics, /livez and /readyz (port 0: any free one, see Broker.httpPort). Null: none. */
  http: HttpOptions | null;
  /**
   * Act as one broker with every broker of the same cluster name on these NATS servers
   * (lib/broker/cluster/). Null: a lone broker, and no NATS code is loaded.
   */
  cluster: ClusterOptions | null;
}

/** Where the HTTP endpoint (/metrics, /livez, /readyz) listens. */
export interface HttpOptions {
  host: string;
  port: number;
}

/** The defaults: Mosquitto's where it has one. */
export const DEFAULT_OPTIONS: BrokerOptions = {
  maxConnections: 100_000,
  maxConnectionRate: 1000,
  fdReserve: 64,
  maxMemoryBytes: null,
  maxPacketSize: 16 * 1024 * 1024,
  maxQueuedMessages: 1000,
  maxQueuedBytes: 16 * 1024 * 1024,
  slowConsumerPolicy: "backpressure",
  slowConsumerTimeoutMs: 30_000,
  maxOutputBytes: 1024 * 1024,
  maxInflight: 100,
  receiveMaximum: 65535,
  connectTimeoutMs: 10_000,
  maximumQoS: 2,
  retainAvailable: true,
  maxRetainedMessages: 1_000_000,
  maxRetainedBytes: 512 * 1024 * 1024,
  maxSubscriptionsPerClient: 100_000,
  maxTopicLevels: 128,
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
  lingerMs: 2000,
  maxLingering: 1000,
  http: null,
  cluster: null,
};

/** The path a WebSocket listener serves unless told otherwise. */
export const DEFAULT_WEBSOCKET_PATH = "/mqtt";

/** One listener, normalized. */
export interface Listener {
  host: string;
  port: number;
  tls: TLSOptions | undefined;
  /** Null for TCP; for WebSocket the path served ("*": any) and whether X-Forwarded-For is believed. */
  websocket: { path: string; trustProxy: boolean } | null;
}

/** Normalizes the accepted address forms; a bare host listens on 1883. */
export function normalizeAddresses(addresses: Addresses): Listener[] {
  const list: Address[] = typeof addresses === "string" || isTuple(addresses) ? [addresses as Address] : (addresses as Address[]);
  return list.map((a): Listener => {
    if (typeof a === "string") return { host: a, port: 1883, tls: undefined, websocket: null };
    const third = a[2];
    if (third !== undefined && (third as WebSocketListenerOptions).websocket === true) {
      const ws = third as WebSocketListenerOptions;
      return { host: a[0], port: a[1], tls: ws.tls, websocket: { path: ws.path ?? DEFAULT_WEBSOCKET_PATH, trustProxy: ws.trustProxy ?? false } };
    }
    return { host: a[0], port: a[1], tls: third as TLSOptions | undefined, websocket: null };
  });
}

function isTuple(a: Addresses): boolean {
  return Array.isArray(a) && typeof a[0] === "string" && typeof a[1] === "number";
}
