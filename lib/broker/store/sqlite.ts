/**
 * Durable broker state in one SQLite file (bun:sqlite, WAL mode): the DurableStore of journal.ts.
 *
 * Rows, not snapshots. A session's messages, queued and in flight, are rows of one table `message`,
 * keyed by the session and a sequence number given when the message is queued or sent; a queued
 * message has packet identifier 0, sending it sets the identifier. Changes to messages are not run
 * as statements when they happen: each session's journal keeps what the turn did to its rows, and
 * at the commit only the net change is written (write combining): a row added and removed in the
 * same transaction is never written, a message queued and sent in it is one insert, and the rest
 * goes as one multi-row INSERT per up to 64 new rows (the session's identifier bound once), one DELETE per run of consecutive sequence
 * numbers, and one UPDATE per run of messages queued in an earlier transaction and sent (or released)
 * in this one, a run being consecutive sequence numbers under consecutive packet identifiers.
 * Other changes (sessions, subscriptions, wills, retained messages, incoming QoS 2 identifiers)
 * are rare and run as one statement each at once, inside the turn's transaction.
 *
 * The transaction is committed when the turn's output is about to be written (the broker asks, see
 * commit()), or at the latest in a setImmediate callback scheduled by the turn's first change,
 * which then has the broker write the output it held back. Group commit: one transaction per turn
 * whatever the number of connections and packets in it.
 *
 * Durability: `process` runs with synchronous=NORMAL: a commit is a write() into the WAL, which the
 * kernel keeps when the process dies (kill -9, OOM); `power` runs with synchronous=FULL: each
 * commit also waits for fsync of the WAL, so it survives the machine going down.
 *
 * Each message is stored as the MQTT 5.0 PUBLISH that carries it (encoded once per message by the
 * codec, whatever the number of sessions it is stored for), with its expiry time beside it.
 *
 * Format: application_id 0x4D515454 ("MQTT") and user_version 3. Format 2 (tables `queued` and
 * `inflight` instead of `message`) and the format before it (tables `retained` and `sessions`, one
 * JSON document a session, user_version 0) are migrated on open, in one transaction. Any other
 * database, or a damaged one, is a PersistenceError.
 */
import { Database, type Statement } from "bun:sqlite";
import { PacketType, type QoS } from "../../codec/constants";
import { decodePacket, encodePacket } from "../../codec/packet";
import type { PublishPacket } from "../../codec/packets/publish";
import { encodeForm, persist, type Message } from "../message";
import { Checkpointer, RESTART_BYTES } from "./checkpointer";
import type { InflightMessage, QueuedMessage, Session, SubscriptionEntry } from "../session";
import {
  PersistenceError,
  type DurableStore,
  type Durability,
  type Recovered,
  type RecoveredSession,
  type SessionJournal,
  type StoreStats,
  type StoredSubscription,
} from "./journal";

/** PRAGMA application_id of our files: "MQTT". */
const APPLICATION_ID = 0x4d515454;
/** PRAGMA user_version of the format written here. */
const FORMAT = 3;
/** Format 2: queued and in-flight messages in two tables; migrated on open. */
const FORMAT_TWO_TABLES = 2;
const NEVER = 0xffffffff;
/**
 * Page size of a new file. Larger pages than SQLite's 4 KB mean fewer WAL frames (and write()
 * calls) per commit and fewer page splits as message rows come and go: measured here, 16-32 KB
 * pages took the SQLite time of a durable QoS 1 message from about 1.8 to 0.8-1.2 us.
 */
const PAGE_SIZE = 32768;
/**
 * WAL size at which a commit also checkpoints when the Worker of checkpointer.ts cannot run them
 * (SQLite's default: 1000 pages of 4 KB). Measured with 32 KB pages: 1-2 MB gave a lower PUBACK
 * p99 and a higher rate than 4 MB, and 64 MB much worse.
 */
const CHECKPOINT_BYTES = 2 * 1024 * 1024;

/** Queued (packet_id 0) and in-flight messages of sessions, in the order they were queued or sent (seq). */
const MESSAGE_TABLE =
  "CREATE TABLE message (client_id TEXT NOT NULL, seq INTEGER NOT NULL, packet_id INTEGER NOT NULL, released INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, subscription_ids TEXT, publish BLOB NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (client_id, seq)) WITHOUT ROWID";
const MESSAGE_COLUMNS = "client_id, seq, packet_id, released, qos, retain, subscription_ids, publish, expires_at";
/** Rows per multi-row INSERT of messages, largest first; a commit uses as few statements as these allow. */
const INSERT_BATCHES = [64, 32, 16, 8, 4, 2, 1];
/** Parameters of a message row but its session's, which all rows of one INSERT share (?1). */
const ROW_PARAMS = 8;
/** The VALUES of an INSERT of n message rows of one session: ?1 is the client identifier, then ROW_PARAMS a row. */
const insertRows = (n: number) =>
  Array.from({ length: n }, (_, k) => `(?1, ${Array.from({ length: ROW_PARAMS }, (_, i) => `?${2 + k * ROW_PARAMS + i}`).join(", ")})`).join(", ");

const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, publish BLOB NOT NULL, expires_at INTEGER NOT NULL)",
  "CREATE TABLE session (client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, protocol_version INTEGER NOT NULL, username TEXT, disconnected_at INTEGER NOT NULL) WITHOUT ROWID",
  "CREATE TABLE subscription (client_id TEXT NOT NULL, key TEXT NOT NULL, filter TEXT NOT NULL, qos INTEGER NOT NULL, no_local INTEGER NOT NULL, retain_as_published INTEGER NOT NULL, retain_handling INTEGER NOT NULL, subscription_id INTEGER, share_name TEXT, PRIMARY KEY (client_id, key)) WITHOUT ROWID",
  MESSAGE_TABLE,
  "CREATE TABLE incoming_qos2 (client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID",
  "CREATE TABLE will (client_id TEXT PRIMARY KEY, publish BLOB NOT NULL, due_at INTEGER NOT NULL) WITHOUT ROWID",
];
/** Tables of the current format; the per-session ones are listed for sessionEnded(). */
const SESSION_TABLES = ["session", "subscription", "message", "incoming_qos2", "will"] as const;
const TABLES = ["retained", ...SESSION_TABLES];

/**
 * The PUBLISH that carries a message (v5: every property), for storing. A message that does not
 * expire is stored as the v5 form its subscribers get (encoded once, cached on the message and
 * usually made already by the time it is stored).
 */
function encodeMessage(m: Message): Uint8Array {
  if (m.expiresAt === 0) return encodeForm(m, 5, m.qos, m.retain, false, null, 0).bytes;
  return encodePacket({ type: PacketType.PUBLISH, dup: false, qos: m.qos, retain: m.retain, topic: m.topicBytes, packetId: m.qos > 0 ? 1 : 0, properties: m.properties, payload: m.payload }, 5);
}

/** A message back from its stored PUBLISH; `what` names it in an error. */
function decodeMessage(bytes: Uint8Array, expiresAt: number, what: string): Message {
  let p: PublishPacket;
  try {
    p = decodePacket(bytes, 5) as PublishPacket;
    if (p.type !== PacketType.PUBLISH) throw new Error(`packet type ${p.type}`);
  } catch (e) {
    throw new PersistenceError(`${what} cannot be decoded: ${(e as Error).message}`);
  }
  const topicBytes = p.topic as Uint8Array;
  return persist({
    topic: new TextDecoder().decode(topicBytes),
    topicBytes,
    payload: p.payload,
    qos: p.qos,
    retain: p.retain,
    properties: p.properties,
    expiresAt,
    persisted: false,
    ownTopic: false,
    forms: null,
    formsShared: true,
  });
}

const idsText = (ids: number[] | null): string | null => (ids === null ? null : JSON.stringify(ids));
/** Stands for the message of a row change that only updates the packet identifier columns. */
const NO_MESSAGE = {} as Message;
const idsFrom = (s: string | null): number[] | null => (s === null ? null : (JSON.parse(s) as number[]));

/** What the broker gives the store: where to send the output held for a commit, and what to do when a commit fails. */
export interface SqliteStoreHooks {
  /** The turn's transaction is committed (or there was none): write the output held back for it. */
  committed(): void;
  /** A commit failed: nothing more may be acknowledged. */
  failed(e: PersistenceError): void;
  /** A transaction was committed in `seconds` (its statements and COMMIT), for /metrics. */
  timed?(seconds: number): void;
}

interface Statements {
  begin: Statement;
  commit: Statement;
  rollback: Statement;
  saveSession: Statement;
  deleteSession: Statement[];
  subscribe: Statement;
  unsubscribe: Statement;
  /** INSERT of n message rows, by n (INSERT_BATCHES). */
  insertMessages: Map<number, Statement>;
  sendMessage: Statement;
  /** The UPDATE of a run of rows of consecutive sequence numbers sent under consecutive packet identifiers. */
  sendMessages: Statement;
  deleteMessage: Statement;
  deleteMessages: Statement;
  clearMessages: Statement;
  addIncoming: Statement;
  removeIncoming: Statement;
  clearIncoming: Statement;
  saveWill: Statement;
  deleteWill: Statement;
  saveRetained: Statement;
  deleteRetained: Statement;
}

/** Where a session's messages are in the table, as recovered, until attach() takes it. */
interface Counters {
  /** The next sequence number to give. */
  tail: number;
  /** Sequence numbers of the queued messages, oldest first. */
  queued: number[];
  /** Sequence number of each in-flight message, by packet identifier. */
  inflight: Map<number, number>;
}

const noCounters = (): Counters => ({ tail: 0, queued: [], inflight: new Map() });

/** The durable state of one broker in one SQLite file. */
export class SqliteStore implements DurableStore {
  private inTransaction = false;
  private scheduled = false;
  private closed = false;
  private failure: PersistenceError | null = null;
  private rowsInTransaction = 0;
  /** Transactions and rows so far. */
  readonly stats: StoreStats = { transactions: 0, rows: 0 };
  /** The stored PUBLISH of each message that expires, encoded once however many sessions keep it (the others' is cached on the message). */
  private encoded = new WeakMap<Message, Uint8Array>();
  private recoveredCounters = new Map<string, Counters>();
  /** The journal of each session kept, by client identifier. */
  private journals = new Map<string, SqliteSessionJournal>();
  /** Journals with message changes gathered for the commit. */
  private gathered = new Set<SqliteSessionJournal>();
  private readonly s: Statements;
  /** Runs the WAL checkpoints in a Worker; null once it failed (SQLite checkpoints in the commits then). */
  private checkpointer: Checkpointer | null;
  /** The WAL reached RESTART_BYTES: this thread finishes a checkpoint once no transaction is open. */
  private restartWanted = false;
  private readonly endTurn = () => {
    this.scheduled = false;
    if (this.closed) return;
    this.commit();
    this.hooks.committed();
    if (this.restartWanted && !this.pending) this.finishCheckpoint();
  };

  private constructor(
    private readonly db: Database,
    private readonly path: string,
    private readonly hooks: SqliteStoreHooks,
    durability: Durability,
    private readonly pageSize: number,
  ) {
    this.checkpointer = new Checkpointer(path, durability === "power" ? "FULL" : "NORMAL", {
      checkpointed: (frames) => {
        if (frames * this.pageSize < RESTART_BYTES || this.closed) return;
        this.restartWanted = true;
        this.checkpointer?.hold(true);
        if (!this.pending) this.finishCheckpoint();
      },
      failed: () => {
        this.checkpointer = null;
        this.restartWanted = false;
        this.autocheckpoint();
      },
    });
    const q = (sql: string) => db.prepare(sql);
    this.s = {
      begin: q("BEGIN"),
      commit: q("COMMIT"),
      rollback: q("ROLLBACK"),
      saveSession: q("INSERT OR REPLACE INTO session (client_id, expiry_interval, protocol_version, username, disconnected_at) VALUES (?, ?, ?, ?, ?)"),
      deleteSession: SESSION_TABLES.map((t) => q(`DELETE FROM ${t} WHERE client_id = ?`)),
      subscribe: q("INSERT OR REPLACE INTO subscription (client_id, key, filter, qos, no_local, retain_as_published, retain_handling, subscription_id, share_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      unsubscribe: q("DELETE FROM subscription WHERE client_id = ? AND key = ?"),
      insertMessages: new Map(INSERT_BATCHES.map((n) => [n, q(`INSERT OR REPLACE INTO message (${MESSAGE_COLUMNS}) VALUES ${insertRows(n)}`)])),
      sendMessage: q("UPDATE message SET packet_id = ?, released = ? WHERE client_id = ? AND seq = ?"),
      sendMessages: q("UPDATE message SET packet_id = ?1 + (seq - ?2), released = ?3 WHERE client_id = ?4 AND seq >= ?2 AND seq <= ?5"),
      deleteMessage: q("DELETE FROM message WHERE client_id = ? AND seq = ?"),
      deleteMessages: q("DELETE FROM message WHERE client_id = ? AND seq >= ? AND seq <= ?"),
      clearMessages: q("DELETE FROM message WHERE client_id = ?"),
      addIncoming: q("INSERT OR IGNORE INTO incoming_qos2 (client_id, packet_id) VALUES (?, ?)"),
      removeIncoming: q("DELETE FROM incoming_qos2 WHERE client_id = ? AND packet_id = ?"),
      clearIncoming: q("DELETE FROM incoming_qos2 WHERE client_id = ?"),
      saveWill: q("INSERT OR REPLACE INTO will (client_id, publish, due_at) VALUES (?, ?, ?)"),
      deleteWill: q("DELETE FROM will WHERE client_id = ?"),
      saveRetained: q("INSERT OR REPLACE INTO retained (topic, publish, expires_at) VALUES (?, ?, ?)"),
      deleteRetained: q("DELETE FROM retained WHERE topic = ?"),
    };
  }

  /**
   * Opens (or creates) the file: checks that it is ours and undamaged, migrates the previous
   * format, and sets WAL mode and the synchronous level `durability` asks for.
   */
  static open(path: string, durability: Durability, hooks: SqliteStoreHooks): SqliteStore {
    let db: Database | null = null;
    try {
      db = new Database(path, { create: true, strict: true });
      prepareFile(db, path);
      db.run("PRAGMA journal_mode = WAL");
      db.run(`PRAGMA synchronous = ${durability === "power" ? "FULL" : "NORMAL"}`);
      const pageSize = Object.values(db.query("PRAGMA page_size").get() as Record<string, number>)[0]!;
      db.run("PRAGMA wal_autocheckpoint = 0"); // the Checkpointer's Worker runs them
      return new SqliteStore(db, path, hooks, durability, pageSize);
    } catch (e) {
      db?.close();
      if (e instanceof PersistenceError) throw e;
      throw new PersistenceError(`cannot use the persistence file ${path}: ${(e as Error).message}`);
    }
  }

  // ---- the transaction of the turn -------------------------------------------------------

  /** True while changes wait for the commit. */
  get pending(): boolean {
    return this.inTransaction || this.gathered.size > 0;
  }

  /** Opens the turn's transaction (and schedules its end) unless it is open; false when the store cannot write. */
  private begin(): boolean {
    if (this.failure !== null || this.closed) return false;
    if (this.inTransaction) return true;
    try {
      this.s.begin.run();
    } catch (e) {
      this.fail(e);
      return false;
    }
    this.inTransaction = true;
    this.schedule();
    return true;
  }

  /** Makes sure the turn ends with a commit. */
  private schedule(): void {
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.endTurn);
    }
  }

  /** Runs one statement of the turn's transaction. */
  private write(stmt: Statement, ...params: (string | number | null | Uint8Array)[]): void {
    if (!this.begin()) return;
    try {
      stmt.run(...params);
      this.rowsInTransaction++;
    } catch (e) {
      this.fail(e);
    }
  }

  /** @internal a journal has message changes for the commit; false when the store cannot write. */
  gather(journal: SqliteSessionJournal): boolean {
    if (this.failure !== null || this.closed) return false;
    this.gathered.add(journal);
    this.schedule();
    return true;
  }

  /** Commits the turn's transaction, if one is open, with the message changes gathered in it. */
  commit(): boolean {
    if (this.failure !== null) return false;
    if (!this.inTransaction && this.gathered.size === 0) return true;
    const began = performance.now();
    try {
      if (!this.inTransaction) {
        this.s.begin.run();
        this.inTransaction = true;
      }
      for (const j of this.gathered) this.rowsInTransaction += j.flush(this);
      this.gathered.clear();
      this.s.commit.run();
    } catch (e) {
      this.fail(e);
      return false;
    }
    this.inTransaction = false;
    this.checkpointer?.committed();
    this.hooks.timed?.((performance.now() - began) / 1000);
    this.stats.transactions++;
    this.stats.rows += this.rowsInTransaction;
    this.rowsInTransaction = 0;
    return true;
  }

  /** Copies what the Worker's checkpoint left in the WAL (the commits made while it ran), so that the next commit restarts the WAL. */
  private finishCheckpoint(): void {
    this.restartWanted = false;
    try {
      this.db.run("PRAGMA wal_checkpoint(PASSIVE)");
    } catch {
      // tried again when the WAL is reported that large again
    }
    this.checkpointer?.hold(false);
  }

  /** Checkpoints in the commits, on this thread, as SQLite does by default. */
  private autocheckpoint(): void {
    this.db.run(`PRAGMA wal_autocheckpoint = ${Math.max(1, Math.round(CHECKPOINT_BYTES / this.pageSize))}`);
  }

  private fail(e: unknown): void {
    if (this.failure !== null) return;
    this.failure = new PersistenceError(`writing the persistence file ${this.path} failed: ${(e as Error).message}`);
    this.gathered.clear();
    if (this.inTransaction) {
      try {
        this.s.rollback.run();
      } catch {
        // the transaction is gone already
      }
      this.inTransaction = false;
    }
    this.hooks.failed(this.failure);
  }

  /** Commits what is pending and closes the file. */
  close(): void {
    if (this.closed) return;
    this.commit();
    this.closed = true;
    this.checkpointer?.close(); // no checkpoint running: this connection is the last, and merges and removes the WAL as it closes
    // finalized first: bun:sqlite leaves a database with live statements open (and its WAL unmerged)
    for (const st of Object.values(this.s).flatMap((v: Statement | Statement[] | Map<number, Statement>) => (v instanceof Map ? [...v.values()] : v))) st.finalize();
    this.db.close();
  }

  // ---- changes ---------------------------------------------------------------------------

  private bytes(m: Message): Uint8Array {
    if (m.expiresAt === 0) return encodeMessage(m); // the form cached on the message
    let b = this.encoded.get(m);
    if (b === undefined) {
      b = encodeMessage(m);
      this.encoded.set(m, b);
    }
    return b;
  }


  /** Starts journaling a session; see DurableStore.attach. */
  attach(session: Session, restored: boolean): SessionJournal {
    const counters = this.recoveredCounters.get(session.clientId);
    this.recoveredCounters.delete(session.clientId);
    if (!restored) this.sessionEnded(session.clientId);
    const journal = new SqliteSessionJournal(this, session.clientId, restored && counters !== undefined ? counters : noCounters());
    this.journals.set(session.clientId, journal);
    if (restored) return journal;
    // a session that starts being kept: nothing of an earlier one stayed (above), then its row and what it holds
    this.saveSession(session, 0);
    for (const [key, held] of session.subscriptions) journal.subscribed(key, held.entry);
    for (const m of session.inflight.values()) {
      journal.inflightAdded(m);
      if (m.released) journal.inflightReleased(m.packetId);
    }
    for (const q of session.queuedMessages()) journal.enqueued(q);
    for (const id of session.incomingQos2) journal.incomingAdded(id);
    return journal;
  }

  saveSession(session: Session, disconnectedAt: number): void {
    this.write(this.s.saveSession, session.clientId, session.expiryInterval, session.protocolVersion, session.username, disconnectedAt);
  }

  sessionEnded(clientId: string): void {
    const journal = this.journals.get(clientId);
    if (journal !== undefined) {
      this.journals.delete(clientId);
      this.gathered.delete(journal); // its gathered deletions go with everything else of it
    }
    for (const stmt of this.s.deleteSession) this.write(stmt, clientId);
  }

  willPending(clientId: string, message: Message, dueAt: number): void {
    this.write(this.s.saveWill, clientId, this.bytes(message), dueAt);
  }

  willDone(clientId: string): void {
    this.write(this.s.deleteWill, clientId);
  }

  retained(topic: string, message: Message | null): void {
    if (message === null) this.write(this.s.deleteRetained, topic);
    else this.write(this.s.saveRetained, topic, this.bytes(message), message.expiresAt); // a retained message: RETAIN is set
  }

  /** @internal the statements of one session's changes (SqliteSessionJournal). */
  subscribe(clientId: string, key: string, e: SubscriptionEntry): void {
    this.write(this.s.subscribe, clientId, key, e.filter, e.qos, e.noLocal ? 1 : 0, e.retainAsPublished ? 1 : 0, e.retainHandling, e.subscriptionId ?? null, e.shareName);
  }
  /** @internal */
  unsubscribe(clientId: string, key: string): void {
    this.write(this.s.unsubscribe, clientId, key);
  }
  /** @internal the statements that write one journal's net message changes at the commit. */
  get statements(): Statements {
    return this.s;
  }
  /** @internal */
  publishBytes(m: Message): Uint8Array {
    return this.bytes(m);
  }
  /** @internal */
  addIncoming(clientId: string, packetId: number): void {
    this.write(this.s.addIncoming, clientId, packetId);
  }
  /** @internal */
  removeIncoming(clientId: string, packetId: number): void {
    this.write(this.s.removeIncoming, clientId, packetId);
  }
  /** @internal */
  clear(clientId: string): void {
    this.write(this.s.clearMessages, clientId);
    this.write(this.s.clearIncoming, clientId);
  }

  // ---- recovery --------------------------------------------------------------------------

  /** Everything the file holds; expired sessions and retained messages are deleted instead. */
  recover(now: number): Recovered {
    const all = <T>(sql: string) => this.db.query(sql).all() as T[];
    const at = (what: string) => `${this.path}: ${what}`;
    const retained: Message[] = [];
    for (const r of all<{ topic: string; publish: Uint8Array; expires_at: number }>("SELECT topic, publish, expires_at FROM retained")) {
      if (r.expires_at !== 0 && r.expires_at <= now) this.retained(r.topic, null);
      else retained.push(decodeMessage(r.publish, r.expires_at, at(`the retained message on '${r.topic}'`)));
    }
    const sessions = new Map<string, RecoveredSession>();
    type SessionRow = { client_id: string; expiry_interval: number; protocol_version: 4 | 5; username: string | null; disconnected_at: number };
    for (const r of all<SessionRow>("SELECT * FROM session")) {
      const offlineSince = r.disconnected_at === 0 ? now : r.disconnected_at; // online when the broker stopped: offline from now
      if (r.expiry_interval !== NEVER && offlineSince + r.expiry_interval * 1000 <= now) {
        this.sessionEnded(r.client_id); // expired while the broker was down
        continue;
      }
      sessions.set(r.client_id, {
        clientId: r.client_id, expiryInterval: r.expiry_interval, protocolVersion: r.protocol_version, username: r.username,
        disconnectedAt: r.disconnected_at, subscriptions: [], queue: [], inflight: [], incomingQos2: [],
      });
      this.recoveredCounters.set(r.client_id, noCounters());
    }
    type SubRow = { client_id: string; key: string; filter: string; qos: QoS; no_local: number; retain_as_published: number; retain_handling: 0 | 1 | 2; subscription_id: number | null; share_name: string | null };
    for (const r of all<SubRow>("SELECT * FROM subscription")) {
      sessions.get(r.client_id)?.subscriptions.push({
        key: r.key, filter: r.filter, qos: r.qos, noLocal: r.no_local === 1, retainAsPublished: r.retain_as_published === 1,
        retainHandling: r.retain_handling, subscriptionId: r.subscription_id ?? undefined, shareName: r.share_name,
      } satisfies StoredSubscription);
    }
    type MessageRow = { client_id: string; seq: number; packet_id: number; released: number; qos: QoS; retain: number; subscription_ids: string | null; publish: Uint8Array; expires_at: number };
    for (const r of all<MessageRow>("SELECT * FROM message ORDER BY client_id, seq")) {
      const s = sessions.get(r.client_id);
      if (s === undefined) continue;
      const c = this.recoveredCounters.get(r.client_id)!;
      c.tail = r.seq + 1;
      if (r.packet_id === 0) {
        c.queued.push(r.seq);
        s.queue.push({ message: decodeMessage(r.publish, r.expires_at, at(`a message queued for '${r.client_id}'`)), qos: r.qos, retain: r.retain === 1, subscriptionIds: idsFrom(r.subscription_ids) });
      } else {
        c.inflight.set(r.packet_id, r.seq);
        s.inflight.push({
          packetId: r.packet_id, message: decodeMessage(r.publish, r.expires_at, at(`a message in flight to '${r.client_id}'`)), qos: r.qos, retain: r.retain === 1,
          subscriptionIds: idsFrom(r.subscription_ids), released: r.released === 1, held: false,
        });
      }
    }
    for (const r of all<{ client_id: string; packet_id: number }>("SELECT * FROM incoming_qos2")) sessions.get(r.client_id)?.incomingQos2.push(r.packet_id);
    const wills = all<{ client_id: string; publish: Uint8Array; due_at: number }>("SELECT * FROM will").map((r) => ({
      clientId: r.client_id, message: decodeMessage(r.publish, 0, at(`the will of '${r.client_id}'`)), dueAt: r.due_at,
    }));
    return { retained, sessions: [...sessions.values()], wills };
  }
}

/** A message row changed in the open transaction: its net change, written at the commit. */
interface RowChange {
  /** Not in the file yet: inserted whole at the commit (else only packet_id and released are updated). */
  fresh: boolean;
  message: Message;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[] | null;
  /** 0 while queued. */
  packetId: number;
  released: boolean;
}

/**
 * The journal of one session: its subscriptions and incoming identifiers as statements of the
 * store's transaction, its messages as net row changes written at the commit (see the top).
 */
class SqliteSessionJournal implements SessionJournal {
  /** The next sequence number to give. */
  private tail: number;
  /** Sequence numbers of the queued messages, oldest first, from `qHead`. */
  private queued: number[];
  private qHead = 0;
  /** Sequence number of each in-flight message, by packet identifier. */
  private readonly inflight: Map<number, number>;
  /** The message last taken from the queue and its row, until it is sent (else it was dropped). */
  private taken: Message | null = null;
  private takenSeq = -1;
  /** Rows changed in the open transaction, by sequence number. */
  private changes = new Map<number, RowChange>();
  /** Rows in the file deleted in the open transaction. */
  private deleted: number[] = [];

  constructor(
    private readonly store: SqliteStore,
    private readonly clientId: string,
    counters: Counters,
  ) {
    this.tail = counters.tail;
    this.queued = counters.queued;
    this.inflight = counters.inflight;
  }

  subscribed(key: string, entry: SubscriptionEntry): void {
    this.store.subscribe(this.clientId, key, entry);
  }
  unsubscribed(key: string): void {
    this.store.unsubscribe(this.clientId, key);
  }
  enqueued(q: QueuedMessage): void {
    if (!this.store.gather(this)) return;
    const seq = this.tail++;
    this.queued.push(seq);
    this.changes.set(seq, { fresh: true, message: q.message, qos: q.qos, retain: q.retain, subscriptionIds: q.subscriptionIds, packetId: 0, released: false });
  }
  dequeued(q: QueuedMessage): void {
    if (!this.store.gather(this)) return;
    if (this.taken !== null) this.remove(this.takenSeq); // taken before and not sent: dropped (expired)
    this.takenSeq = this.queued[this.qHead++]!;
    this.taken = q.message;
    if (this.qHead === this.queued.length) {
      this.queued = [];
      this.qHead = 0;
    } else if (this.qHead > 1024 && this.qHead * 2 > this.queued.length) {
      this.queued = this.queued.slice(this.qHead);
      this.qHead = 0;
    }
  }
  inflightAdded(m: InflightMessage): void {
    if (!this.store.gather(this)) return;
    let seq: number;
    if (this.taken === m.message) {
      seq = this.takenSeq; // sent from the queue: its row gets the packet identifier
      this.taken = null;
    } else {
      if (this.taken !== null) {
        this.remove(this.takenSeq);
        this.taken = null;
      }
      seq = this.tail++; // sent at once: a row of its own
      this.changes.set(seq, { fresh: true, message: m.message, qos: m.qos, retain: m.retain, subscriptionIds: m.subscriptionIds, packetId: m.packetId, released: m.released });
    }
    this.inflight.set(m.packetId, seq);
    const c = this.changes.get(seq);
    if (c === undefined) this.changes.set(seq, { fresh: false, message: m.message, qos: m.qos, retain: m.retain, subscriptionIds: m.subscriptionIds, packetId: m.packetId, released: m.released });
    else {
      c.packetId = m.packetId;
      c.released = m.released;
    }
  }
  inflightReleased(packetId: number): void {
    const seq = this.inflight.get(packetId);
    if (seq === undefined || !this.store.gather(this)) return;
    const c = this.changes.get(seq);
    if (c !== undefined) c.released = true;
    else this.changes.set(seq, { fresh: false, message: NO_MESSAGE, qos: 0, retain: false, subscriptionIds: null, packetId, released: true });
  }
  inflightRemoved(packetId: number): void {
    const seq = this.inflight.get(packetId);
    if (seq === undefined || !this.store.gather(this)) return;
    this.inflight.delete(packetId);
    this.remove(seq);
  }
  incomingAdded(packetId: number): void {
    this.store.addIncoming(this.clientId, packetId);
  }
  incomingRemoved(packetId: number): void {
    this.store.removeIncoming(this.clientId, packetId);
  }
  cleared(): void {
    this.queued = [];
    this.qHead = 0;
    this.inflight.clear();
    this.taken = null;
    this.changes.clear();
    this.deleted = [];
    this.store.clear(this.clientId);
  }

  /** A row goes: never written if it was added in this transaction, else deleted at the commit. */
  private remove(seq: number): void {
    const c = this.changes.get(seq);
    if (c !== undefined) this.changes.delete(seq);
    if (c === undefined || !c.fresh) this.deleted.push(seq);
  }

  /** Writes the net changes of the open transaction (the store's commit calls it); returns the rows written. */
  flush(store: SqliteStore): number {
    if (this.taken !== null) {
      this.remove(this.takenSeq);
      this.taken = null;
    }
    const s = store.statements;
    const id = this.clientId;
    let rows = 0;
    const deleted = this.deleted;
    if (deleted.length > 0) {
      deleted.sort((a, b) => a - b);
      for (let i = 0; i < deleted.length; ) {
        let j = i + 1;
        while (j < deleted.length && deleted[j] === deleted[j - 1]! + 1) j++;
        if (j - i === 1) s.deleteMessage.run(id, deleted[i]!); // a run of consecutive sequence numbers: one range
        else s.deleteMessages.run(id, deleted[i]!, deleted[j - 1]!);
        i = j;
      }
      rows += deleted.length;
      this.deleted = [];
    }
    if (this.changes.size === 0) return rows;
    const fresh: [number, RowChange][] = [];
    // rows sent from the queue in an earlier transaction's turn: one UPDATE per run of consecutive
    // sequence numbers that got consecutive packet identifiers (the queue's order is the send order)
    let first = -1;
    let last = -1;
    let firstId = 0;
    let released = false;
    const update = () => {
      if (first === last) s.sendMessage.run(firstId, released ? 1 : 0, id, first);
      else s.sendMessages.run(firstId, first, released ? 1 : 0, id, last);
    };
    for (const entry of this.changes) {
      const c = entry[1];
      if (c.fresh) {
        fresh.push(entry);
        continue;
      }
      const seq = entry[0];
      if (first >= 0 && seq === last + 1 && c.packetId === firstId + (seq - first) && c.released === released) {
        last = seq;
        continue;
      }
      if (first >= 0) update();
      first = last = seq;
      firstId = c.packetId;
      released = c.released;
    }
    if (first >= 0) update();
    rows += this.changes.size;
    this.changes = new Map();
    for (let i = 0; i < fresh.length; ) {
      const n = INSERT_BATCHES.find((b) => b <= fresh.length - i)!;
      const params: (string | number | null | Uint8Array)[] = new Array(1 + n * ROW_PARAMS);
      params[0] = id;
      for (let k = 0; k < n; k++) {
        const [seq, c] = fresh[i + k]!;
        const o = 1 + k * ROW_PARAMS;
        params[o] = seq;
        params[o + 1] = c.packetId;
        params[o + 2] = c.released ? 1 : 0;
        params[o + 3] = c.qos;
        params[o + 4] = c.retain ? 1 : 0;
        params[o + 5] = idsText(c.subscriptionIds);
        params[o + 6] = store.publishBytes(c.message);
        params[o + 7] = c.message.expiresAt;
      }
      s.insertMessages.get(n)!.run(...params);
      i += n;
    }
    return rows;
  }
}

// ---- the file's format -------------------------------------------------------------------------

/** Checks that the file is an undamaged mqtttools file (or empty), creating or migrating its tables. */
function prepareFile(db: Database, path: string): void {
  const pragma = (name: string) => Object.values(db.query(`PRAGMA ${name}`).get() as Record<string, unknown>)[0];
  let tables: string[];
  try {
    tables = (db.query("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
  } catch (e) {
    throw new PersistenceError(`the persistence file ${path} is not a SQLite database, or is damaged: ${(e as Error).message}`);
  }
  const check = (db.query("PRAGMA quick_check").all() as Record<string, string>[]).map((r) => Object.values(r)[0]);
  if (check.length !== 1 || check[0] !== "ok") throw new PersistenceError(`the persistence file ${path} is damaged: ${check.slice(0, 3).join("; ")}`);
  const appId = pragma("application_id") as number;
  const version = pragma("user_version") as number;
  if (tables.length === 0 && appId === 0) {
    db.run(`PRAGMA page_size = ${PAGE_SIZE}`); // before the first table: it is fixed from then on
    db.transaction(() => createSchema(db))();
    return;
  }
  if (appId === APPLICATION_ID) {
    if (version === FORMAT_TWO_TABLES && tables.includes("queued") && tables.includes("inflight")) {
      db.transaction(() => migrateFromTwoTables(db))();
      return;
    }
    if (version !== FORMAT) throw new PersistenceError(`the persistence file ${path} has format ${version}, this mqtttools reads format ${FORMAT}`);
    const missing = TABLES.filter((t) => !tables.includes(t));
    if (missing.length > 0) throw new PersistenceError(`the persistence file ${path} is damaged: table ${missing.join(", ")} is missing`);
    return;
  }
  const columns = (t: string) => (db.query(`PRAGMA table_info(${t})`).all() as { name: string }[]).map((c) => c.name).join(",");
  const previous =
    appId === 0 && version === 0 && tables.every((t) => t === "retained" || t === "sessions") &&
    (!tables.includes("retained") || columns("retained") === "topic,publish,expires_at") && (!tables.includes("sessions") || columns("sessions") === "client_id,state");
  if (!previous) throw new PersistenceError(`the persistence file ${path} is not an mqtttools persistence file (it holds the tables ${tables.join(", ")})`);
  db.transaction(() => migrateFromJson(db, path, tables.includes("sessions")))();
}

function createSchema(db: Database): void {
  for (const sql of SCHEMA) db.run(sql);
  db.run(`PRAGMA application_id = ${APPLICATION_ID}`);
  db.run(`PRAGMA user_version = ${FORMAT}`);
}

/**
 * Format 2 to 3: the rows of `queued` and `inflight` become rows of `message`, each session's
 * in-flight messages first in the order they were sent, then its queue, oldest first.
 */
function migrateFromTwoTables(db: Database): void {
  db.run(MESSAGE_TABLE);
  db.run(`INSERT INTO message (${MESSAGE_COLUMNS})
    SELECT client_id, row_number() OVER (PARTITION BY client_id ORDER BY seq) - 1, packet_id, released, qos, retain, subscription_ids, publish, expires_at FROM inflight`);
  db.run(`INSERT INTO message (${MESSAGE_COLUMNS})
    SELECT q.client_id, (SELECT count(*) FROM inflight i WHERE i.client_id = q.client_id) + row_number() OVER (PARTITION BY q.client_id ORDER BY q.seq) - 1, 0, 0, q.qos, q.retain, q.subscription_ids, q.publish, q.expires_at FROM queued q`);
  db.run("DROP TABLE queued");
  db.run("DROP TABLE inflight");
  db.run(`PRAGMA user_version = ${FORMAT}`);
}

/** A session of the previous format: one JSON document, messages as base64 PUBLISH packets. */
interface JsonSession {
  clientId: string;
  expiryInterval: number;
  protocolVersion: 4 | 5;
  username: string | null;
  savedAt: number;
  subscriptions: StoredSubscription[];
  queue: (Omit<QueuedMessage, "message"> & { message: { publish: string; expiresAt: number } })[];
  inflight: (Omit<InflightMessage, "message"> & { message: { publish: string; expiresAt: number } })[];
  incomingQos2: number[];
}

/** Moves the sessions of the previous format (JSON, one row each) into the tables of this one, losing nothing. */
function migrateFromJson(db: Database, path: string, hasSessions: boolean): void {
  createSchema(db);
  if (!hasSessions) return;
  const b64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
  for (const row of db.query("SELECT client_id, state FROM sessions").all() as { client_id: string; state: string }[]) {
    let s: JsonSession;
    try {
      s = JSON.parse(row.state);
    } catch (e) {
      throw new PersistenceError(`${path}: the session of '${row.client_id}' cannot be read: ${(e as Error).message}`);
    }
    const id = s.clientId;
    db.query("INSERT INTO session VALUES (?, ?, ?, ?, ?)").run(id, s.expiryInterval, s.protocolVersion, s.username, s.savedAt);
    for (const e of s.subscriptions) {
      db.query("INSERT OR REPLACE INTO subscription VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)").run(id, e.key, e.filter, e.qos, e.noLocal ? 1 : 0, e.retainAsPublished ? 1 : 0, e.retainHandling, e.subscriptionId ?? null, e.shareName);
    }
    const insert = db.query(`INSERT OR REPLACE INTO message (${MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    let seq = 0;
    for (const m of s.inflight) insert.run(id, seq++, m.packetId, m.released ? 1 : 0, m.qos, m.retain ? 1 : 0, idsText(m.subscriptionIds), b64(m.message.publish), m.message.expiresAt);
    for (const q of s.queue) insert.run(id, seq++, 0, 0, q.qos, q.retain ? 1 : 0, idsText(q.subscriptionIds), b64(q.message.publish), q.message.expiresAt);
    for (const packetId of s.incomingQos2) db.query("INSERT OR IGNORE INTO incoming_qos2 VALUES (?, ?)").run(id, packetId);
  }
  db.run("DROP TABLE sessions");
}
