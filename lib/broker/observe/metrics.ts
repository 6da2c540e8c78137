/**
 * `/metrics` in the Prometheus text exposition format (version 0.0.4), following Prometheus'
 * naming conventions: the `mqtttools_` prefix, counters ending in `_total`, base units. There are
 * no client-identifier or topic labels, so the series count stays small whatever the load.
 * Counters come from BrokerCounters; gauges (connections, sessions, queues) are read from the
 * broker's state here, when scraped, so that counting costs the hot path nothing.
 */
import { readdirSync } from "node:fs";
import { DROP_REASONS, reasonLabel, type BrokerCounters } from "./counters";

/** A connection as metrics see it. */
export interface ConnectionView {
  readonly connected: boolean;
  /** tcp, tls, ws or wss. */
  readonly kind: string;
  readonly version: 4 | 5;
  readonly heldBack: boolean;
}

/** A session as metrics see it. */
export interface SessionView {
  readonly connected: boolean;
  readonly queued: number;
  readonly queuedBytes: number;
  readonly inflight: { readonly size: number };
}

/** Sums over the sessions, made by addSession() (a pass the broker may do in slices). */
export interface SessionTotals {
  online: number;
  offline: number;
  queued: number;
  queuedBytes: number;
  inflight: number;
}

/** Empty session totals. */
export function newSessionTotals(): SessionTotals {
  return { online: 0, offline: 0, queued: 0, queuedBytes: 0, inflight: 0 };
}

/** Adds one session to the totals. */
export function addSession(t: SessionTotals, session: SessionView): void {
  if (session.connected) t.online++;
  else t.offline++;
  t.queued += session.queued;
  t.queuedBytes += session.queuedBytes;
  t.inflight += session.inflight.size;
}

/** What /metrics reads from the broker when scraped. */
export interface MetricsSource {
  version: string;
  counters: BrokerCounters;
  connections: Iterable<ConnectionView>;
  sessions: SessionTotals;
  /** Subscriptions held, normal and shared (the router counts them). */
  subscriptions: { readonly normal: number; readonly shared: number };
  /** Retained messages and their topic and payload bytes (the retained store counts them). */
  retained: { readonly count: number; readonly bytes: number };
  /** Connections refused by overload protection, by reason. */
  refused: Record<string, number>;
  /** Durations of persistence commits, when persistence is on. */
  commitSeconds: Histogram | null;
  /** Whether the cluster connection is up, when clustered. */
  clusterConnected: boolean | null;
}

/** A Prometheus histogram: cumulative bucket counts, their sum and count. */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: number[]) {
    this.counts = bounds.map(() => 0);
  }

  /** Records one observation. */
  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) if (v <= b[i]!) this.counts[i]!++;
  }
}

/** One metric family being written. */
class Writer {
  private lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, value: number, labels: Record<string, string> = {}): this {
    const l = Object.entries(labels);
    const text = l.length === 0 ? "" : `{${l.map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`).join(",")}}`;
    this.lines.push(`${name}${text} ${Number.isFinite(value) ? value : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN"}`);
    return this;
  }

  text(): string {
    return `${this.lines.join("\n")}\n`;
  }
}

/** Open file descriptors of this process (Linux; NaN elsewhere). */
function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return NaN;
  }
}

const startTimeSeconds = Date.now() / 1000 - process.uptime();

/** The whole exposition, read from `s` now. */
export function renderMetrics(s: MetricsSource): string {
  const w = new Writer();
  const c = s.counters;

  const conns = new Map<string, { transport: string; protocol_version: string; n: number }>();
  let paused = 0;
  for (const conn of s.connections) {
    if (conn.heldBack) paused++;
    if (!conn.connected) continue;
    const protocol = conn.version === 5 ? "5" : "3.1.1";
    const key = `${conn.kind} ${protocol}`;
    const e = conns.get(key);
    if (e === undefined) conns.set(key, { transport: conn.kind, protocol_version: protocol, n: 1 });
    else e.n++;
  }
  w.family("mqtttools_connections", "gauge", "Client connections that completed CONNECT, by transport and protocol version.");
  if (conns.size === 0) w.sample("mqtttools_connections", 0, { transport: "tcp", protocol_version: "5" });
  for (const e of conns.values()) w.sample("mqtttools_connections", e.n, { transport: e.transport, protocol_version: e.protocol_version });

  const { online, offline, queued, queuedBytes, inflight } = s.sessions;
  const { normal, shared } = s.subscriptions;
  w.family("mqtttools_sessions", "gauge", "Sessions, with a connection (online) or waiting for their client (offline).")
    .sample("mqtttools_sessions", online, { state: "online" })
    .sample("mqtttools_sessions", offline, { state: "offline" });
  w.family("mqtttools_subscriptions", "gauge", "Subscriptions held by sessions, normal or shared ($share/...).")
    .sample("mqtttools_subscriptions", normal, { kind: "normal" })
    .sample("mqtttools_subscriptions", shared, { kind: "shared" });

  const { count: retained, bytes: retainedBytes } = s.retained;
  w.family("mqtttools_retained_messages", "gauge", "Retained messages held.").sample("mqtttools_retained_messages", retained);
  w.family("mqtttools_retained_bytes", "gauge", "Topic and payload bytes of the retained messages.").sample("mqtttools_retained_bytes", retainedBytes);
  w.family("mqtttools_queued_messages", "gauge", "QoS 1/2 messages queued for sessions, waiting for room in their window or for their client.").sample("mqtttools_queued_messages", queued);
  w.family("mqtttools_queued_bytes", "gauge", "Bytes charged for the queued messages.").sample("mqtttools_queued_bytes", queuedBytes);
  w.family("mqtttools_inflight_messages", "gauge", "QoS 1/2 messages sent to clients and not yet acknowledged.").sample("mqtttools_inflight_messages", inflight);
  w.family("mqtttools_publishers_paused", "gauge", "Connections not read because a full queue or memory pressure holds them back (flow control).").sample("mqtttools_publishers_paused", paused);

  w.family("mqtttools_messages_received_total", "counter", "PUBLISH packets received from clients, by QoS.");
  for (const q of [0, 1, 2] as const) w.sample("mqtttools_messages_received_total", c.received[q], { qos: String(q) });
  w.family("mqtttools_messages_sent_total", "counter", "PUBLISH packets sent to clients, by QoS.");
  for (const q of [0, 1, 2] as const) w.sample("mqtttools_messages_sent_total", c.sent[q], { qos: String(q) });
  w.family("mqtttools_messages_dropped_total", "counter", "Messages not delivered, by reason.");
  for (const r of DROP_REASONS) w.sample("mqtttools_messages_dropped_total", c.dropped[r], { reason: r });
  w.family("mqtttools_bytes_received_total", "counter", "Bytes read from client connections.").sample("mqtttools_bytes_received_total", c.bytesReceived);
  w.family("mqtttools_bytes_sent_total", "counter", "Bytes written to client connections.").sample("mqtttools_bytes_sent_total", c.bytesSent);
  w.family("mqtttools_connack_total", "counter", "CONNACK packets sent, by reason (3.1.1 return codes as their v5 reason).");
  for (const [code, n] of c.connacks) w.sample("mqtttools_connack_total", n, { reason: reasonLabel(code) });
  w.family("mqtttools_disconnects_total", "counter", "Connections that ended after CONNECT, by reason and by who ended them.");
  for (const [key, n] of c.disconnects) {
    const [reason, initiator] = key.split(" ") as [string, string];
    w.sample("mqtttools_disconnects_total", n, { reason, initiator });
  }
  w.family("mqtttools_auth_failures_total", "counter", "CONNECTs refused for a bad, unknown or missing user name or password.").sample("mqtttools_auth_failures_total", c.authFailures);
  w.family("mqtttools_connections_refused_total", "counter", "Connections refused by overload protection before CONNECT, by reason.");
  for (const [reason, n] of Object.entries(s.refused)) w.sample("mqtttools_connections_refused_total", n, { reason });

  if (s.commitSeconds !== null) {
    const h = s.commitSeconds;
    w.family("mqtttools_persistence_commit_seconds", "histogram", "Time taken by each commit of durable state (persistence).");
    h.bounds.forEach((b, i) => w.sample("mqtttools_persistence_commit_seconds_bucket", h.counts[i]!, { le: String(b) }));
    w.sample("mqtttools_persistence_commit_seconds_bucket", h.count, { le: "+Inf" }).sample("mqtttools_persistence_commit_seconds_sum", h.sum).sample("mqtttools_persistence_commit_seconds_count", h.count);
  }
  if (s.clusterConnected !== null) w.family("mqtttools_cluster_connected", "gauge", "1 while the cluster connection is up.").sample("mqtttools_cluster_connected", s.clusterConnected ? 1 : 0);
  w.family("mqtttools_build_info", "gauge", "Always 1; the version is a label.").sample("mqtttools_build_info", 1, { version: s.version });

  const cpu = process.cpuUsage();
  w.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.").sample("process_cpu_seconds_total", (cpu.user + cpu.system) / 1e6);
  w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.").sample("process_resident_memory_bytes", process.memoryUsage.rss());
  w.family("process_open_fds", "gauge", "Number of open file descriptors.").sample("process_open_fds", openFds());
  w.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.").sample("process_start_time_seconds", Math.round(startTimeSeconds));
  return w.text();
}
