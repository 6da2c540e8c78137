/**
 * Sessions across the cluster, on JetStream KV and NATS request/reply.
 *
 * - **The registry**, KV bucket `mqtt_sessions_{name}`: one record per client identifier that is
 *   connected or has a session anywhere: the node that holds it, whether it is connected, its
 *   expiry, subscriptions and will, and the message stream's position when it went offline.
 *   Every change is a compare-and-set on the record's revision, so two nodes racing for one client
 *   identifier never both win, and a stale owner never overwrites a newer state.
 * - **Claim, then hand over.** A node that accepts a CONNECT first makes the record its own (CAS),
 *   then asks the node named in the old record, on that node's subject `{prefix}.N.{node}`, for
 *   the session. That node closes its connection with DISCONNECT 0x8E and hands over the session's
 *   state from memory (handover.ts): subscriptions, queue, messages in flight both ways with their
 *   packet identifiers. The node serves the client only after that.
 * - **A node that is gone** does not answer (no responders). Its sessions are then rebuilt from
 *   the registry: the subscriptions, and as the queue the QoS 1/2 messages the message stream kept
 *   since the session went offline (or since the dead node's last note of the stream's position,
 *   for clients that were connected), at most maxQueuedMessages (the rest dropped and counted).
 * - **Liveness.** Each node writes a heartbeat to the bucket `mqtt_nodes_{name}` every
 *   HEARTBEAT_MS and watches the others'. A node silent for DEAD_MS is dead: the others scan the
 *   registry for its sessions, and one of them (CAS) takes each over as an orphan: it publishes the
 *   will after its delay and ends the session at its expiry, unless the client comes back first.
 */
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { topicMatches } from "../../topic/match";
import type { QoS } from "../../codec/constants";
import type { Message } from "../message";
import type { Session } from "../session";
import type { ClusterHost } from "./cluster";
import { longTimeout, type LongTimer } from "../timers";
import { SLICE_MS } from "../slices";
import { decodeEnvelope, decodeRetained, encodeRetained } from "./envelope";
import { encodeHanded, HandedAssembler, subscriptionsOf, type HandedMessage, type HandedSession, type HandedSubscription } from "./handover";

/** How often a node writes its heartbeat; one silent for DEAD_MS is taken for dead. */
export const HEARTBEAT_MS = 3000;
export const DEAD_MS = 10_000;
/** How long a node waits for another to hand a session over. */
const HANDOVER_TIMEOUT_MS = 5000;

/** How long a registry operation is tried again while JetStream does not answer. */
const STEADY_MS = 10_000;

/** True for a compare-and-set that lost (the record changed, or exists already). */
function isConflict(err: unknown): boolean {
  return /wrong last sequence|key exists|already exists/i.test((err as Error)?.message ?? "");
}

/** A session's record in the registry. */
export interface SessionRecord {
  /** The node that holds it (its origin id, base 36). */
  node: string;
  connected: boolean;
  expiry: number;
  proto: 4 | 5;
  username: string | null;
  subs: HandedSubscription[];
  /** Offline: the message stream's last sequence number when it went offline; everything after it may be for it. */
  seq: number;
  /** Offline: since when (ms since the epoch); 0 while connected. */
  offlineAt: number;
  /** Its will (retained form, base64) and Will Delay Interval; null for none. */
  will: { data: string; delayMs: number } | null;
  /** Offline with a will pending: when it is due (ms since the epoch). */
  willDueAt: number;
}

/** What the cluster engine lends the sessions part. */
export interface SessionsEngine {
  readonly prefix: string;
  readonly nodeId: string;
  readonly host: ClusterHost;
  readonly stopping: boolean;
  replicas(nc: NatsConnection): number;
  /** The stream's last sequence number as noted shortly before now (0 when not known). */
  position(): number;
  /** See NatsCluster.readStream. */
  readStream(from: number, each: (seq: number, subject: string, data: Uint8Array) => boolean): Promise<number>;
  /** Publishes a marker and returns its sequence number: everything published before it is before it. */
  mark(): Promise<number>;
  /** Where in the stream a message this node routed may start (a sequence number at or before its own), if known. */
  stampOf(m: Message): number | undefined;
  /** Notes that a message read from the stream has sequence number `seq`. */
  stamp(m: Message, seq: number): void;
}

/** What a node's heartbeat says and when it was seen (this clock). */
interface NodeInfo {
  seenAt: number;
  /** The stream's position shortly before the beat: what its connected clients may not have yet starts after it... */
  seq: number;
  /** ...or, for a client with messages it had not acknowledged before that, after this (by client identifier). */
  behind: Record<string, number>;
}

/** Clients a heartbeat names in `behind` at most; the rest of those behind lower its `seq`. */
const BEHIND_MAX = 1000;

/** Where the stream holds what a client of a node that died may not have yet (see NodeInfo). */
function resumeFrom(info: NodeInfo, clientId: string): number {
  const behind = info.behind[clientId];
  return behind !== undefined && behind < info.seq ? behind : info.seq;
}

/** An orphan this node took over from a dead one: its will and expiry timers. */
interface Orphan {
  timers: LongTimer[];
  will: Message | null;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The registry key of a client identifier (KV keys allow [-/_=.A-Za-z0-9]). */
function keyOf(clientId: string): string {
  return "c." + (clientId === "" ? "=" : Buffer.from(clientId).toString("base64url"));
}

function parse(e: KvEntry | null): SessionRecord | null {
  if (e === null || e.operation !== "PUT" || e.value.length === 0) return null;
  try {
    return JSON.parse(dec.decode(e.value)) as SessionRecord;
  } catch {
    return null;
  }
}

function willOf(will: { message: Message; delayMs: number } | null): SessionRecord["will"] {
  return will === null ? null : { data: Buffer.from(encodeRetained(will.message, Date.now())).toString("base64"), delayMs: will.delayMs };
}

/** The sessions part of the NATS cluster engine (see the top of this file). */
export class NatsSessions {
  private kv!: KV;
  private nodesKv!: KV;
  private inbox: Subscription | null = null;
  /** The revision of each record this node wrote last. */
  private readonly revisions = new Map<string, number>();
  /**
   * The last of each client's registry operations (claims and writes), which run one after
   * another in the order they were asked for. One queue for both: a write asked for while a claim
   * is queued (an abandoned connection's, say) waits behind that claim instead of the claim
   * waiting for it, which waited for the claim.
   */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Claims going on, by client identifier: a handover request for one waits for it. */
  private readonly claims = new Map<string, Promise<unknown>>();
  private readonly orphans = new Map<string, Orphan>();
  /** Other nodes: when their heartbeat was last seen (this clock), and their note of the stream's position. */
  private readonly nodes = new Map<string, NodeInfo>();
  private timer: ReturnType<typeof setInterval> | null = null;
  /** False while this node's own heartbeats fail. */
  private beating = true;

  constructor(
    private readonly engine: SessionsEngine,
    private readonly nc: NatsConnection,
    private readonly name: string,
  ) {}

  /** Opens the buckets (trying again until JetStream answers), answers handover requests, starts the heartbeat. */
  async start(): Promise<void> {
    const e = this.engine;
    for (let attempt = 1; ; attempt++) {
      try {
        const kvm = new Kvm(this.nc);
        this.kv = await kvm.create(`mqtt_sessions_${this.name}`, { history: 1, replicas: e.replicas(this.nc) });
        // no TTL: a dead node's last heartbeat stays until a node has taken its sessions over (and
        // deletes it), so a node started later (a whole cluster restarted, a one-node cluster)
        // still finds the dead node, and where in the stream its clients' messages start
        this.nodesKv = await kvm.create(`mqtt_nodes_${this.name}`, { history: 1, replicas: e.replicas(this.nc) });
        await this.keepHeartbeats();
        break;
      } catch (err) {
        if (e.stopping) throw err;
        if (attempt === 1) e.host.log("warning", `cluster: cannot open the session registry yet (${(err as Error).message}); trying again`);
        await Bun.sleep(500);
      }
    }
    this.inbox = this.nc.subscribe(`${e.prefix}.N.${e.nodeId}`, { callback: (err, msg) => void (err === null && this.answer(msg)) });
    await this.nc.flush();
    void this.watchNodes();
    await this.beat();
    this.timer = setInterval(() => {
      void this.beat();
      this.findDead();
    }, HEARTBEAT_MS);
    this.timer.unref();
  }

  /** A bucket made by an earlier version kept heartbeats for 60 s only (create() leaves an existing bucket as it is): it keeps them now. */
  private async keepHeartbeats(): Promise<void> {
    const jsm = await jetstreamManager(this.nc);
    const stream = `KV_mqtt_nodes_${this.name}`;
    const { config } = await jsm.streams.info(stream);
    if (config.max_age !== 0) await jsm.streams.update(stream, { ...config, max_age: 0 });
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.inbox?.unsubscribe();
    for (const o of this.orphans.values()) o.timers.forEach((t) => t.clear());
    this.orphans.clear();
  }

  // ---- claim and handover ----------------------------------------------------------------

  /**
   * Makes the record of `clientId` this node's, then takes the session from the node that held
   * it. Resolves with the state to resume (null: none, or one this node holds itself).
   */
  claim(clientId: string, cleanStart: boolean): Promise<HandedSession | null> {
    const p = this.enqueue(clientId, () => this.doClaim(clientId, cleanStart));
    this.claims.set(clientId, p);
    void p.finally(() => {
      if (this.claims.get(clientId) === p) this.claims.delete(clientId);
    }).catch(() => {});
    return p;
  }

  /** Runs `op` after the client's registry operations asked for before it. */
  private enqueue<T>(clientId: string, op: () => Promise<T>): Promise<T> {
    const p = (this.queues.get(clientId) ?? Promise.resolve()).catch(() => {}).then(op);
    this.queues.set(clientId, p);
    void p.finally(() => {
      if (this.queues.get(clientId) === p) this.queues.delete(clientId);
    }).catch(() => {});
    return p;
  }

  private async doClaim(clientId: string, cleanStart: boolean): Promise<HandedSession | null> {
    const e = this.engine;
    const key = keyOf(clientId);
    const fresh: SessionRecord = { node: e.nodeId, connected: true, expiry: 0, proto: 5, username: null, subs: [], seq: 0, offlineAt: 0, will: null, willDueAt: 0 };
    // most client identifiers have no record: try to make one first (one round trip)
    try {
      this.revisions.set(clientId, await this.steady(() => this.kv.create(key, enc.encode(JSON.stringify(fresh)))));
      return null;
    } catch (err) {
      if (!isConflict(err)) throw err;
      // there is one: take it over below
    }
    for (let attempt = 1; attempt <= 50; attempt++) {
      const entry = await this.steady(() => this.kv.get(key));
      const rec = parse(entry);
      const mine: SessionRecord = rec === null ? fresh : { ...rec, node: e.nodeId, connected: true, offlineAt: 0 };
      let rev: number;
      try {
        rev = await this.steady(() => (entry === null || rec === null ? this.kv.create(key, enc.encode(JSON.stringify(mine))) : this.kv.update(key, enc.encode(JSON.stringify(mine)), entry.revision)));
      } catch (err) {
        if (!isConflict(err)) throw err;
        continue; // another node changed it meanwhile: read it again
      }
      this.revisions.set(clientId, rev);
      if (rec === null) return null;
      if (rec.node === e.nodeId) {
        // held here (the local rules apply), or an orphan this node took over from a dead one
        if (!this.takeOrphan(clientId, cleanStart) || cleanStart) return null;
        return await this.rebuild(clientId, rec, rec.seq);
      }
      const answer = await this.ask(rec.node, clientId, cleanStart);
      if (typeof answer !== "string") return cleanStart ? null : answer;
      if (answer === "none") return null;
      // the node that held it is gone ("gone"), or took it over from a dead one ("orphan")
      const holder = this.nodes.get(rec.node);
      if (answer === "gone") {
        this.nodes.delete(rec.node);
        const will = rec.will;
        if (will !== null && rec.connected && (will.delayMs === 0 || cleanStart)) e.host.publishWill(decodeRetained(Buffer.from(will.data, "base64")));
        else if (will !== null && !rec.connected && rec.willDueAt !== 0 && (rec.willDueAt <= Date.now() || cleanStart)) e.host.publishWill(decodeRetained(Buffer.from(will.data, "base64")));
      }
      if (cleanStart) return null;
      if (!rec.connected && rec.expiry !== 0xffffffff && rec.offlineAt + rec.expiry * 1000 <= Date.now()) return null; // expired meanwhile
      if (rec.connected && rec.expiry === 0) return null;
      const from = rec.connected ? (holder === undefined ? rec.seq : resumeFrom(holder, clientId)) : rec.seq;
      return await this.rebuild(clientId, rec, from);
    }
    throw new Error(`cannot claim the session of '${clientId}': its record keeps changing`);
  }

  /** Runs a registry operation, trying again for up to STEADY_MS while JetStream is not answering (a NATS server restarting, a leader being elected); a conflict is thrown at once. */
  private async steady<T>(op: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + STEADY_MS;
    for (;;) {
      try {
        return await op();
      } catch (err) {
        if (isConflict(err) || Date.now() > deadline || this.engine.stopping) throw err;
        await Bun.sleep(250);
      }
    }
  }

  /** Asks `node` to hand over a session: the state, "none" (it holds none), "orphan" (rebuild it from the record) or "gone" (nobody answers). */
  private async ask(node: string, clientId: string, cleanStart: boolean): Promise<HandedSession | "none" | "orphan" | "gone"> {
    const inbox = createInbox();
    const assembler = new HandedAssembler();
    const done = Promise.withResolvers<HandedSession | "none" | "orphan" | "gone">();
    const sub = this.nc.subscribe(inbox, {
      callback: (err, msg) => {
        if (err !== null) return done.resolve("gone");
        if (msg.headers?.code === 503) return done.resolve("gone"); // no responders: the node is gone
        if (msg.data.length === 0) return done.resolve("none");
        if (msg.data.length === 1) return done.resolve("orphan");
        try {
          const s = assembler.add(msg.data);
          if (s === null) return;
          // stamped where the giver had them: if this node dies before they are acknowledged, the taker reads them again
          for (const m of s.queue) if (m.stamp !== undefined) this.engine.stamp(m.message, m.stamp);
          for (const m of s.inflight) if (m.stamp !== undefined) this.engine.stamp(m.message, m.stamp);
          done.resolve(s);
        } catch (e) {
          done.reject(e);
        }
      },
    });
    const timer = setTimeout(() => done.resolve("gone"), HANDOVER_TIMEOUT_MS);
    try {
      this.nc.publish(`${this.engine.prefix}.N.${node}`, enc.encode(JSON.stringify({ clientId, cleanStart })), { reply: inbox });
      return await done.promise;
    } finally {
      clearTimeout(timer);
      sub.unsubscribe();
    }
  }

  /** Answers a handover request: closes the client's connection here (0x8E) and sends its session. */
  private async answer(msg: Msg): Promise<void> {
    let req: { clientId: string; cleanStart: boolean };
    try {
      req = JSON.parse(dec.decode(msg.data));
    } catch {
      return;
    }
    await this.claims.get(req.clientId)?.catch(() => {}); // a claim of its own finishes first
    if (this.takeOrphan(req.clientId, req.cleanStart)) {
      msg.respond(new Uint8Array(1));
      return;
    }
    const handed = this.engine.host.handOver(req.clientId, req.cleanStart);
    this.revisions.delete(req.clientId);
    if (handed === null) {
      msg.respond(new Uint8Array(0));
      return;
    }
    for (const m of handed.queue) m.stamp = this.engine.stampOf(m.message);
    for (const m of handed.inflight) m.stamp = this.engine.stampOf(m.message);
    for (const chunk of encodeHanded(handed, Date.now())) msg.respond(chunk);
  }

  /** Its client is back: an orphan's timers stop, and its will goes if a clean start ends the session; false when it is none. */
  private takeOrphan(clientId: string, cleanStart: boolean): boolean {
    const orphan = this.orphans.get(clientId);
    if (orphan === undefined) return false;
    this.orphans.delete(clientId);
    orphan.timers.forEach((t) => t.clear());
    if (cleanStart && orphan.will !== null) this.engine.host.publishWill(orphan.will); // the session ends [MQTT-3.1.2-8]
    return true;
  }

  /** A session rebuilt from its record: subscriptions, and as its queue what the stream kept for it since `from`. */
  private async rebuild(clientId: string, rec: SessionRecord, from: number): Promise<HandedSession> {
    const { maxQueuedMessages, maxQueuedBytes } = this.engine.host.queueBounds();
    const queue: HandedMessage[] = [];
    let bytes = 0;
    let dropped = 0;
    const seen = new Set<string>();
    const plain = rec.subs.filter((s) => s.shareName === null);
    await this.engine.readStream(from, (seq, subject, data) => {
      const r = subject.charCodeAt(this.engine.prefix.length + 1);
      if (r !== 0x54 && r !== 0x53) return true; // a marker
      let env;
      try {
        env = decodeEnvelope(data);
      } catch {
        return true;
      }
      const id = `${env.origin}:${env.seq}`;
      if (seen.has(id)) return true; // published again after a lost connection
      seen.add(id);
      const m = env.message;
      let qos = -1;
      let retain = false;
      const ids: number[] = [];
      for (const s of plain) {
        if (!topicMatches(s.filter, m.topic)) continue;
        if (s.qos > qos) qos = s.qos;
        if (s.retainAsPublished) retain = m.retain;
        if (s.subscriptionId !== undefined) ids.push(s.subscriptionId);
      }
      if (qos < 0) return true;
      const cost = m.payload.length + m.topic.length;
      if (queue.length >= maxQueuedMessages || bytes + cost > maxQueuedBytes) {
        dropped++;
        return true;
      }
      bytes += cost;
      this.engine.stamp(m, seq);
      queue.push({ message: m, qos: Math.min(qos, m.qos) as QoS, retain, subscriptionIds: ids.length > 0 ? ids : null });
      return true;
    });
    return { clientId, protocolVersion: rec.proto, username: rec.username, expiryInterval: rec.expiry, subscriptions: rec.subs, queue, inflight: [], incomingQos2: [], dropped };
  }

  // ---- the record ------------------------------------------------------------------------

  /** Runs `change` on the record of `clientId` after the operations before it, with the revision this node wrote last. */
  private write(clientId: string, change: (key: string, rev: number) => Promise<number | null>): void {
    void this.enqueue(clientId, async () => {
      const rev = this.revisions.get(clientId);
      if (rev === undefined) return; // no longer ours
      try {
        const next = await this.steady(() => change(keyOf(clientId), rev));
        if (next === null) this.revisions.delete(clientId);
        else this.revisions.set(clientId, next);
      } catch {
        this.revisions.delete(clientId); // another node has it now
      }
    });
  }

  /** Records a connected session: its subscriptions, expiry and will. */
  connected(session: Session, will: { message: Message; delayMs: number } | null): void {
    // a session that ends with its connection and has no will: the claim's record says it all
    if (session.expiryInterval === 0 && will === null && session.subscriptions.size === 0) return;
    const rec: SessionRecord = { node: this.engine.nodeId, connected: true, expiry: session.expiryInterval, proto: session.protocolVersion, username: session.username, subs: subscriptionsOf(session), seq: 0, offlineAt: 0, will: willOf(will), willDueAt: 0 };
    this.write(session.clientId, (key, rev) => this.kv.update(key, enc.encode(JSON.stringify(rec)), rev));
  }

  /** Records a session's subscriptions anew (after SUBSCRIBE or UNSUBSCRIBE), once per event-loop turn. */
  private changed = new Set<Session>();
  subscriptionsChanged(session: Session): void {
    if (!this.revisions.has(session.clientId) || session.expiryInterval === 0) return;
    if (this.changed.size === 0) queueMicrotask(() => this.writeChanged());
    this.changed.add(session);
  }

  private writeChanged(): void {
    const sessions = [...this.changed];
    this.changed.clear();
    for (const session of sessions) {
      const subs = subscriptionsOf(session);
      this.write(session.clientId, async (key, rev) => {
        const rec = parse(await this.kv.get(key));
        if (rec === null || rec.node !== this.engine.nodeId) throw new Error("not ours");
        return this.kv.update(key, enc.encode(JSON.stringify({ ...rec, subs })), rev);
      });
    }
  }

  /** Records a session gone offline, with the stream's position from which messages are for it, and its will pending until `willDueAt`. */
  offline(session: Session, will: Message | null, delayMs: number, willDueAt: number): void {
    const now = Date.now();
    const subs = subscriptionsOf(session);
    const unacknowledged = session.oldestUnacknowledged(this.engine.stampOf); // still here: a node taking it over after this one died reads them again
    this.write(session.clientId, async (key, rev) => {
      const seq = Math.min(await this.engine.mark().catch(() => this.engine.position()), unacknowledged);
      const rec: SessionRecord = { node: this.engine.nodeId, connected: false, expiry: session.expiryInterval, proto: session.protocolVersion, username: session.username, subs, seq, offlineAt: now, will: will === null ? null : willOf({ message: will, delayMs }), willDueAt };
      return this.kv.update(key, enc.encode(JSON.stringify(rec)), rev);
    });
  }

  /** Removes the record of a session that ended here. */
  ended(clientId: string): void {
    this.write(clientId, async (key, rev) => {
      await this.kv.delete(key, { previousSeq: rev });
      return null;
    });
  }

  // ---- liveness --------------------------------------------------------------------------

  /**
   * What a heartbeat says of this node's connected clients: the stream's position shortly before
   * now, after which what they may not have yet starts, and the clients with messages they have
   * not acknowledged from before that, with where theirs start (see NatsCluster.stamps). The
   * sessions are gone through in slices of SLICE_MS, the event loop serving everyone else in
   * between: with 100 000 of them one pass would hold it for several ms every beat.
   */
  private async behind(): Promise<{ seq: number; behind: Record<string, number> }> {
    let seq = this.engine.position();
    const behind: Record<string, number> = {};
    let named = 0;
    let deadline = performance.now() + SLICE_MS;
    let n = 0;
    for (const session of this.engine.host.sessions()) {
      if ((++n & 255) === 0 && performance.now() > deadline) {
        await new Promise<void>((resolve) => setImmediate(resolve)); // a Map's iterator goes on over what changed meanwhile
        deadline = performance.now() + SLICE_MS;
      }
      if (!session.connected || session.expiryInterval === 0) continue; // the session ends with the node
      const oldest = session.oldestUnacknowledged(this.engine.stampOf);
      if (oldest >= seq) continue;
      if (named < BEHIND_MAX) {
        behind[session.clientId] = oldest;
        named++;
      } else seq = oldest; // lower for all: still at or before each one's own
    }
    return { seq, behind };
  }

  private async beat(): Promise<void> {
    try {
      const state = await this.behind();
      await this.nodesKv.put(this.engine.nodeId, enc.encode(JSON.stringify({ at: Date.now(), ...state })));
      if (!this.beating) {
        // back after our own heartbeats failed: the others' silence meanwhile may be ours, so
        // everybody gets DEAD_MS from now
        const now = Date.now();
        for (const info of this.nodes.values()) info.seenAt = now;
        this.beating = true;
      }
    } catch {
      this.beating = false; // cut off from JetStream: nobody is taken for dead until our beats go through again
    }
  }

  private async watchNodes(): Promise<void> {
    for (;;) {
      try {
        const w = await this.nodesKv.watch();
        for await (const e of w) {
          if (e.key === this.engine.nodeId || e.operation !== "PUT") continue;
          try {
            const { seq, behind } = JSON.parse(dec.decode(e.value)) as { seq: number; behind?: Record<string, number> };
            this.nodes.set(e.key, { seenAt: Date.now(), seq, behind: behind ?? {} });
          } catch {
            // not a heartbeat
          }
        }
      } catch {
        // the watch ended with the connection: watch again
      }
      if (this.engine.stopping) return;
      await Bun.sleep(500);
    }
  }

  /** Takes over the sessions of nodes silent for DEAD_MS. */
  private findDead(): void {
    if (!this.beating) return;
    const now = Date.now();
    for (const [node, info] of this.nodes) {
      if (now - info.seenAt < DEAD_MS) continue;
      this.nodes.delete(node);
      void this.adoptOrphans(node, info).catch((e: unknown) => this.engine.host.log("error", `cluster: cannot take over the sessions of node ${node}: ${(e as Error).message}`));
    }
  }

  /** Makes the sessions of a dead node orphans of this one: wills after their delay, expiry. */
  private async adoptOrphans(dead: string, info: NodeInfo): Promise<void> {
    // a last look: a heartbeat that came meanwhile (the watch may lag) means it lives
    const beat = await this.steady(() => this.nodesKv.get(dead));
    if (beat !== null && beat.operation === "PUT") {
      try {
        const { at } = JSON.parse(dec.decode(beat.value)) as { at: number };
        if (Date.now() - at < DEAD_MS) {
          this.nodes.set(dead, { ...info, seenAt: Date.now() });
          return;
        }
      } catch {
        // not a heartbeat: go on
      }
    }
    this.engine.host.log("warning", `cluster: node ${dead} is silent; taking over its sessions`);
    const keys: string[] = [];
    for await (const k of await this.kv.keys()) keys.push(k);
    let n = 0;
    for (const key of keys) {
      const entry = await this.kv.get(key);
      const rec = parse(entry);
      if (rec === null || rec.node !== dead) continue;
      const now = Date.now();
      const clientId = key === "c.=" ? "" : Buffer.from(key.slice(2), "base64url").toString();
      const will = rec.will === null ? null : decodeRetained(Buffer.from(rec.will.data, "base64"));
      if (rec.connected && rec.expiry === 0) {
        // a session that ended with its connection: the will now, the record goes
        try {
          await this.kv.delete(key, { previousSeq: entry!.revision });
        } catch {
          continue; // another node took it
        }
        if (will !== null) this.engine.host.publishWill(will);
        n++;
        continue;
      }
      const offlineAt = rec.connected ? now : rec.offlineAt;
      const willDueAt = rec.connected ? (will === null ? 0 : now + rec.will!.delayMs) : rec.willDueAt;
      const mine: SessionRecord = { ...rec, node: this.engine.nodeId, connected: false, offlineAt, seq: rec.connected ? resumeFrom(info, clientId) : rec.seq, willDueAt };
      let rev: number;
      try {
        rev = await this.kv.update(key, enc.encode(JSON.stringify(mine)), entry!.revision);
      } catch {
        continue; // another node took it, or its client came back
      }
      n++;
      this.revisions.set(clientId, rev);
      const orphan: Orphan = { timers: [], will: willDueAt === 0 ? null : will };
      this.orphans.set(clientId, orphan);
      const expiresAt = rec.expiry === 0xffffffff ? Infinity : offlineAt + rec.expiry * 1000;
      const fireWill = () => {
        if (this.orphans.get(clientId) !== orphan || orphan.will === null) return;
        const w = orphan.will;
        orphan.will = null;
        this.engine.host.publishWill(w);
        this.write(clientId, async (k, r) => this.kv.update(k, enc.encode(JSON.stringify({ ...mine, willDueAt: 0 })), r));
      };
      if (orphan.will !== null) orphan.timers.push(longTimeout(fireWill, Math.max(0, Math.min(willDueAt, expiresAt) - now)));
      if (expiresAt !== Infinity) {
        orphan.timers.push(
          longTimeout(() => {
            if (this.orphans.get(clientId) !== orphan) return;
            fireWill(); // a will still pending goes when the session ends [MQTT-3.1.2-8]
            this.orphans.delete(clientId);
            this.ended(clientId);
          }, Math.max(0, expiresAt - now)),
        );
      }
    }
    if (n > 0) this.engine.host.log("warning", `cluster: took over ${n} session(s) of node ${dead}`);
    // its sessions are taken: its last heartbeat can go, unless it beat again meanwhile
    if (beat !== null && beat.operation === "PUT") await this.nodesKv.delete(dead, { previousSeq: beat.revision }).catch(() => {});
  }
}
