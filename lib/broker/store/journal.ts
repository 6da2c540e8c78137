/**
 * Durable state as the broker core sees it: the interface a backend (SQLite, in sqlite.ts)
 * implements, and nothing about how it keeps things. The core never imports bun:sqlite.
 *
 * Write-ahead, per change: every change to state that an acknowledgement promises (a message
 * queued or in flight for a session that outlives its connection, a subscription, the session
 * itself, a pending will, a retained message) is noted here when it is made. The backend writes
 * it into a transaction opened for the current event-loop turn, and commits that transaction
 * before any connection output is written: so a PUBACK, PUBREC, SUBACK or CONNACK leaves only once
 * what it acknowledges is in the file. All changes of one turn share one commit (group commit).
 */
import type { Message } from "../message";
import type { InflightMessage, QueuedMessage, Session, SubscriptionEntry } from "../session";

/** A persistence file it cannot use: damaged, not SQLite, or another program's database. */
export class PersistenceError extends Error {
  override name = "PersistenceError";
}

/** How far an acknowledged change is safe: the broker process crashing, or the machine losing power. */
export type Durability = "process" | "power";

/** The durable changes of one session that outlives its connection; Session calls these as it changes. */
export interface SessionJournal {
  /** A subscription was added or replaced; `key` is the filter as subscribed (`$share/...` included). */
  subscribed(key: string, entry: SubscriptionEntry): void;
  /** A subscription was removed. */
  unsubscribed(key: string): void;
  /** A message was appended to the queue. */
  enqueued(q: QueuedMessage): void;
  /** The oldest queued message was taken (to be sent, when inflightAdded() for it follows, else dropped). */
  dequeued(q: QueuedMessage): void;
  /** An outgoing QoS 1/2 message was sent (or is to be re-sent) under its packet identifier. */
  inflightAdded(m: InflightMessage): void;
  /** QoS 2: PUBREC received, PUBREL sent. */
  inflightReleased(packetId: number): void;
  /** An outgoing message was acknowledged (or dropped). */
  inflightRemoved(packetId: number): void;
  /** An incoming QoS 2 packet identifier was received (PUBREC sent). */
  incomingAdded(packetId: number): void;
  /** An incoming QoS 2 packet identifier was released (PUBREL received). */
  incomingRemoved(packetId: number): void;
  /** Queue, in-flight messages and incoming identifiers were all forgotten. */
  cleared(): void;
}

/** A subscription as stored: the filter as subscribed (`$share/...` included) and its options. */
export type StoredSubscription = Omit<SubscriptionEntry, "session"> & { key: string };

/** A session read back from the store. */
export interface RecoveredSession {
  clientId: string;
  expiryInterval: number;
  protocolVersion: 4 | 5;
  username: string | null;
  /** Date.now() when its client disconnected; 0 when it was connected as the broker stopped. */
  disconnectedAt: number;
  subscriptions: StoredSubscription[];
  /** Oldest first. */
  queue: QueuedMessage[];
  /** In send order. */
  inflight: InflightMessage[];
  incomingQos2: number[];
}

/** A will waiting out its Will Delay Interval, read back from the store. */
export interface RecoveredWill {
  clientId: string;
  message: Message;
  /** Date.now() when it is to be published. */
  dueAt: number;
}

/** Everything the store held at start. */
export interface Recovered {
  retained: Message[];
  sessions: RecoveredSession[];
  wills: RecoveredWill[];
}

/** What recovery restored, for the start-up line. */
export interface RecoveryReport {
  file: string;
  sessions: number;
  subscriptions: number;
  queued: number;
  inflight: number;
  incomingQos2: number;
  retained: number;
  wills: number;
  /** Milliseconds from opening the file to the state being in memory. */
  ms: number;
}

/** Transactions committed and rows they wrote, since the store was opened. */
export interface StoreStats {
  transactions: number;
  rows: number;
}

/** Durable broker state: what the broker tells it, and the group commit the output waits for. */
export interface DurableStore {
  /** Reads everything back (once, at start); sessions and retained messages that expired are left out. */
  recover(now: number): Recovered;
  /**
   * Starts journaling a session that outlives its connection and returns the journal to set on it.
   * `restored`: it came from recover() and its rows are there; otherwise its row and its current
   * state are written now.
   */
  attach(session: Session, restored: boolean): SessionJournal;
  /** Writes a journaled session's own row: expiry, protocol level, user name, and when it went offline (0: online). */
  saveSession(session: Session, disconnectedAt: number): void;
  /** Deletes a session and everything of it (it ended, or no longer outlives its connection). */
  sessionEnded(clientId: string): void;
  /** A will now waits out its delay. */
  willPending(clientId: string, message: Message, dueAt: number): void;
  /** A pending will was published or cancelled. */
  willDone(clientId: string): void;
  /** A retained message was set, or deleted (null). */
  retained(topic: string, message: Message | null): void;
  /** True while changes wait for the commit: output must wait too. */
  readonly pending: boolean;
  /** Commits what is pending now; false when the store has failed and nothing may be acknowledged any more. */
  commit(): boolean;
  /** Transactions and rows so far. */
  readonly stats: StoreStats;
  /** Commits what is pending and closes the file. */
  close(): void;
}
