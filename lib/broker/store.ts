/**
 * Retained messages kept on disk in SQLite (bun:sqlite), so that they survive a restart. Each
 * message is stored as the MQTT 5.0 PUBLISH that carries it, encoded and decoded by the codec, with
 * its expiry time beside it. Changes are gathered and written in one transaction every
 * `intervalMs` and on close, as Mosquitto's autosave does; a crash loses at most that interval.
 */
import { Database } from "bun:sqlite";
import { PacketType } from "../codec/constants";
import { decodePacket, encodePacket } from "../codec/packet";
import type { PublishPacket } from "../codec/packets/publish";
import { persist, type Message } from "./message";

/** A persistence file it cannot use. */
export class PersistenceError extends Error {
  override name = "PersistenceError";
}

/** The retained messages of one broker, in one SQLite file. */
export class RetainedStore {
  /** Changes not yet written: a message to keep, or null to delete, by topic. */
  private pending = new Map<string, Message | null>();
  private timer: Timer | null = null;

  private constructor(
    private readonly db: Database,
    private readonly path: string,
  ) {}

  /** Opens (or creates) the file; writes gathered changes every `intervalMs`. */
  static open(path: string, intervalMs: number): RetainedStore {
    let db: Database;
    try {
      db = new Database(path, { create: true, strict: true });
      db.run("PRAGMA journal_mode = WAL");
      db.run("CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, publish BLOB NOT NULL, expires_at INTEGER NOT NULL)");
    } catch (e) {
      throw new PersistenceError(`cannot use the persistence file ${path}: ${(e as Error).message}`);
    }
    const store = new RetainedStore(db, path);
    store.timer = setInterval(() => store.flush(), intervalMs);
    store.timer.unref();
    return store;
  }

  /** The stored messages that have not expired. */
  load(now = Date.now()): Message[] {
    const out: Message[] = [];
    const rows = this.db.query("SELECT topic, publish, expires_at FROM retained").all() as { topic: string; publish: Uint8Array; expires_at: number }[];
    for (const row of rows) {
      if (row.expires_at !== 0 && row.expires_at <= now) continue;
      let p: PublishPacket;
      try {
        p = decodePacket(row.publish, 5) as PublishPacket;
      } catch (e) {
        throw new PersistenceError(`${this.path}: the retained message on '${row.topic}' cannot be decoded: ${(e as Error).message}`);
      }
      out.push(persist({
        topic: row.topic,
        topicBytes: p.topic as Uint8Array,
        payload: p.payload,
        qos: p.qos,
        retain: true,
        properties: p.properties,
        expiresAt: row.expires_at,
        persisted: false,
        copy: null,
        forms: null,
      }));
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
        const publish = encodePacket({ type: PacketType.PUBLISH, dup: false, qos: m.qos, retain: true, topic: m.topicBytes, packetId: m.qos > 0 ? 1 : 0, properties: m.properties, payload: m.payload }, 5);
        upsert.run(topic, publish, m.expiresAt);
      }
    })();
  }

  /** Writes what is pending and closes the file. */
  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.flush();
    this.db.close();
  }
}
