/**
 * The cluster engine as the core sees it: what broker.ts, the router and the handlers call, and
 * what the engine is given in return (ClusterHost). Nothing here knows NATS: broker.ts imports the
 * NATS engine (nats.ts) dynamically, and only when BrokerOptions.cluster is set.
 */
import type { Message } from "../message";
import type { Interest } from "../router";
import type { Session, SubscriptionEntry } from "../session";
import type { HandedSession } from "./handover";

/** Where the cluster runs and how to join it (BrokerOptions.cluster, `--cluster`, `[cluster]`). */
export interface ClusterOptions {
  /** NATS server URLs, `nats://host:4222`; the client fails over among them. */
  servers: string[];
  /** The cluster's name: brokers with the same name act as one ([A-Za-z0-9_-]); it prefixes subjects and names the retained bucket. */
  name: string;
  /** NATS user name and password, or a token, or a `.creds` file (JWT and NKey seed). */
  user?: string;
  pass?: string;
  token?: string;
  credsFile?: string;
  /** How many copies JetStream keeps of the message stream and the retained bucket; default: the NATS cluster's servers, at most 3 (1 on a lone server). */
  replicas?: number;
}

/** The default cluster name. */
export const DEFAULT_CLUSTER_NAME = "mqtt";

/** What the engine needs from the broker: delivery of what other nodes send, and logging. */
export interface ClusterHost {
  /** Delivers a message from another node to this node's subscribers (not to shared groups). */
  routeRemote(message: Message): void;
  /** Delivers a message a NATS queue group gave this node to one member of the shared group `key`. */
  deliverShared(key: string, message: Message): void;
  /** Sends retained messages read from the cluster to a new subscription. */
  deliverRetained(session: Session, entry: SubscriptionEntry, messages: Message[]): void;
  /** Writes a log line. */
  log(level: "debug" | "info" | "warning" | "error", line: string): void;
  /**
   * Another node takes the session of `clientId`: closes its connection here with DISCONNECT 0x8E,
   * handles its will as a takeover does, forgets the session and returns its state (null: none here).
   */
  handOver(clientId: string, cleanStart: boolean): HandedSession | null;
  /** Publishes a will (of a session this node took over, or of a dead node's client). */
  publishWill(message: Message): void;
  /** The bounds of an offline queue: a session rebuilt from the message stream holds at most this. */
  queueBounds(): { maxQueuedMessages: number; maxQueuedBytes: number };
  /** The sessions this node holds (connected or not). */
  sessions(): Iterable<Session>;
}

/** The engine: interest out, messages in and out, shared groups, retained messages. */
export interface Cluster extends Interest {
  /** True while connected to a NATS server (the "cluster connected" readiness state). */
  readonly connected: boolean;
  /** Connects (waiting for a first server) and opens the retained bucket. */
  start(): Promise<void>;
  /** Drains and closes the connections. */
  stop(): Promise<void>;
  /** Publishes a message of a local client (or a will) to the other nodes. */
  publish(message: Message): void;
  /** Stores or clears (empty payload) a retained message for every node. */
  retain(message: Message): void;
  /** Reads the retained messages a new subscription matches, once its interest is in place, and hands them to ClusterHost.deliverRetained. */
  sendRetained(session: Session, entry: SubscriptionEntry): void;
  /** Resolves once NATS accepted everything published and retained so far; rejects if it cannot. */
  accepted(): Promise<void>;

  // ---- sessions across the cluster (nats-sessions.ts) ----

  /** Makes a client's session this node's before its CONNACK, taking it from the node that held it; the state to resume, or null. */
  claimSession(clientId: string, cleanStart: boolean): Promise<HandedSession | null>;
  /** A session connected here (CONNACK sent): its record names this node, its subscriptions, expiry and will. */
  sessionConnected(session: Session, will: { message: Message; delayMs: number } | null): void;
  /** A session's subscriptions changed. */
  subscriptionsChanged(session: Session): void;
  /** A session went offline here, its will pending until `willDueAt` (0: none). */
  sessionOffline(session: Session, will: Message | null, delayMs: number, willDueAt: number): void;
  /** A session ended here. */
  sessionEnded(clientId: string): void;
}
