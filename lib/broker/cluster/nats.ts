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
import { DeliverPolicy, DiscardPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Message } from "../message";
import type { Session, SubscriptionEntry } from "../session";
import type { Cluster, ClusterHost, ClusterOptions } from "./cluster";
import { decodeEnvelope, decodeRetained, encodeEnvelope, encodeRetained } from "./envelope";
import type { HandedSession } from "./handover";
import { NatsSessions, type SessionsEngine } from "./nats-sessions";
import { filterToKeys, filterToSubjects, KEPT_ROOTS, topicToKey, topicToSubject } from "./subject";

/** How long published messages are kept to publish again after a lost connection. */
const REPLAY_MS = 2000;
/** At most this many of them. */
const REPLAY_MAX = 100_000;
/** Sequence numbers remembered per origin to route each message once. */
const RECENT_SEQS = 131_072;
/** How long the message stream keeps a QoS 1/2 message, and how many bytes it keeps at most (the oldest go first). */
const STREAM_MAX_AGE_MS = 24 * 3600_000;
const STREAM_MAX_BYTES = 1024 ** 3;
/** How often a node with interest notes the stream's last sequence number (where a catch-up starts). */
const POSITION_MS = 1000;
/** How long a confirmation (a JetStream publish acknowledgement) may take before it is tried again. */
const CONFIRM_TIMEOUT_MS = 2000;
const EMPTY = new Uint8Array(0);
/** How often a catch-up asks the stream before it gives up (every 500 ms: 30 s). */
const CATCH_UP_ATTEMPTS = 60;
/** How long a catch-up reads on past its end marker, for messages that crossed other NATS servers. */
const TAIL_MS = 1000;
/** How long stopping waits for NATS (acknowledgements, the drain) before it closes anyway. */
const STOP_MS = 2000;
/** A catch-up before the stream's position was ever noted starts this long before the loss, by the clock. */
const LOST_MARGIN_MS = 2000;

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

/**
 * The message stream's handles. Markers are published on the main connection (`js`, in order with
 * the messages they confirm), and a catch-up after a lost main connection reads there too (the
 * second one may still be reconnecting). The notes of the stream's position use the second one
 * (`sideJsm`), so that in ordinary times the main connection carries only messages and their
 * confirmations.
 */
interface Stream {
  js: JetStreamClient;
  jsm: JetStreamManager;
  sideJsm: JetStreamManager;
}

/** A NATS subscription held for local interest, and how many local subscriptions need it. */
interface Held {
  count: number;
  subs: Subscription[];
}

/** The NATS cluster engine (see the top of this file). */
export class NatsCluster implements Cluster, SessionsEngine {
  private sessions: NatsSessions | null = null;
  /** Resolves once the session registry is open (claims wait for it). */
  private sessionsReady: Promise<NatsSessions> | null = null;
  private nc: NatsConnection | null = null;
  private groupsNc: NatsConnection | null = null;
  /** The retained bucket, opened in the background (JetStream may need a while, e.g. while a NATS cluster elects its leader). */
  private kv: Promise<KV> | null = null;
  readonly prefix: string;
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
  /** The JetStream message stream `mqtt_msgs_{name}`, open once its promise resolves (opened in the background like the bucket). */
  private stream: Promise<Stream> | null = null;
  private readonly streamName: string;
  /** QoS 1/2 messages published since the last confirmation started, to publish again if it fails; and the losses when the first was published. */
  private unconfirmed: { subject: string; data: Uint8Array }[] = [];
  private unconfirmedLosses = 0;
  private readonly confirming = new Set<Promise<void>>();
  /** Sequence numbers seen lately from each origin for QoS 1/2 messages (they have a counter of their own). */
  private readonly seenKept = new Map<number, RecentSet>();
  private keptSeq = 0;
  /**
   * Where in the message stream each QoS 1/2 message this node routed may start: a sequence number
   * at or before its own (its own when read from the stream, else the position when it came). The
   * heartbeat and a session's offline record say from there where the messages a client has not
   * acknowledged are, so a node that takes its session over reads them again.
   */
  private readonly stamps = new WeakMap<Message, number>();
  /** The stream's last sequence number at the last two notes: a catch-up starts after the older one. */
  private positions: [number, number] | null = null;
  private positionTimer: ReturnType<typeof setInterval> | null = null;
  /** When the main connection was last lost. */
  private lostAt = 0;
  /** During a catch-up, the live QoS 1/2 messages that arrive meanwhile, routed after it; null otherwise. */
  private held: [Uint8Array, string, number][] | null = null;
  private catchingUp: Promise<void> = Promise.resolve();
  /** Connections to NATS lost so far: a change while a message waits to be accepted means it may be lost. */
  private losses = 0;
  private up = false;
  stopping = false;
  /** Resolved when the main connection is back (replaced at each disconnect). */
  private back = Promise.withResolvers<void>();

  constructor(
    private readonly options: ClusterOptions,
    readonly host: ClusterHost,
  ) {
    this.prefix = `mqtt.${options.name}`;
    this.streamName = `mqtt_msgs_${options.name}`;
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
    this.stream = this.openStream(this.nc, this.groupsNc);
    this.stream.catch(() => {});
    const sessions = new NatsSessions(this, this.groupsNc, o.name);
    this.sessions = sessions;
    this.sessionsReady = sessions.start().then(() => sessions);
    this.sessionsReady.catch(() => {});
    this.positionTimer = setInterval(() => this.notePosition(), POSITION_MS);
    this.positionTimer.unref();
    this.up = true;
    // clients are served once sessions can be claimed and QoS 1/2 messages confirmed (JetStream
    // may take a while, e.g. while a new NATS cluster elects its leaders)
    await Promise.all([this.sessionsReady, this.stream]);
    this.host.log("info", `cluster '${o.name}': connected to ${this.nc.getServer()}`);
  }

  /** How many copies JetStream keeps: options.replicas, else as many servers as the NATS cluster has, at most 3. */
  replicas(nc: NatsConnection): number {
    if (this.options.replicas !== undefined) return this.options.replicas;
    const info = nc.info;
    return info?.cluster === undefined ? 1 : Math.min(3, Math.max(1, info.connect_urls?.length ?? 1));
  }

  /**
   * Opens (creating it if need be) the message stream, which keeps every QoS 1/2 message published
   * to the cluster (the upper-case roots): a confirmation waits for it, and a node that was cut off
   * reads what it missed from it. Tries again until JetStream answers.
   */
  private async openStream(nc: NatsConnection, side: NatsConnection): Promise<Stream> {
    for (let attempt = 1; ; attempt++) {
      try {
        const jsm = await jetstreamManager(side); // created there; a stream's creation is no hot path
        const subjects = [...KEPT_ROOTS.map((r) => `${this.prefix}.${r}.>`), `${this.prefix}.M.>`];
        const info = await jsm.streams.info(this.streamName).catch(() => null);
        const last =
          info !== null
            ? info.state.last_seq
            : (
                await jsm.streams.add({
                  name: this.streamName,
                  subjects,
                  max_age: STREAM_MAX_AGE_MS * 1e6,
                  max_bytes: STREAM_MAX_BYTES,
                  discard: DiscardPolicy.Old,
                  num_replicas: this.replicas(nc),
                  duplicate_window: 0,
                })
              ).state.last_seq;
        this.positions = [last, last];
        if (attempt > 1) this.host.log("warning", `cluster: the message stream ${this.streamName} is open`);
        return { js: jetstream(nc, { timeout: CONFIRM_TIMEOUT_MS }), jsm: await jetstreamManager(nc, { checkAPI: false }), sideJsm: jsm };
      } catch (e) {
        if (this.stopping) throw e;
        if (attempt === 1) this.host.log("warning", `cluster: cannot open the message stream ${this.streamName} yet (${(e as Error).message}); trying again (QoS 1 and 2 acknowledgements wait for it)`);
        await Bun.sleep(500);
      }
    }
  }

  /** Notes the stream's last sequence number (while connected), where a catch-up after a lost connection starts. */
  private notePosition(): void {
    const stream = this.stream;
    if (!this.up || this.positions === null || stream === null) return;
    const losses = this.losses;
    void stream
      .then(({ sideJsm }) => sideJsm.streams.info(this.streamName))
      .then(
        (info) => {
          // an answer to a question asked before a loss may count what this node missed since
          if (this.positions !== null && this.up && this.losses === losses) this.positions = [this.positions[1], info.state.last_seq];
        },
        () => {},
      );
  }

  /** Opens (creating it if need be) the retained bucket, trying again until JetStream answers. */
  private async openBucket(nc: NatsConnection, bucket: string): Promise<KV> {
    for (let attempt = 1; ; attempt++) {
      try {
        const kv = await new Kvm(nc).create(bucket, { history: 1, replicas: this.replicas(nc) });
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
            this.lostAt = Date.now();
            this.up = false;
            this.back = Promise.withResolvers<void>();
          }
          if (!this.stopping) this.host.log("warning", `cluster: disconnected from NATS ${s.server}${what}; reconnecting`);
        } else if (s.type === "reconnect") {
          if (nc === this.nc) {
            this.replay(nc);
            this.up = true;
            this.back.resolve();
            this.catchUp(this.positions?.[0] ?? new Date(this.lostAt - LOST_MARGIN_MS));
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
    if (this.positionTimer !== null) clearInterval(this.positionTimer);
    this.sessions?.stop();
    // bounded: with NATS gone (stopped at the same time, say) nothing would ever answer
    await settled([...this.kvPending, ...this.confirming, this.catchingUp], STOP_MS);
    await settled([this.nc, this.groupsNc].map((nc) => (nc === null || nc.isClosed() ? undefined : this.up ? nc.drain() : nc.close())), STOP_MS);
    await Promise.allSettled([this.nc?.close(), this.groupsNc?.close()]);
  }

  // ---- out -------------------------------------------------------------------------------

  publish(message: Message): void {
    const nc = this.nc;
    if (nc === null) return;
    const kept = message.qos > 0;
    const seq = kept ? ++this.keptSeq : ++this.seq;
    try {
      const now = Date.now();
      const subject = topicToSubject(this.prefix, message.topic, kept);
      const data = encodeEnvelope(message, this.origin, seq, now);
      nc.publish(subject, data);
      if (!kept) this.remember(now, subject, data);
      else {
        this.stamps.set(message, this.position());
        if (this.unconfirmed.length === 0) {
          this.unconfirmedLosses = this.losses;
          queueMicrotask(() => this.confirm()); // a will, say, is confirmed without anybody waiting for it
        }
        // published while cut off: it waits in the client's buffer and reaches a server that may
        // not have its streams back yet, so it is published again once a marker went through
        if (!this.up) this.unconfirmedLosses = -1;
        this.unconfirmed.push({ subject, data });
      }
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

  /**
   * Confirms the QoS 1/2 messages published since the last call: one JetStream publish of a marker
   * (an empty message on `{prefix}.M.{origin}`, which the stream keeps too) on the same connection.
   * The server handles one connection's messages in order and the stream stores them in order, so
   * the marker's acknowledgement means every message before it is stored. When the acknowledgement
   * does not come, or a connection was lost since the first of them was published (it may have
   * taken some), they are published again and a new marker is sent; receivers route each origin's
   * sequence number once.
   */
  private confirm(): void {
    if (this.unconfirmed.length === 0) return;
    const batch = this.unconfirmed;
    let losses = this.unconfirmedLosses;
    this.unconfirmed = [];
    const marker = this.markerSubject;
    const p = (async () => {
      for (let attempt = 1; ; attempt++) {
        while (!this.up && !this.stopping) await this.back.promise;
        if (this.stopping) throw new Error("the broker is stopping");
        const { js } = await this.stream!;
        let failed: Error | null = null;
        try {
          await js.publish(marker, EMPTY);
        } catch (e) {
          failed = e as Error;
        }
        if (failed === null && this.losses === losses) return;
        if (failed !== null && attempt === 1) this.host.log("warning", `cluster: JetStream did not confirm ${batch.length} message(s): ${failed.message}; publishing them again`);
        losses = this.losses;
        for (const m of batch) this.nc!.publish(m.subject, m.data);
      }
    })();
    this.confirming.add(p);
    p.then(
      () => this.confirming.delete(p),
      () => this.confirming.delete(p),
    );
  }

  async accepted(): Promise<void> {
    const nc = this.nc;
    if (nc === null || this.stopping) throw new Error("not connected");
    this.confirm();
    const kv = [...this.kvPending, ...this.confirming];
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
      if (origin === this.origin) return null; // read back from the stream by a catch-up
      const seenBy = message.qos > 0 ? this.seenKept : this.seen;
      let seen = seenBy.get(origin);
      if (seen === undefined) seenBy.set(origin, (seen = new RecentSet(RECENT_SEQS)));
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
          if (this.held !== null && subjectIsKept(this.prefix, msg.subject)) this.held.push([msg.data, msg.subject, this.position()]);
          else this.route(msg.data, msg.subject, this.position());
        },
      }),
    );
    this.interest.set(filter, { count: 1, subs });
  }

  /** Routes what arrived from another node, once; `stamp`: where in the stream it may start (see stamps). */
  private route(data: Uint8Array, subject: string, stamp: number): void {
    const m = this.receive(data, subject);
    if (m === null) return;
    if (m.qos > 0) this.stamps.set(m, stamp);
    this.host.routeRemote(m);
  }

  /** Where in the stream a message may start (see stamps); undefined for one this node never stamped. */
  readonly stampOf = (m: Message): number | undefined => this.stamps.get(m);

  /** Notes where in the stream a message read from it starts (a session rebuilt from the stream). */
  stamp(m: Message, seq: number): void {
    this.stamps.set(m, seq - 1);
  }

  /**
   * After a lost connection: reads from the message stream the QoS 1/2 messages published since
   * shortly before the loss (the older of the two last notes of the stream's position; before the
   * stream was open, LOST_MARGIN_MS before the loss by the clock) and routes
   * those not seen yet; live ones that arrive meanwhile wait and follow, so the order holds. Core
   * NATS is at-most-once: what was published while this node was cut off reached nobody here.
   */
  private catchUp(from: number | Date): void {
    this.catchingUp = this.catchingUp.then(async () => {
      if (this.stream === null || this.interest.size === 0 || this.stopping) return;
      this.held ??= [];
      try {
        for (let attempt = 1; ; attempt++) {
          try {
            const n = await this.readSince(from);
            if (n > 0) this.host.log("info", `cluster: read ${n} message(s) published while cut off from NATS back from the stream`);
            return;
          } catch (e) {
            // the stream may be electing a new leader after a NATS server died
            if (this.stopping || attempt === CATCH_UP_ATTEMPTS) throw e;
            await Bun.sleep(500);
          }
        }
      } catch (e) {
        this.host.log("error", `cluster: cannot read what was published while cut off from NATS: ${(e as Error).message}`);
      } finally {
        this.release();
      }
    });
  }

  /** Routes the live messages held during a catch-up, and holds no more. */
  private release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const [data, subject, stamp] of held) this.route(data, subject, stamp);
  }

  /**
   * Routes the QoS 1/2 messages the stream holds after sequence number `from`; returns how many.
   * Where it ends: a marker this node publishes once its subscriptions are in place (a flush).
   * A message the server handled before them went into the stream's queue before the marker, so
   * it comes before the marker's sequence number; one handled after them was delivered live. The
   * live ones held meanwhile are routed once the marker is reached. Messages that crossed other
   * NATS servers may take longer to be stored, so the stream is read on for TAIL_MS more.
   */
  private async readSince(from: number | Date): Promise<number> {
    const { js } = await this.stream!;
    await this.nc!.flush();
    const end = (await js.publish(this.markerSubject, EMPTY)).seq;
    let stopAt = Infinity;
    let n = 0;
    await this.readStream(from, (seq, subject, data) => {
      if (subjectIsKept(this.prefix, subject)) {
        n++;
        this.route(data, subject, seq - 1);
      }
      if (seq >= end && stopAt === Infinity) {
        this.release();
        stopAt = Date.now() + TAIL_MS;
      }
      return Date.now() < stopAt;
    });
    return n;
  }

  /** This node's id in the registry and on its subject `{prefix}.N.{id}`. */
  get nodeId(): string {
    return this.origin.toString(36);
  }

  position(): number {
    return this.positions?.[0] ?? 0;
  }

  async mark(): Promise<number> {
    const { js } = await this.stream!;
    return (await js.publish(this.markerSubject, EMPTY)).seq;
  }

  // ---- sessions (nats-sessions.ts) -------------------------------------------------------------

  async claimSession(clientId: string, cleanStart: boolean): Promise<HandedSession | null> {
    return (await this.sessionsReady!).claim(clientId, cleanStart);
  }

  sessionConnected(session: Session, will: { message: Message; delayMs: number } | null): void {
    this.sessions?.connected(session, will);
  }

  subscriptionsChanged(session: Session): void {
    this.sessions?.subscriptionsChanged(session);
  }

  sessionOffline(session: Session, will: Message | null, delayMs: number, willDueAt: number): void {
    this.sessions?.offline(session, will, delayMs, willDueAt);
  }

  sessionEnded(clientId: string): void {
    this.sessions?.ended(clientId);
  }

  /** This node's marker subject (see confirm()). */
  get markerSubject(): string {
    return `${this.prefix}.M.${this.origin.toString(36)}`;
  }

  /**
   * Reads the message stream from after sequence number `from` (or from a time), handing each
   * message to `each` until it returns false or the stream has no more now; returns the last
   * sequence number read (or `from`).
   */
  async readStream(from: number | Date, each: (seq: number, subject: string, data: Uint8Array) => boolean): Promise<number> {
    const { js, jsm } = await this.stream!;
    const { state } = await jsm.streams.info(this.streamName);
    let last = typeof from === "number" ? from : 0;
    if (state.messages === 0 || (typeof from === "number" && from >= state.last_seq)) return last;
    const consumer = await js.consumers.get(
      this.streamName,
      typeof from === "number"
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(from + 1, state.first_seq) }
        : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.toISOString() },
    );
    const messages = await consumer.consume({ max_messages: 1000 });
    let idle = 0;
    const watchdog = setInterval(() => {
      // what was there may be gone meanwhile (the stream's limits): stop when nothing comes for a while
      if (++idle >= 5) void messages.close();
    }, 250);
    try {
      for await (const m of messages) {
        idle = 0;
        last = m.seq;
        if (!each(m.seq, m.subject, m.data) || m.info.pending === 0) break;
      }
    } finally {
      clearInterval(watchdog);
      void messages.close();
    }
    return last;
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

/** Waits until every promise settled, or `ms` passed. */
async function settled(promises: (Promise<unknown> | undefined)[], ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([Promise.allSettled(promises), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** True for a subject of the message stream's (QoS 1/2) roots. */
function subjectIsKept(prefix: string, subject: string): boolean {
  const r = subject.charCodeAt(prefix.length + 1);
  return r === 0x54 /* T */ || r === 0x53; /* S */
}

