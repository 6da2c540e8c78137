/**
 * The broker: listeners and lifecycle, the session table, and the publish path.
 *
 * The publish path is: the router (router.ts) matches the topic and merges a client's overlapping
 * subscriptions into one delivery, then hands it to the outbox (outbox.ts), which appends an
 * encoded form of the message to the subscriber's output buffer or queues it; the touched
 * connections are flushed once when the current event handler returns. Messages are copied only
 * when they must outlive the received frame.
 */
import { PacketType, type QoS } from "../codec/constants";
import { NO_PROPERTIES } from "../codec/properties";
import { ReasonCode } from "../codec/reason-codes";
import type { Packet } from "../codec/packet";
import { describePacket } from "../codec/describe";
import { Access, loadAccessRules, type AccessRules } from "./acl";
import { Authenticator } from "./auth";
import type { DurableStore, PersistenceError, RecoveredSession, RecoveredWill, RecoveryReport } from "./store/journal";
import { sysMessage, sysValues } from "./observe/sys";
import { newCounters, type BrokerCounters } from "./observe/counters";
import { HttpEndpoint } from "./observe/http";
import { addSession, Histogram, newSessionTotals, renderMetrics, type SessionTotals } from "./observe/metrics";
import { readState, type DashboardState, type WebSocketState } from "./observe/state";
import pkg from "../../package.json" with { type: "json" };
import { Connection, ConnState } from "./connection";
import { SLICE_MS } from "./slices";
import { persist, type Message } from "./message";
import { RetainedStore, retainedMessage, type RetainedVisit } from "./retained";
import { Outbox } from "./outbox";
import { DEFAULT_OPTIONS, normalizeAddresses, type Addresses, type BrokerOptions, type Listener } from "./options";
import { Router, type Matches } from "./router";
import type { Cluster, ClusterHost } from "./cluster/cluster";
import { AckGate } from "./cluster/ack-gate";
import { handedFrom, type HandedSession } from "./cluster/handover";
import { longTimeout, type LongTimer } from "./timers";
import { Session, type SubscriptionEntry } from "./session";
import { Overload } from "./overload/overload";
import { TcpListener } from "./transport/tcp";
import { WsListener } from "./transport/ws";
import type { Transport } from "./transport/transport";

/** Log levels, most verbose first. */
export type LogLevel = "debug" | "info" | "warning" | "error";
const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warning: 2, error: 3 };

const SWEEP_MS = 250;

export { SLICE_MS } from "./slices";

/** Options accepted by the constructor: any subset of the limits, plus a log level. */
export type BrokerInit = Partial<BrokerOptions> & { logLevel?: LogLevel; logger?: (line: string) => void };

/** An MQTT 5.0 / 3.1.1 broker on Bun.listen (TCP, TLS) and Bun.serve (WebSocket). */
export class Broker {
  readonly options: BrokerOptions;
  readonly listeners: Listener[];
  readonly sessions = new Map<string, Session>();
  readonly connections = new Set<Connection>();
  /** Connected clients by identifier. */
  readonly clients = new Map<string, Connection>();
  /** Who gets a message: the trie, the match cache and route(). */
  readonly router: Router;
  /** The retained messages, in a topic trie (retained.ts). */
  readonly retained = new RetainedStore((topic) => {
    if (topic.charCodeAt(0) !== 0x24) this.store?.retained(topic, null); // expired: not $SYS, never stored
  });
  /** Delivery to sessions: sending, queues, in-flight windows. */
  readonly outbox: Outbox;

  private servers: (TcpListener | WsListener)[] = [];
  /** Overload protection: descriptor bound and watch, connection rate, memory pressure (lib/broker/overload/). */
  readonly overload: Overload;
  /** The cluster engine (options.cluster), started in start(); null on a lone broker. */
  cluster: Cluster | null = null;
  /** With a cluster: PUBACK/PUBREC wait here until NATS accepted the message. */
  private ackGate: AckGate | null = null;
  /** Who may connect; loaded in start(). */
  private authenticator: Authenticator | null = null;
  /** Who may read and write what (aclFile); loaded in start(). */
  private acl: AccessRules | null = null;
  /** Durable state (persistenceFile), opened in start(); null: memory only. Output waits for its commits. */
  store: DurableStore | null = null;
  /** What start() restored from persistenceFile, null without one. */
  recovery: RecoveryReport | null = null;
  /** Where it is in its life: /readyz answers 200 only when "ready". */
  private phase: "stopped" | "starting" | "ready" | "stopping" = "stopped";
  private http: HttpEndpoint | null = null;
  /** The HTTP endpoint's bound port while started (options.http), else null. */
  httpPort: number | null = null;
  /** Durations of persistence commits, for /metrics; null without persistence. */
  commitSeconds: Histogram | null = null;
  /** Counters for `$SYS`. */
  readonly counters: BrokerCounters = newCounters();
  private sysTimer: Timer | null = null;
  private startedAt = 0;
  /** The `$SYS` values last published, by topic. */
  private sysPublished = new Map<string, string>();
  private dirty: Connection[] = [];
  private flushScheduled = false;
  private sweepTimer: Timer | null = null;
  private expiryTimers = new Map<Session, LongTimer>();
  /** Work going on in slices (see SLICE_MS): the next slice of each, cancelled by stop(). */
  private slices = new Set<ReturnType<typeof setImmediate>>();
  private willTimers = new Map<Session, { timer: LongTimer; message: Message }>();
  private stopped: PromiseWithResolvers<void> | null = null;
  private readonly logLevel: number;
  private readonly logger: (line: string) => void;
  /** Packet logging, checked before any work on the hot path: 0 none, 1 one compact line per packet (info), 2 every field (debug). */
  readonly packetLog: 0 | 1 | 2;

  constructor(addresses: Addresses = "localhost", options: BrokerInit = {}) {
    const { logLevel = "error", logger = (line: string) => console.error(line), ...limits } = options;
    this.options = { ...DEFAULT_OPTIONS, ...limits };
    this.listeners = normalizeAddresses(addresses);
    this.logLevel = LEVELS[logLevel];
    this.logger = logger;
    this.packetLog = logLevel === "debug" ? 2 : logLevel === "info" ? 1 : 0;
    this.overload = new Overload(this.options, (level, line) => this.log(level, line));
    this.outbox = new Outbox(this.clients, this.options, this.counters, this, this.overload);
    this.router = new Router(this.options, this.outbox, this, (m) => this.retain(m));
    this.overload.onRelieved = () => {
      this.outbox.memoryRelieved();
      this.flushAll();
    };
  }

  /** True while the broker is above maxMemoryBytes (until below its low-water mark): the hook for pausing publishers. */
  get memoryPressure(): boolean {
    return this.overload.memoryPressure;
  }

  /** Logs a packet sent to or received from a connection (callers check packetLog first). */
  logPacket(conn: Connection, direction: "Sent" | "Received", p: Packet): void {
    this.log(this.packetLog === 2 ? "debug" : "info", `${conn.describe()}: ${direction} ${describePacket(p, this.packetLog === 2)}`);
  }

  /** Writes a log line at `level` when the broker's level lets it through. */
  log(level: LogLevel, line: string): void {
    if (LEVELS[level] >= this.logLevel) this.logger(`${new Date().toISOString()} ${level}: ${line}`);
  }

  /** True when lines at `level` are written: check it before building a line that costs something. */
  logs(level: LogLevel): boolean {
    return LEVELS[level] >= this.logLevel;
  }

  /** Listens on every address; resolves with the bound ports, in address order. */
  async start(): Promise<number[]> {
    if (this.servers.length > 0) throw new Error("the broker is already started");
    this.phase = "starting";
    try {
      return await this.startUp();
    } catch (e) {
      this.stopHttp();
      this.phase = "stopped";
      throw e;
    }
  }

  private async startUp(): Promise<number[]> {
    const http = this.options.http;
    let sharedWs: WsListener | null = null;
    if (http !== null) {
      // a plain WebSocket listener on the endpoint's host and port is served by its Bun.serve
      const same = this.listeners.find((l) => l.websocket !== null && l.tls === undefined && l.host === http.host && l.port === http.port);
      if (same !== undefined) {
        const { maxConnectionRate, maxPacketSize, maxOutputBytes } = this.options;
        sharedWs = new WsListener(same, maxConnectionRate, maxPacketSize, maxOutputBytes, this, this.overload, { port: () => this.httpPort! });
      }
      // first, so that /readyz says "starting" during recovery
      this.http = new HttpEndpoint(http.host, http.port, {
        metrics: () => this.metricsInSlices(),
        notReady: () => (this.phase !== "ready" ? this.phase : this.clusterConnected === false ? "the cluster is not connected" : null),
        state: () => this.dashboardState(),
        authRequired: () => this.options.passwordFile !== null,
        authorize: (username, password) => (this.authenticator === null ? null : this.authenticator.check(username, password) === 0),
      }, sharedWs);
      this.httpPort = this.http.start();
      this.log("info", `HTTP endpoint on ${http.host}:${this.httpPort}${sharedWs === null ? "" : " (with the WebSocket listener)"}`);
    }
    if (this.options.cluster !== null && this.options.persistenceFile !== null) {
      throw new Error("persistenceFile is not used with cluster: in a cluster, sessions, QoS 1/2 and retained messages live in JetStream");
    }
    this.authenticator = await Authenticator.load(this.options.passwordFile, this.options.allowAnonymous);
    this.acl = this.options.aclFile === null ? null : await loadAccessRules(this.options.aclFile);
    if (this.options.cluster !== null) await this.joinCluster();
    if (this.options.persistenceFile !== null) await this.recover(this.options.persistenceFile);
    const ports: number[] = [];
    this.overload.start();
    try {
      for (const l of this.listeners) {
        const { maxConnectionRate, maxPacketSize, maxOutputBytes } = this.options;
        const server = sharedWs?.address === l ? sharedWs : l.websocket === null ? new TcpListener(l, maxConnectionRate, this, this.overload, this.cluster !== null) : new WsListener(l, maxConnectionRate, maxPacketSize, maxOutputBytes, this, this.overload);
        this.servers.push(server);
        ports.push(server.listen());
        this.log("info", `listening on ${server.describe()}${l.tls ? " (TLS)" : ""}`);
      }
    } catch (e) {
      this.overload.stop();
      for (const s of this.servers) s.close();
      this.servers = [];
      this.closeStore();
      void this.cluster?.stop();
      throw e;
    }
    this.overload.watch(this.servers);
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
    this.startedAt = Date.now();
    if (this.options.sysIntervalMs > 0) {
      this.publishSys();
      this.sysTimer = setInterval(() => this.publishSys(), this.options.sysIntervalMs);
      this.sysTimer.unref();
    }
    this.stopped = Promise.withResolvers<void>();
    this.stopped.promise.catch(() => {}); // a failed store rejects it: only serveForever() reports that
    this.phase = "ready";
    return ports;
  }

  /** The Prometheus exposition of this broker, read now. */
  metrics(): string {
    const totals = newSessionTotals();
    for (const session of this.sessions.values()) addSession(totals, session);
    return this.renderMetrics(totals);
  }

  /** The Prometheus exposition, its pass over the sessions done in slices (what /metrics serves). */
  metricsInSlices(): Promise<string> {
    const totals = newSessionTotals();
    const sessions = this.sessions.values();
    const done = Promise.withResolvers<string>();
    this.inSlices(() => {
      for (let n = 0, r = sessions.next(); !r.done; r = sessions.next()) {
        addSession(totals, r.value);
        if (++n % 1024 === 0) return false;
      }
      done.resolve(this.renderMetrics(totals));
      return true;
    });
    return done.promise;
  }

  private renderMetrics(sessions: SessionTotals): string {
    return renderMetrics({
      version: pkg.version,
      counters: this.counters,
      connections: this.connections,
      sessions,
      subscriptions: { normal: this.router.normalCount, shared: this.router.sharedCount },
      retained: { count: this.retained.size, bytes: this.retained.bytes },
      refused: this.overload.refusedCounts(),
      commitSeconds: this.commitSeconds,
      clusterConnected: this.clusterConnected,
    });
  }

  /** The dashboard's state (what /api/state serves), read now. */
  dashboardState(): DashboardState {
    const websockets: WebSocketState[] = [];
    for (const s of this.servers) {
      if (!(s instanceof WsListener)) continue;
      const shared = s.port === this.httpPort && s.address.tls === undefined && s.address.host === this.options.http?.host;
      const entry = { port: s.port, path: s.address.websocket!.path, tls: s.address.tls !== undefined, shared };
      if (shared) websockets.unshift(entry);
      else websockets.push(entry);
    }
    return readState({
      version: pkg.version,
      startedAt: this.startedAt,
      counters: this.counters,
      clients: this.clients.values(),
      clientCount: this.clients.size,
      sessions: this.sessions.values(),
      retained: this.retained.size,
      websockets,
    });
  }

  private stopHttp(): void {
    this.http?.stop();
    this.http = null;
    this.httpPort = null;
  }

  /** `await using broker = new Broker(...)` stops it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Starts (unless started), then waits until stop() is called. */
  async serveForever(): Promise<void> {
    if (this.servers.length === 0) await this.start();
    await this.stopped!.promise;
  }

  /** Disconnects every client (v5: DISCONNECT 0x8B), closes the listeners and clears timers. */
  async stop(): Promise<void> {
    this.phase = "stopping";
    // DISCONNECT first: stop(true) closes the listeners' sockets at once
    for (const conn of [...this.connections]) conn.close(ReasonCode.ServerShuttingDown, "the broker is shutting down");
    this.store?.commit();
    this.flushAll();
    this.overload.stop();
    for (const s of this.servers) s.close();
    this.servers = [];
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (this.sysTimer !== null) clearInterval(this.sysTimer);
    this.sysTimer = null;
    for (const t of this.slices) clearImmediate(t);
    this.slices.clear();
    for (const t of this.expiryTimers.values()) t.clear();
    this.expiryTimers.clear();
    for (const w of this.willTimers.values()) w.timer.clear();
    this.willTimers.clear();
    this.closeStore();
    await this.cluster?.stop();
    this.stopHttp();
    this.phase = "stopped";
    this.stopped?.resolve();
  }

  // ---- cluster ---------------------------------------------------------------------------

  /**
   * Joins the cluster (options.cluster): loads the NATS engine (only here, so a lone broker never
   * loads it), waits for a first NATS server, then makes it a destination of route() and the
   * receiver of the router's interest.
   */
  private async joinCluster(): Promise<void> {
    const { NatsCluster } = await import("./cluster/nats");
    const host: ClusterHost = {
      routeRemote: (m) => this.router.route(m, null, this.router.match(m.topic), true),
      deliverShared: (key, m) => this.router.deliverShared(key, m),
      deliverRetained: (session, entry, messages) => {
        this.deliverRetained(session, entry, messages);
        this.flushAll();
      },
      log: (level, line) => this.log(level, line),
      handOver: (clientId, cleanStart) => this.handOver(clientId, cleanStart),
      publishWill: (m) => this.publishWill(m),
      queueBounds: () => ({ maxQueuedMessages: this.options.maxQueuedMessages, maxQueuedBytes: this.options.maxQueuedBytes }),
      sessions: () => this.sessions.values(),
    };
    const cluster = new NatsCluster(this.options.cluster!, host);
    await cluster.start();
    this.cluster = cluster;
    this.ackGate = new AckGate(() => cluster.accepted(), () => this.flushAll());
    this.router.outbound = (m) => cluster.publish(m);
    this.router.interest = cluster;
  }

  /**
   * Another node takes over the session of `clientId` (see ClusterHost.handOver): its connection
   * here is closed with 0x8E, which handles the will as a takeover does (published at once with no
   * delay, else pending); a pending will is then published if the session ends (clean start) and
   * dropped if it goes on elsewhere [MQTT-3.1.3-9]. The session is forgotten here and returned.
   */
  private handOver(clientId: string, cleanStart: boolean): HandedSession | null {
    this.clients.get(clientId)?.close(ReasonCode.SessionTakenOver, "another node took over the session"); // [MQTT-3.1.4-3]
    const session = this.sessions.get(clientId);
    if (session === undefined) return null;
    const w = this.willTimers.get(session);
    const handed = cleanStart ? null : handedFrom(session);
    this.resumeSession(session); // its expiry and will timers go
    if (w !== undefined && cleanStart) this.publishWill(w.message); // the session ends [MQTT-3.1.2-8]
    this.forgetSession(session);
    this.flushAll();
    return handed;
  }

  /** A session handed over by another node, or rebuilt from the registry, made this node's (offline until its CONNECT finishes). */
  adoptSession(h: HandedSession): void {
    const old = this.sessions.get(h.clientId);
    if (old !== undefined) this.forgetSession(old);
    const session = this.recreateSession(h);
    for (const q of h.queue) session.enqueue({ message: q.message, qos: q.qos, retain: q.retain, subscriptionIds: q.subscriptionIds }, Infinity, Infinity);
    for (const m of h.inflight) session.addInflight({ packetId: m.packetId!, message: m.message, qos: m.qos, retain: m.retain, subscriptionIds: m.subscriptionIds, released: m.released === true, held: false });
    for (const id of h.incomingQos2) session.addIncomingQos2(id);
    if (h.dropped !== undefined && h.dropped > 0) {
      this.counters.dropped.queue_full += h.dropped;
      this.log("warning", `the session of '${h.clientId}' resumed here without ${h.dropped} message(s) over its queue's bound`);
    }
  }

  /** The client went while its session was being claimed: an adopted session stays, offline; without one, the record goes. */
  claimAbandoned(clientId: string): void {
    const session = this.sessions.get(clientId);
    if (session === undefined || session.connected) {
      if (session === undefined) this.cluster?.sessionEnded(clientId);
      return;
    }
    this.cluster?.sessionOffline(session, null, 0, 0);
    if (session.expiryInterval !== 0xffffffff) this.expireLater(session, session.expiryInterval * 1000);
  }

  /** Drops a session from this node without ending it anywhere else: no will, no record change. */
  private forgetSession(session: Session): void {
    this.resumeSession(session);
    session.clearMessages();
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    session.ended = true;
    this.router.invalidate();
    for (const key of [...session.subscriptions.keys()]) this.unsubscribe(session, key);
  }

  /** True while the cluster is connected (readiness); null on a lone broker. */
  get clusterConnected(): boolean | null {
    return this.cluster === null ? null : this.cluster.connected;
  }

  /**
   * Writes a PUBACK, PUBREC or SUBACK. In a cluster, one for a message that went to the other
   * nodes or for interest just taken (`viaCluster`) waits until NATS accepted it, and a later one
   * of the same connection waits behind it [MQTT-4.6.0-2].
   */
  acknowledge(conn: Connection, packet: Packet, viaCluster: boolean): void {
    if (this.ackGate === null) conn.writePacket(packet);
    else this.ackGate.write(conn, packet, viaCluster);
  }

  /** acknowledge() of a received PUBLISH: PUBACK or PUBREC; one with reason code 0 outside a cluster is written as its four bytes, with no packet object. */
  acknowledgePublish(conn: Connection, type: typeof PacketType.PUBACK | typeof PacketType.PUBREC, packetId: number, reasonCode: number, viaCluster: boolean): void {
    if (this.ackGate === null && reasonCode === 0) conn.writeAck(type, packetId);
    else this.acknowledge(conn, { type, packetId, reasonCode, properties: NO_PROPERTIES }, viaCluster);
  }

  // ---- durable state ---------------------------------------------------------------------

  /**
   * Opens the persistence file and restores what it holds: retained messages, sessions with their
   * subscriptions, queues and messages in flight both ways, and pending wills with the time left.
   * bun:sqlite is loaded only here, so a broker without a file never loads it.
   */
  private async recover(file: string): Promise<void> {
    const began = performance.now();
    const { SqliteStore } = await import("./store/sqlite");
    this.commitSeconds = new Histogram([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]);
    const store = SqliteStore.open(file, this.options.durability, {
      committed: () => this.flushAll(),
      timed: (seconds) => this.commitSeconds!.observe(seconds),
      failed: (e) => this.storeFailed(e),
    });
    this.store = store;
    const report: RecoveryReport = { file, sessions: 0, subscriptions: 0, queued: 0, inflight: 0, incomingQos2: 0, retained: 0, wills: 0, ms: 0 };
    try {
      const now = Date.now();
      const { retained, sessions, wills } = store.recover(now);
      for (const m of retained) this.retained.set(m);
      report.retained = retained.length;
      for (const s of sessions) {
        this.restoreSession(s, now);
        report.sessions++;
        report.subscriptions += s.subscriptions.length;
        report.queued += s.queue.length;
        report.inflight += s.inflight.length;
        report.incomingQos2 += s.incomingQos2.length;
      }
      for (const w of wills) this.restoreWill(w, now);
      report.wills = wills.length;
      store.commit();
    } catch (e) {
      this.closeStore();
      throw e;
    }
    report.ms = performance.now() - began;
    this.recovery = report;
    this.log("info", `restored from ${file} in ${report.ms.toFixed(1)} ms: ${report.sessions} sessions, ${report.retained} retained messages, ${report.wills} pending wills`);
  }

  /** Commits what is pending and closes the persistence file. */
  private closeStore(): void {
    if (this.store === null) return;
    this.store.close();
    this.store = null;
    for (const s of this.sessions.values()) s.journal = null;
  }

  /**
   * A commit failed: nothing more may be acknowledged, and what the output holds may promise what
   * the file does not have. Every connection is cut without its output and the broker stops;
   * serveForever() rejects with the error. Restarting on the file gives the last committed state.
   */
  private storeFailed(e: PersistenceError): void {
    this.log("error", e.message);
    for (const conn of [...this.connections]) conn.socket.terminate();
    for (const s of this.servers) s.close();
    this.servers = [];
    this.stopped?.reject(e);
  }

  /** A client connected to `session` (CONNECT accepted): starts, updates or ends its durable copy, as its expiry says. */
  sessionConnected(session: Session): void {
    const store = this.store;
    if (store === null) return;
    if (session.expiryInterval === 0) {
      // it ends with this connection: nothing of it is kept [MQTT-3.1.2-23]
      if (session.journal !== null) store.sessionEnded(session.clientId);
      session.journal = null;
    } else if (session.journal === null) session.journal = store.attach(session, false);
    else store.saveSession(session, 0);
  }
  /** True when an access control file is in force. */
  get checksAccess(): boolean {
    return this.acl !== null;
  }

  /** Whether a client may write (publish to) a topic; always without an access control file. */
  mayWrite(username: string | null, clientId: string, topic: string): boolean {
    return this.acl === null || this.acl.allows(username, clientId, topic, Access.WRITE);
  }

  /** Whether a session's client may read (receive) a topic; always without an access control file. */
  mayRead(session: Session, topic: string): boolean {
    return this.acl === null || this.acl.allows(session.username, session.clientId, topic, Access.READ);
  }

  /** A session changed hands (CONNECT): with access rules, cached deliveries may no longer hold. */
  sessionOwnerChanged(): void {
    if (this.acl !== null) this.router.invalidate();
  }

  /** 0 when a CONNECT's user name and password let it in, else the reason code to refuse it with [MQTT-3.1.4-2]. */
  authenticate(username: string | null, password: Uint8Array | null): number {
    return this.authenticator === null ? 0 : this.authenticator.check(username, password);
  }

  /** Connections lingering after an error DISCONNECT (see Connection.linger), at most maxLingering. */
  lingering = 0;

  /** A connection asks to linger: true (and counted) unless lingerMs is 0 or maxLingering connections already do. */
  startLinger(): boolean {
    if (this.options.lingerMs <= 0 || this.lingering >= this.options.maxLingering) return false;
    this.lingering++;
    return true;
  }

  /** A lingering connection's socket closed. */
  stopLinger(): void {
    this.lingering--;
  }

  /** Makes the Connection of a transport a listener admitted; `kind` (tcp, tls, ws, wss) labels it in /metrics. */
  opened(transport: Transport, kind: string): Connection {
    const conn = new Connection(this, transport);
    conn.kind = kind;
    this.connections.add(conn);
    return conn;
  }

  // ---- output ----------------------------------------------------------------------------

  /** Queues a connection for the next flush. */
  markDirty(conn: Connection): void {
    this.dirty.push(conn);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flushAll());
    }
  }

  /** Writes every touched connection's buffer, one write each. */
  flushAll(): void {
    this.flushScheduled = false;
    const dirty = this.dirty;
    if (dirty.length === 0) return;
    if (this.store !== null && this.store.pending) {
      // group commit: what waits for the turn's transaction goes when the store calls again after
      // its commit; what promises nothing (QoS 0/1 PUBLISH to subscribers) goes now
      let kept = 0;
      for (const conn of dirty) if (conn.flushUnheld()) dirty[kept++] = conn;
      dirty.length = kept;
      return;
    }
    this.dirty = [];
    for (const conn of dirty) conn.flush();
  }

  // ---- timers ----------------------------------------------------------------------------

  /** Enforces the connect timeout and keep alive (1.5 times the interval [MQTT-3.1.2-22]). */
  private sweep(): void {
    const now = Date.now();
    for (const conn of this.connections) {
      if (conn.state === ConnState.AwaitingConnect) {
        if (now - conn.openedAt > this.options.connectTimeoutMs) conn.close(null, "no CONNECT within the connect timeout");
      } else if (conn.keepAliveMs > 0 && now - conn.lastReceived > conn.keepAliveMs * 1.5 && !conn.heldBack) { // not read while held back: its packets wait for us
        conn.close(ReasonCode.KeepAliveTimeout, "keep alive timeout"); // [MQTT-3.1.2-22]
      }
    }
    this.outbox.sweep(now);
    this.flushAll();
  }

  // ---- sessions --------------------------------------------------------------------------

  /** Stops a session's expiry and pending will (its client is back). [MQTT-3.1.3-9] */
  resumeSession(session: Session): void {
    const t = this.expiryTimers.get(session);
    if (t !== undefined) t.clear();
    this.expiryTimers.delete(session);
    const w = this.willTimers.get(session);
    if (w === undefined) return;
    w.timer.clear();
    this.willTimers.delete(session);
    if (session.journal !== null) this.store?.willDone(session.clientId);
  }

  /** A session made again from a saved or handed-over state: its identity, expiry and subscriptions (the caller adds its messages). */
  private recreateSession(s: { clientId: string; expiryInterval: number; protocolVersion: 4 | 5; username: string | null; subscriptions: (Omit<SubscriptionEntry, "session"> & { key: string })[] }): Session {
    const session = new Session(s.clientId);
    session.expiryInterval = s.expiryInterval;
    session.protocolVersion = s.protocolVersion;
    session.username = s.username;
    this.sessions.set(s.clientId, session);
    for (const sub of s.subscriptions) {
      const { key, ...options } = sub;
      this.subscribe(session, key, { session, ...options });
    }
    return session;
  }

  /** Recreates a session read from the persistence file: offline, with its subscriptions, messages and remaining expiry. */
  private restoreSession(s: RecoveredSession, now: number): void {
    const session = this.recreateSession(s);
    for (const q of s.queue) session.enqueue(q, Infinity, Infinity);
    for (const m of s.inflight) session.addInflight(m);
    for (const id of s.incomingQos2) session.addIncomingQos2(id);
    session.journal = this.store!.attach(session, true);
    // online when the broker stopped: its expiry counts from now
    const offlineSince = s.disconnectedAt === 0 ? now : s.disconnectedAt;
    if (s.disconnectedAt === 0) this.store!.saveSession(session, now);
    if (s.expiryInterval !== 0xffffffff) this.expireLater(session, Math.max(0, offlineSince + s.expiryInterval * 1000 - now));
  }

  /** A will read from the persistence file: published now if its time has come, else when it does. */
  private restoreWill(w: RecoveredWill, now: number): void {
    const session = this.sessions.get(w.clientId);
    if (w.dueAt <= now || session === undefined) {
      this.store!.willDone(w.clientId);
      this.publishWill(w.message);
      return;
    }
    this.delayWill(session, w.message, w.dueAt - now);
  }

  /** Publishes a session's will after `ms` unless its client comes back first [MQTT-3.1.3-9]; kept in the file meanwhile. */
  private delayWill(session: Session, message: Message, ms: number): void {
    const timer = longTimeout(() => {
      this.willTimers.delete(session);
      if (session.journal !== null) this.store?.willDone(session.clientId);
      this.publishWill(message);
    }, ms);
    this.willTimers.set(session, { timer, message });
    if (session.journal !== null) this.store?.willPending(session.clientId, message, Date.now() + ms);
  }

  /** Ends an offline session after `ms` unless its client comes back first. */
  private expireLater(session: Session, ms: number): void {
    const timer = longTimeout(() => {
      this.expiryTimers.delete(session);
      if (!session.connected) this.endSession(session);
    }, ms);
    this.expiryTimers.set(session, timer);
  }

  /** Removes a session and its subscriptions, publishing a will still pending; `replaced`: a clean start replaces it (in a cluster its record stays). */
  endSession(session: Session, replaced = false): void {
    if (!replaced && this.sessions.get(session.clientId) === session) this.cluster?.sessionEnded(session.clientId);
    const w = this.willTimers.get(session); // read before resumeSession() forgets it
    if (session.journal !== null) {
      this.store?.sessionEnded(session.clientId); // its rows, its will's included
      session.journal = null;
    }
    this.resumeSession(session);
    if (w) this.publishWill(w.message); // the session ends before the Will Delay Interval passes [MQTT-3.1.2-8]
    session.clearMessages();
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    // its subscriptions go in slices; meanwhile the router matches it no more
    session.ended = true;
    this.router.invalidate();
    const keys = session.subscriptions.keys();
    this.inSlices(() => {
      for (let n = 0, r = keys.next(); !r.done; r = keys.next()) {
        this.unsubscribe(session, r.value); // deleting while iterating: a Map iterator goes on
        if (++n % 64 === 0) return false;
      }
      return true;
    });
  }

  /** While a connection handles a read: when it ends (see Connection.process); else 0. */
  readDeadline = 0;

  /**
   * Runs `step` now and then once per event-loop turn until it returns true; each turn it runs
   * for at most SLICE_MS (a step does a bounded piece of work and returns false while more is left).
   * True when it finished at once, in the first slice.
   */
  inSlices(step: () => boolean): boolean {
    const slice = (until: number): boolean => {
      const deadline = performance.now() + SLICE_MS;
      const end = until > 0 && until < deadline ? until : deadline;
      for (;;) {
        if (step()) return true;
        if (performance.now() >= end) return false;
      }
    };
    // started by a packet: its first slice ends with the read it came in (Connection.process)
    if (slice(this.readDeadline)) return true;
    const next = () => {
      this.slices.delete(t);
      if (slice(0)) {
        this.flushAll();
        return;
      }
      t = setImmediate(next);
      this.slices.add(t);
      this.flushAll();
    };
    let t = setImmediate(next);
    this.slices.add(t);
    return false;
  }

  /** Work going on in slices now (see inSlices). */
  get pendingSlices(): number {
    return this.slices.size;
  }

  /** Bookkeeping when a connection ends: its will, its session's expiry. */
  connectionClosed(conn: Connection, wasConnected: boolean): void {
    this.connections.delete(conn);
    const session = conn.session;
    if (!wasConnected || session === null) return;
    if (this.clients.get(session.clientId) === conn) this.clients.delete(session.clientId);
    session.connected = false;
    this.outbox.disconnected(conn);
    const will = conn.will;
    conn.will = null;
    const expiry = session.expiryInterval;
    if (will !== null) {
      const delay = Math.min(will.delayMs, expiry === 0xffffffff ? Infinity : expiry * 1000);
      if (delay <= 0) this.publishWill(will.message);
      else this.delayWill(session, will.message, delay); // [MQTT-3.1.3-9]
    }
    if (expiry !== 0 && session.journal !== null) this.store?.saveSession(session, Date.now()); // offline from now; DISCONNECT may have changed its expiry
    if (expiry !== 0 && this.cluster !== null && this.sessions.get(session.clientId) === session) {
      const w = this.willTimers.get(session);
      this.cluster.sessionOffline(session, w?.message ?? null, will?.delayMs ?? 0, w === undefined ? 0 : Date.now() + Math.min(will!.delayMs, expiry === 0xffffffff ? Infinity : expiry * 1000));
    }
    if (expiry === 0) this.endSession(session);
    else if (expiry !== 0xffffffff) this.expireLater(session, expiry * 1000);
  }

  private publishWill(message: Message): void {
    const expiry = message.properties.messageExpiryInterval;
    if (expiry !== undefined) message.expiresAt = Date.now() + expiry * 1000; // counted from publication
    this.route(message, null);
    this.flushAll();
  }

  // ---- publish path ----------------------------------------------------------------------

  /** Stores or clears a retained message (an empty payload deletes) [MQTT-3.3.1-5] [MQTT-3.3.1-6]; a new topic past the retained bounds is not kept (logged). */
  retain(message: Message): void {
    if (this.cluster !== null && this.router.sendsOut(message.topic)) {
      this.cluster.retain(message); // kept in the cluster for every node; $SYS stays here
      return;
    }
    const topic = message.topic;
    if (message.payload.length === 0) {
      if (this.retained.delete(topic)) this.store?.retained(topic, null);
      return;
    }
    if (this.retainRefused(topic, message.topicBytes.length + message.payload.length) !== null) return;
    this.retained.set(message);
    if (topic.charCodeAt(0) !== 0x24) this.store?.retained(topic, persist(message)); // not $SYS: the broker's own, made anew
  }

  /**
   * The bound (maxRetainedMessages or maxRetainedBytes) a new retained topic of `cost` topic and
   * payload bytes would cross, logged; null when it may be retained.
   */
  retainRefused(topic: string, cost: number): string | null {
    const o = this.options;
    const limit = this.retained.refuses(topic, cost, o.maxRetainedMessages, o.maxRetainedBytes);
    if (limit === null) return null;
    const why = limit === "messages" ? `maxRetainedMessages (${o.maxRetainedMessages})` : `maxRetainedBytes (${o.maxRetainedBytes})`;
    if (this.logs("warning")) this.log("warning", `a retained message on '${topic}' refused: ${why} reached`);
    return why;
  }

  /** Publishes the `$SYS` values that changed since the last round (the uptime always). */
  private publishSys(): void {
    const subscriptions = this.router.normalCount + this.router.sharedCount;
    const values = sysValues(pkg.version, this.startedAt, this.counters, { connected: this.clients.size, sessions: this.sessions.size, subscriptions, retained: this.retained.size });
    for (const [topic, value] of values) {
      if (this.sysPublished.get(topic) === value) continue;
      this.sysPublished.set(topic, value);
      this.route(sysMessage(topic, value), null);
    }
    this.flushAll();
  }

  /** Delivers a message to every matching subscription (see Router.route). */
  route(message: Message, origin: Session | null, matches?: Matches): void {
    this.router.route(message, origin, matches);
  }

  /** Matching sessions and shared groups for a topic (see Router.match). */
  match(topic: string): Matches {
    return this.router.match(topic);
  }

  /** Adds or replaces a session's subscription (see Router.subscribe); true when it is new. */
  subscribe(session: Session, key: string, entry: SubscriptionEntry): boolean {
    this.cluster?.subscriptionsChanged(session);
    return this.router.subscribe(session, key, entry);
  }

  /** Removes a session's subscription (see Router.unsubscribe); false when it had none. */
  unsubscribe(session: Session, key: string): boolean {
    if (!session.ended) this.cluster?.subscriptionsChanged(session);
    return this.router.unsubscribe(session, key);
  }

  /** The subscription trie (the router's). */
  get trie(): Router["trie"] {
    return this.router.trie;
  }

  /**
   * Sends the retained messages matching a new subscription (section 3.3.1.3), walking the
   * retained trie in slices (inSlices): many matches never hold the event loop for long. It stops
   * when the subscription is gone.
   */
  sendRetained(session: Session, entry: SubscriptionEntry): void {
    const cursor = this.retained.walk(entry.filter);
    const ids = entry.subscriptionId === undefined ? null : [entry.subscriptionId];
    let now = 0;
    // a message without an expiry sent at QoS 0 goes as it is stored (less its packet identifier),
    // when nothing needs its topic as a string (access rules, denied filters) and the subscription
    // asks for nothing of its own
    const asStored = this.router.matchesBytes;
    const visit: RetainedVisit = (bytes, expiresAt) => {
      if (asStored && expiresAt === 0 && (entry.qos === 0 || (bytes[0]! & 0x06) === 0) && this.outbox.sendStoredQos0(session, bytes, ids !== null)) return;
      const m = retainedMessage(bytes, expiresAt);
      if (this.router.isDenied(m.topic) || !this.mayRead(session, m.topic)) return;
      const qos = (entry.qos < m.qos ? entry.qos : m.qos) as QoS;
      this.outbox.deliver(session, m, qos, true, ids, now); // sent with RETAIN 1, section 3.3.1.3
    };
    // in slices, and while the client has a backlog, not at all: the rest follows once it has read
    // (QoS 0 would be dropped at a full output, QoS 1/2 overflow the queue)
    const run = (): void => {
      this.inSlices(() => {
        if (session.ended || session.subscriptions.get(entry.filter)?.entry !== entry) return true;
        if (this.outbox.backlogged(session)) {
          this.outbox.whenRoom(session, run);
          return true;
        }
        now = Date.now();
        return cursor.next(64, now, visit);
      });
    };
    run();
    if (this.cluster !== null && this.router.sendsOut(entry.filter)) this.cluster.sendRetained(session, entry); // and those the cluster keeps
  }

  /** Delivers retained messages the cluster read for a subscription: those it may read and that have not expired. */
  private deliverRetained(session: Session, entry: SubscriptionEntry, candidates: Iterable<Message>): void {
    const now = Date.now();
    const ids = entry.subscriptionId === undefined ? null : [entry.subscriptionId];
    for (const m of candidates) {
      if (this.router.isDenied(m.topic) || !this.mayRead(session, m.topic)) continue;
      if (m.expiresAt !== 0 && m.expiresAt <= now) continue; // section 3.3.2.3.3
      const qos = (entry.qos < m.qos ? entry.qos : m.qos) as QoS;
      this.outbox.deliver(session, m, qos, true, ids, now); // sent with RETAIN 1, section 3.3.1.3
    }
  }

}

