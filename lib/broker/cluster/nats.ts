/**
 * The cluster engine on NATS: several brokers act as one.
 *
 * - Interest: a node subscribes to the subjects of the filters its clients hold (subject.ts), one
 *   NATS subscription per subject however many local subscriptions share it, dropped with the last
 *   one. NATS forwards a message only to servers and connections with interest, so a node without
 *   a matching subscriber receives nothing.
 * - Out: route() hands every message of a local client (and every will) to publish(): once, to the
 *   topic's subject, as the codec's PUBLISH encoding behind the origin node and a sequence number
 *   (envelope.ts). The connection is made with no_echo: a node never gets its own messages back;
 *   its own subscribers were served by route() already, without a round trip.
 * - In: NATS delivers one copy per matching subscription of a connection, and a node publishes
 *   again what it published in the 2 s before a lost connection; a copy with an origin and sequence
 *   seen lately is dropped, so a message reaches the
 *   router once and the router's rules (one delivery per client at the highest QoS, every
 *   subscription identifier, No Local) apply.
 * - Shared subscriptions are NATS queue groups, one per `$share/{name}/{filter}`, on a second
 *   connection (with echo, so the node's own messages reach its own members): NATS gives each
 *   message to exactly one member across all nodes, and that node to one local member. The KV
 *   traffic uses this second connection too, so the first carries only messages of interest.
 * - Retained messages live in the JetStream KV bucket `mqtt_retained_{name}`, one key per topic
 *   (history 1); an empty payload deletes the key; expiry is checked when read. A new subscription
 *   reads them only after its interest is in place (a flush), so a race yields a duplicate, not a loss.
 * - accepted() is a flush of the connection (the server has processed every message sent before
 *   it) and the KV writes still open: PUBACK waits for it (ack-gate.ts). Messages published while
 *   the connection is down wait in the client's buffer and are flushed once it is back; a flush
 *   that fails (the server died under it) fails the acknowledgements, whose clients then send again.
 * - The client reconnects forever and subscribes again; `connected` is the readiness state.
 */
import { hostname } from "node:os";
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import type { Message } from "../message";
import type { Session, SubscriptionEntry } from "../session";
import type { Cluster, ClusterHost, ClusterOptions } from "./cluster";
import { decodeEnvelope, decodeRetained, encodeEnvelope, encodeRetained } from "./envelope";
import { filterToKeys, filterToSubjects, topicToKey, topicToSubject } from "./subject";

/** How long published messages are kept to publish again after a lost connection. */
const REPLAY_MS = 2000;
/** At most this many of them. */
const REPLAY_MAX = 100_000;
/** Sequence numbers remembered per origin to route each message once. */
const RECENT_SEQS = 131_072;

/** The last `capacity` numbers added, for a membership test. */
class RecentSet {
  private readonly set = new Set<number>();
  private readonly ring: number[];
  private at = 0;

  constructor(capacity: number) {
    this.ring = new Array<number>(capacity);
  }

  /** Adds `n`; false when it was there already. */
  add(n: number): boolean {
    if (this.set.has(n)) return false;
    const old = this.ring[this.at];
    if (old !== undefined) this.set.delete(old);
    this.ring[this.at] = n;
    this.at = (this.at + 1) % this.ring.length;
    this.set.add(n);
    return true;
  }
}

/** A NATS subscription held for local interest, and how many local subscriptions need it. */
interface Held {
  count: number;
  subs: Subscription[];
}

/** The NATS cluster engine (see the top of this file). */
export class NatsCluster implements Cluster {
  private nc: NatsConnection | null = null;
  private groupsNc: NatsConnection | null = null;
  /** The retained bucket, opened in the background (JetStream may need a while, e.g. while a NATS cluster elects its leader). */
  private kv: Promise<KV> | null = null;
  private readonly prefix: string;
  /** This process's id in envelopes: random, so a restarted node is a new origin. */
  private readonly origin = Math.floor(Math.random() * 2 ** 48);
  private seq = 0;
  private readonly interest = new Map<string, Held>();
  private readonly groups = new Map<string, Subscription[]>();
  /** Sequence numbers seen lately from each origin: copies of one message, and messages sent again after a reconnect (REPLAY_MS), are routed once. */
  private readonly seen = new Map<number, RecentSet>();
  /** What this node published in the last REPLAY_MS, to publish again after a lost connection. */
  private readonly recent: { at: number; subject: string; data: Uint8Array }[] = [];
  private recentHead = 0;
  private readonly kvPending = new Set<Promise<unknown>>();
  /** Connections to NATS lost so far: a change while a message waits to be accepted means it may be lost. */
  private losses = 0;
  private up = false;
  private stopping = false;
  /** Resolved when the main connection is back (replaced at each disconnect). */
  private back = Promise.withResolvers<void>();

  constructor(
    private readonly options: ClusterOptions,
    private readonly host: ClusterHost,
  ) {
    this.prefix = `mqtt.${options.name}`;
  }

  get connected(): boolean {
    return this.up && this.nc !== null && !this.nc.isClosed();
  }

  async start(): Promise<void> {
    const o = this.options;
    const base: ConnectionOptions = {
      servers: o.servers,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      waitOnFirstConnect: true,
      noRandomize: true, // servers in the order given: a node can prefer the one nearest to it
      pingInterval: 10_000,
    };
    if (o.user !== undefined) Object.assign(base, { user: o.user, pass: o.pass });
    if (o.token !== undefined) base.token = o.token;
    if (o.credsFile !== undefined) base.authenticator = credsAuthenticator(new Uint8Array(await Bun.file(o.credsFile).arrayBuffer()));
    const who = `mqtttools ${o.name} ${hostname()}:${process.pid}`;
    this.nc = await connect({ ...base, name: who, noEcho: true });
    this.groupsNc = await connect({ ...base, name: `${who} groups and retained` });
    this.watch(this.nc, "");
    this.watch(this.groupsNc, " (shared subscriptions and retained messages)");
    this.kv = this.openBucket(this.groupsNc, `mqtt_retained_${o.name}`);
    this.kv.catch(() => {});
    this.up = true;
    this.host.log("info", `cluster '${o.name}': connected to ${this.nc.getServer()}`);
  }

  /** Opens (creating it if need be) the retained bucket, trying again until JetStream answers. */
  private async openBucket(nc: NatsConnection, bucket: string): Promise<KV> {
    for (let attempt = 1; ; attempt++) {
      try {
        const kv = await new Kvm(nc).create(bucket, { history: 1 });
        if (attempt > 1) this.host.log("warning", `cluster: the retained bucket ${bucket} is open`);
        return kv;
      } catch (e) {
        if (this.stopping) throw e;
        if (attempt === 1) this.host.log("warning", `cluster: cannot open the retained bucket ${bucket} yet (${(e as Error).message}); trying again`);
        await Bun.sleep(500);
      }
    }
  }

  /** Logs a connection's losses and returns; tracks readiness on the main one. */
  private watch(nc: NatsConnection, what: string): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") {
          if (nc === this.nc) this.losses++;
          if (nc === this.nc && this.up) {
            this.up = false;
            this.back = Promise.withResolvers<void>();
          }
          if (!this.stopping) this.host.log("warning", `cluster: disconnected from NATS ${s.server}${what}; reconnecting`);
        } else if (s.type === "reconnect") {
          if (nc === this.nc) {
            this.replay(nc);
            this.up = true;
            this.back.resolve();
          }
          this.host.log("warning", `cluster: reconnected to NATS ${s.server}${what}`);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.up = false;
    this.back.resolve();
    await Promise.allSettled([...this.kvPending]);
    await Promise.allSettled([this.nc?.drain(), this.groupsNc?.drain()]);
  }

  // ---- out -------------------------------------------------------------------------------

  publish(message: Message): void {
    const nc = this.nc;
    if (nc === null) return;
    const seq = ++this.seq;
    try {
      const now = Date.now();
      const subject = topicToSubject(this.prefix, message.topic);
      const data = encodeEnvelope(message, this.origin, seq, now);
      nc.publish(subject, data);
      this.remember(now, subject, data);
    } catch (e) {
      this.host.log("error", `cluster: cannot publish on '${message.topic}': ${(e as Error).message}`);
    }
  }

  /** Keeps a published message for REPLAY_MS (at most REPLAY_MAX of them). */
  private remember(now: number, subject: string, data: Uint8Array): void {
    const r = this.recent;
    r.push({ at: now, subject, data });
    while (this.recentHead < r.length && (r[this.recentHead]!.at < now - REPLAY_MS || r.length - this.recentHead > REPLAY_MAX)) this.recentHead++;
    if (this.recentHead > 1024 && this.recentHead * 2 > r.length) {
      r.splice(0, this.recentHead);
      this.recentHead = 0;
    }
  }

  /**
   * After a lost connection: publishes again what was published in the REPLAY_MS before. A server
   * that died may have taken messages it had acknowledged (a flush) before passing them over its
   * routes; receivers route each origin's sequence number once, so what did arrive is not
   * delivered twice.
   */
  private replay(nc: NatsConnection): void {
    const since = Date.now() - REPLAY_MS;
    let n = 0;
    for (let i = this.recentHead; i < this.recent.length; i++) {
      const m = this.recent[i]!;
      if (m.at < since) continue;
      nc.publish(m.subject, m.data);
      n++;
    }
    if (n > 0) this.host.log("info", `cluster: published ${n} recent message(s) again after the reconnect`);
  }

  retain(message: Message): void {
    if (this.kv === null) return;
    const key = topicToKey(message.topic);
    const value = message.payload.length === 0 ? null : encodeRetained(message, Date.now());
    const op = this.kv.then((kv): Promise<unknown> => (value === null ? kv.delete(key) : kv.put(key, value)));
    this.track(op, `cannot ${message.payload.length === 0 ? "clear" : "store"} the retained message on '${message.topic}'`);
  }

  /** Keeps a KV write until it is acknowledged (accepted() waits for it); logs a failure. */
  private track(op: Promise<unknown>, what: string): void {
    const p = op.catch((e: unknown) => {
      this.host.log("error", `cluster: ${what}: ${(e as Error).message}`);
      throw e;
    });
    this.kvPending.add(p);
    p.then(
      () => this.kvPending.delete(p),
      () => this.kvPending.delete(p),
    );
  }

  async accepted(): Promise<void> {
    const nc = this.nc;
    if (nc === null || this.stopping) throw new Error("not connected");
    const kv = [...this.kvPending];
    for (;;) {
      const losses = this.losses;
      // cut off from NATS when published: the client holds the messages in its buffer until it is back
      while (!this.up && !this.stopping) await this.back.promise;
      await nc.flush();
      // a connection lost meanwhile may have taken what was written to it: the reconnect published
      // the recent messages again (replay()), and this flush on the new connection confirms them
      if (this.losses === losses) break;
    }
    await Promise.all(kv);
  }


  // ---- in --------------------------------------------------------------------------------

  /** Reads a message from another node; null for a copy already routed, or what cannot be read. */
  private receive(data: Uint8Array, subject: string): Message | null {
    try {
      const { origin, seq, message } = decodeEnvelope(data);
      let seen = this.seen.get(origin);
      if (seen === undefined) this.seen.set(origin, (seen = new RecentSet(RECENT_SEQS)));
      if (!seen.add(seq)) return null;
      return message;
    } catch (e) {
      this.host.log("warning", `cluster: dropped what arrived on '${subject}': ${(e as Error).message}`);
      return null;
    }
  }

  subscribed(filter: string): void {
    const held = this.interest.get(filter);
    if (held !== undefined) {
      held.count++;
      return;
    }
    const nc = this.nc!;
    const subs = filterToSubjects(this.prefix, filter).map((subject) =>
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err !== null) return;
          const m = this.receive(msg.data, msg.subject);
          if (m !== null) this.host.routeRemote(m);
        },
      }),
    );
    this.interest.set(filter, { count: 1, subs });
  }

  unsubscribed(filter: string): void {
    const held = this.interest.get(filter);
    if (held === undefined) return;
    if (--held.count > 0) return;
    this.interest.delete(filter);
    for (const s of held.subs) s.unsubscribe();
  }

  groupAdded(key: string, shareName: string, filter: string): void {
    const nc = this.groupsNc!;
    const queue = Buffer.from(`${shareName}/${filter}`).toString("base64url"); // one queue group per MQTT group: share name and filter
    const subs = filterToSubjects(this.prefix, filter).map((subject) =>
      nc.subscribe(subject, {
        queue,
        callback: (err, msg) => {
          if (err !== null) return;
          try {
            this.host.deliverShared(key, decodeEnvelope(msg.data).message);
          } catch (e) {
            this.host.log("warning", `cluster: dropped what arrived on '${msg.subject}': ${(e as Error).message}`);
          }
        },
      }),
    );
    this.groups.get(key)?.forEach((s) => s.unsubscribe());
    this.groups.set(key, subs);
  }

  groupRemoved(key: string): void {
    this.groups.get(key)?.forEach((s) => s.unsubscribe());
    this.groups.delete(key);
  }

  sendRetained(session: Session, entry: SubscriptionEntry): void {
    void this.readRetained(entry.filter).then(
      (messages) => {
        if (messages.length > 0) this.host.deliverRetained(session, entry, messages);
      },
      (e: unknown) => this.host.log("error", `cluster: cannot read the retained messages for '${entry.filter}': ${(e as Error).message}`),
    );
  }

  /** The live retained messages a filter matches, read after the filter's interest reached the server. */
  private async readRetained(filter: string): Promise<Message[]> {
    await this.nc!.flush(); // subscribe first, then read
    const kv = await this.kv!;
    const entries: (KvEntry | null)[] = [];
    for (const k of filterToKeys(filter)) {
      if (!k.includes("*") && !k.includes(">")) entries.push(await kv.get(k));
      else {
        const keys: string[] = [];
        for await (const key of await kv.keys(k)) keys.push(key);
        entries.push(...(await Promise.all(keys.map((key) => kv.get(key)))));
      }
    }
    const now = Date.now();
    const messages: Message[] = [];
    for (const e of entries) {
      if (e === null || e.operation !== "PUT" || e.value.length === 0) continue;
      let m: Message;
      try {
        m = decodeRetained(e.value);
      } catch (err) {
        this.host.log("warning", `cluster: dropped the retained value of '${e.key}': ${(err as Error).message}`);
        continue;
      }
      if (m.expiresAt !== 0 && m.expiresAt <= now) {
        kv.delete(e.key, { previousSeq: e.revision }).catch(() => {}); // unless it was replaced meanwhile
        continue;
      }
      messages.push(m);
    }
    return messages;
  }
}
