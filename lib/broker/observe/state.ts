/**
 * `/api/state`: the broker's state for the dashboard as JSON, read when asked (as /metrics is):
 * counter totals (the page turns them into rates), gauges, the WebSocket listeners the page can
 * subscribe through, and the connected clients. Nothing is kept for it between requests.
 */
import { DROP_REASONS, total, type BrokerCounters } from "./counters";
import type { ConnectionView, SessionView as MetricsSessionView } from "./metrics";

/** A session as the dashboard sees it: what metrics read, and its subscriptions. */
type SessionView = MetricsSessionView & { readonly subscriptions: { readonly size: number } };

/** Clients listed at most; `clientsTotal` says how many there are. */
export const MAX_CLIENTS_LISTED = 1000;

/** One connected client, as the dashboard lists it. */
export interface ClientState {
  id: string;
  /** The peer's address. */
  address: string;
  /** tcp, tls, ws or wss. */
  transport: string;
  /** "5" or "3.1.1". */
  protocol: string;
  subscriptions: number;
  queued: number;
  inflight: number;
  /** Seconds since the connection opened. */
  connectedSeconds: number;
}

/** A WebSocket listener the page may subscribe through. */
export interface WebSocketState {
  port: number;
  /** The path (the page uses /mqtt when it is "*"). */
  path: string;
  tls: boolean;
  /** Served by the HTTP endpoint's own Bun.serve (same port as the page). */
  shared: boolean;
}

/** What /api/state answers. */
export interface DashboardState {
  version: string;
  /** Milliseconds since the epoch when it was read. */
  time: number;
  uptimeSeconds: number;
  /** Totals since the start: PUBLISH packets received and sent, messages dropped, bytes. */
  received: number;
  sent: number;
  dropped: number;
  bytesReceived: number;
  bytesSent: number;
  /** Gauges, read now. */
  connections: number;
  sessions: number;
  subscriptions: number;
  retained: number;
  queued: number;
  inflight: number;
  /** The WebSocket listeners, the shared one first; empty: the page cannot show live topics. */
  websockets: WebSocketState[];
  /** Up to MAX_CLIENTS_LISTED connected clients, by identifier. */
  clients: ClientState[];
  clientsTotal: number;
}

/** A connected client as the state reads it. */
export interface ClientConnectionView extends ConnectionView {
  readonly openedAt: number;
  readonly socket: { readonly remoteAddress: string };
  readonly session: (SessionView & { readonly clientId: string }) | null;
}

/** What /api/state reads from the broker. */
export interface StateSource {
  version: string;
  startedAt: number;
  counters: BrokerCounters;
  /** Connected clients (their connection has a session). */
  clients: Iterable<ClientConnectionView>;
  clientCount: number;
  sessions: Iterable<SessionView>;
  retained: number;
  websockets: WebSocketState[];
}

/** The state, read from `s` now. */
export function readState(s: StateSource, now = Date.now()): DashboardState {
  const c = s.counters;
  let dropped = 0;
  for (const r of DROP_REASONS) dropped += c.dropped[r];
  let sessions = 0;
  let subscriptions = 0;
  let queued = 0;
  let inflight = 0;
  for (const session of s.sessions) {
    sessions++;
    subscriptions += session.subscriptions.size;
    queued += session.queued;
    inflight += session.inflight.size;
  }
  const clients: ClientState[] = [];
  for (const conn of s.clients) {
    if (clients.length >= MAX_CLIENTS_LISTED) break;
    const session = conn.session;
    if (session === null) continue;
    clients.push({
      id: session.clientId,
      address: conn.socket.remoteAddress,
      transport: conn.kind,
      protocol: conn.version === 5 ? "5" : "3.1.1",
      subscriptions: session.subscriptions.size,
      queued: session.queued,
      inflight: session.inflight.size,
      connectedSeconds: Math.max(0, Math.round((now - conn.openedAt) / 1000)),
    });
  }
  clients.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    version: s.version,
    time: now,
    uptimeSeconds: s.startedAt === 0 ? 0 : Math.round((now - s.startedAt) / 1000),
    received: total(c.received),
    sent: total(c.sent),
    dropped,
    bytesReceived: c.bytesReceived,
    bytesSent: c.bytesSent,
    connections: s.clientCount,
    sessions,
    subscriptions,
    retained: s.retained,
    queued,
    inflight,
    websockets: s.websockets,
    clients,
    clientsTotal: s.clientCount,
  };
}

/** The user name and password of an `Authorization: Basic` header, or null when there is none or it is not Basic. */
export function basicCredentials(header: string | null): { username: string; password: Uint8Array } | null {
  if (header === null) return null;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (m === null) return null;
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(m[1]!);
  } catch {
    return null;
  }
  const colon = bytes.indexOf(0x3a);
  if (colon < 0) return null;
  return { username: new TextDecoder().decode(bytes.subarray(0, colon)), password: bytes.slice(colon + 1) };
}
