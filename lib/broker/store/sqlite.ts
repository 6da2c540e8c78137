/**
 * Retained messages and sessions kept on disk in SQLite (bun:sqlite), so that they survive a
 * restart. Each message is stored as the MQTT 5.0 PUBLISH that carries it, encoded and decoded by
 * the codec, with its expiry time beside it.
 *
 * Retained-message changes are gathered and written in one transaction every `intervalMs` and on
 * close, as Mosquitto's autosave does; a crash loses at most that interval. Sessions that outlive
 * their connection (Session Expiry Interval > 0) are written when the broker stops: their
 * subscriptions, queued messages, unacknowledged messages in both directions, and the time left
 * before they expire.
 */
import { Database } from "bun:sqlite";
import { PacketType } from "../../codec/constants";
import { decodePacket, encodePacket } from "../../codec/packet";
import type { PublishPacket } from "../../codec/packets/publish";
import { persist, type Message } from "../message";
import type { InflightMessage, QueuedMessage, Session, SubscriptionEntry } from "../session";

/** A subscription as stored: the filter as subscribed (`$share/...` included) and its options. */
export type StoredSubscription = Omit<SubscriptionEntry, "session"> & { key: string };

/** A session as stored, with the time it was saved. */
export interface StoredSession {
  clientId: string;
  expiryInterval: number;
  protocolVersion: 4 | 5;
  username: string | null;
  savedAt: number;
  subscriptions: StoredSubscription[];
  queue: QueuedMessage[];
  inflight: InflightMessage[];
  incomingQos2: number[];
}

/** A message as stored inside a session's JSON: its PUBLISH in base64, and its expiry time. */
interface StoredMessage {
  publish: string;
  expiresAt: number;
}

/** A persistence file it cannot use. */
export class PersistenceError extends Error {
  override name = "PersistenceError";
}

/** The PUBLISH that carries a message (v5: every property), for storing. */
function encodeMessage(m: Message): Uint8Array {
  return encodePacket({ type: PacketType.PUBLISH, dup: false, qos: m.qos, retain: m.retain, topic: m.topicBytes, packetId: m.qos > 0 ? 1 : 0, properties: m.properties, payload: m.payload }, 5);
}

/** A message back from its stored PUBLISH; `what` names it in an error. */
function decodeMessage(bytes: Uint8Array, expiresAt: number, what: string): Message {
  let p: PublishPacket;
  try {
    p = decodePacket(bytes, 5) as PublishPacket;
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
    copy: null,
    forms: null,
  });
}

const toStored = (m: Message): StoredMessage => ({ publish: Buffer.from(encodeMessage(m)).toString("base64"), expiresAt: m.expiresAt });
const fromStored = (s: StoredMessage, what: string): Message => decodeMessage(new Uint8Array(Buffer.from(s.publish, "base64")), s.expiresAt, what);

/** The retained messages and sessions of one broker, in one SQLite file. */
export class Store {
  /** Changes not yet written: a message to keep, or null to delete, by topic. */
  private pending = new Map<string, Message | null>();
  private timers: Timer[] = [];

  private constructor(
    private readonly db: Database,
    private readonly path: string,
  ) {}

  /** Opens (or creates) the file; writes gathered changes every `intervalMs`. */
  static open(path: string, intervalMs: number): Store {
    let db: Database;
    try {
      db = new Database(path, { create: true, strict: true });
      db.run("PRAGMA journal_mode = WAL");
      db.run("CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, publish BLOB NOT NULL, expires_at INTEGER NOT NULL)");
      db.run("CREATE TABLE IF NOT EXISTS sessions (client_id TEXT PRIMARY KEY, state TEXT NOT NULL)");
    } catch (e) {
      throw new PersistenceError(`cannot use the persistence file ${path}: ${(e as Error).message}`);
    }
    const store = new Store(db, path);
    store.every(intervalMs, () => store.flush());
    return store;
  }

  /** Runs `work` every `ms` until close(), without keeping the process alive. */
  private every(ms: number, work: () => void): void {
    const timer = setInterval(work, ms);
    timer.unref();
    this.timers.push(timer);
  }

  /** Snapshots the sessions `sessions()` gives every `ms` (see saveSessions), until close(). */
  saveSessionsEvery(ms: number, sessions: () => Iterable<Session>): void {
    this.every(ms, () => this.saveSessions(sessions()));
  }

  /** The stored retained messages that have not expired. */
  loadRetained(now = Date.now()): Message[] {
    const out: Message[] = [];
    const rows = this.db.query("SELECT topic, publish, expires_at FROM retained").all() as { topic: string; publish: Uint8Array; expires_at: number }[];
    for (const row of rows) {
      if (row.expires_at !== 0 && row.expires_at <= now) continue;
      out.push(decodeMessage(row.publish, row.expires_at, `${this.path}: the retained message on '${row.topic}'`)); // stored with RETAIN set
    }
    return out;
  }

  /** Replaces the stored sessions with these (the ones that outlive their connection). */
  saveSessions(sessions: Iterable<Session>, now = Date.now()): void {
    const insert = this.db.query("INSERT INTO sessions (client_id, state) VALUES (?, ?)");
    this.db.transaction(() => {
      this.db.run("DELETE FROM sessions");
      for (const s of sessions) {
        if (s.expiryInterval === 0) continue;
        const state = {
          clientId: s.clientId,
          expiryInterval: s.expiryInterval,
          protocolVersion: s.protocolVersion,
          username: s.username,
          savedAt: now,
          subscriptions: [...s.subscriptions].map(([key, { entry: e }]) => ({
            key, filter: e.filter, qos: e.qos, noLocal: e.noLocal, retainAsPublished: e.retainAsPublished,
            retainHandling: e.retainHandling, subscriptionId: e.subscriptionId, shareName: e.shareName,
          })),
          queue: s.queuedMessages().map((q) => ({ ...q, message: toStored(q.message) })),
          inflight: [...s.inflight.values()].map((m) => ({ ...m, message: toStored(m.message), held: false })),
          incomingQos2: [...s.incomingQos2],
        };
        insert.run(s.clientId, JSON.stringify(state));
      }
    })();
  }

  /** The stored sessions that have not expired. */
  loadSessions(now = Date.now()): StoredSession[] {
    const out: StoredSession[] = [];
    for (const row of this.db.query("SELECT client_id, state FROM sessions").all() as { client_id: string; state: string }[]) {
      const what = `${this.path}: the session of '${row.client_id}'`;
      type Stored<T> = Omit<T, "message"> & { message: StoredMessage };
      let s: Omit<StoredSession, "queue" | "inflight"> & { queue: Stored<QueuedMessage>[]; inflight: Stored<InflightMessage>[] };
      try {
        s = JSON.parse(row.state);
      } catch (e) {
        throw new PersistenceError(`${what} cannot be read: ${(e as Error).message}`);
      }
      if (s.expiryInterval !== 0xffffffff && s.savedAt + s.expiryInterval * 1000 <= now) continue;
      out.push({
        ...s,
        queue: s.queue.map((q) => ({ ...q, message: fromStored(q.message, what) })),
        inflight: s.inflight.map((m) => ({ ...m, message: fromStored(m.message, what) })),
      });
    }
    return out;
  }

  /** Records a retained message, or its removal (null), to be written with the next flush. */
  set(topic: string, m: Message | null): void {
    this.pending.set(topic, m);
  }

  /** Writes the gathered changes in one transaction. */
  flush(): void {
    if (this.pending.size === 0) return;
    const changes = this.pending;
    this.pending = new Map();
    const upsert = this.db.query("INSERT OR REPLACE INTO retained (topic, publish, expires_at) VALUES (?, ?, ?)");
    const remove = this.db.query("DELETE FROM retained WHERE topic = ?");
    this.db.transaction(() => {
      for (const [topic, m] of changes) {
        if (m === null) {
          remove.run(topic);
          continue;
        }
        upsert.run(topic, encodeMessage(m), m.expiresAt); // a retained message: RETAIN is set
      }
    })();
  }

  /** Writes what is pending and closes the file. */
  close(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.flush();
    this.db.close();
  }
}
