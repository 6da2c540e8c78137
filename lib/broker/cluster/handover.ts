/**
 * A session as it crosses between nodes: when a client resumes it on another node, the node that
 * held it hands it over (subscriptions, queue, messages in flight both ways with their packet
 * identifiers); the session registry keeps the parts needed when that node is gone
 * (subscriptions, expiry, will, the message stream's position).
 *
 * Binary form: [4 header length][header, JSON][4 length][message]... where the messages (queue,
 * then in flight, in the header's order) are the retained form of envelope.ts (PUBLISH v5 with
 * its absolute expiry). It is sent in chunks of at most CHUNK bytes, each behind
 * [4 index][4 count], so a session of any size fits NATS's maximum payload.
 */
import type { QoS } from "../../codec/constants";
import type { Message } from "../message";
import type { Session, SubscriptionEntry } from "../session";
import { decodeRetained, encodeRetained } from "./envelope";

/** One subscription of a handed-over or registered session (a SubscriptionEntry without its session). */
export type HandedSubscription = Omit<SubscriptionEntry, "session"> & { key: string };

/** A queued or in-flight message of a handed-over session. */
export interface HandedMessage {
  message: Message;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[] | null;
  /** In flight: its packet identifier, and true once PUBREC came (QoS 2). */
  packetId?: number;
  released?: boolean;
  /** Where in the message stream it may start (NatsCluster.stamps): the taker's heartbeats name it while unacknowledged. */
  stamp?: number;
}

/** A session's state, as a node hands it over. */
export interface HandedSession {
  clientId: string;
  protocolVersion: 4 | 5;
  username: string | null;
  expiryInterval: number;
  subscriptions: HandedSubscription[];
  queue: HandedMessage[];
  inflight: HandedMessage[];
  incomingQos2: number[];
  /** Messages of the queue dropped on the way here (a bound): counted by the receiver. */
  dropped?: number;
}

/** Largest chunk of a handed-over session on NATS (its default maximum payload is 1 MiB). */
export const CHUNK = 512 * 1024;

/** The subscriptions of a session, in the handed-over form. */
export function subscriptionsOf(session: Session): HandedSubscription[] {
  const out: HandedSubscription[] = [];
  for (const [key, held] of session.subscriptions) {
    const { session: _, ...entry } = held.entry;
    out.push({ key, ...entry });
  }
  return out;
}

/** A session's whole state. */
export function handedFrom(session: Session): HandedSession {
  return {
    clientId: session.clientId,
    protocolVersion: session.protocolVersion,
    username: session.username,
    expiryInterval: session.expiryInterval,
    subscriptions: subscriptionsOf(session),
    queue: session.queuedMessages().map((q) => ({ message: q.message, qos: q.qos, retain: q.retain, subscriptionIds: q.subscriptionIds })),
    inflight: [...session.inflight.values()].map((m) => ({ message: m.message, qos: m.qos, retain: m.retain, subscriptionIds: m.subscriptionIds, packetId: m.packetId, released: m.released })),
    incomingQos2: [...session.incomingQos2],
  };
}

/** Encodes a handed-over session into chunks. */
export function encodeHanded(h: HandedSession, now: number): Uint8Array[] {
  const strip = (m: HandedMessage) => ({ qos: m.qos, retain: m.retain, subscriptionIds: m.subscriptionIds, packetId: m.packetId, released: m.released, stamp: m.stamp });
  const header = new TextEncoder().encode(JSON.stringify({ ...h, queue: h.queue.map(strip), inflight: h.inflight.map(strip) }));
  const bodies = [...h.queue, ...h.inflight].map((m) => encodeRetained(m.message, now));
  const size = 4 + header.length + bodies.reduce((n, b) => n + 4 + b.length, 0);
  const all = new Uint8Array(size);
  const v = new DataView(all.buffer);
  v.setUint32(0, header.length);
  all.set(header, 4);
  let at = 4 + header.length;
  for (const b of bodies) {
    v.setUint32(at, b.length);
    all.set(b, at + 4);
    at += 4 + b.length;
  }
  const count = Math.max(1, Math.ceil(size / CHUNK));
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const part = all.subarray(i * CHUNK, Math.min(size, (i + 1) * CHUNK));
    const c = new Uint8Array(8 + part.length);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, i);
    cv.setUint32(4, count);
    c.set(part, 8);
    chunks.push(c);
  }
  return chunks;
}

/** Collects chunks; returns the session once all arrived, else null. Throws on what is not one. */
export class HandedAssembler {
  private parts: Uint8Array[] = [];
  private got = 0;

  add(chunk: Uint8Array): HandedSession | null {
    if (chunk.length < 8) throw new Error("not a chunk of a handed-over session");
    const v = new DataView(chunk.buffer, chunk.byteOffset, 8);
    const index = v.getUint32(0);
    const count = v.getUint32(4);
    if (count === 0 || index >= count) throw new Error("a bad chunk of a handed-over session");
    if (this.parts.length === 0) this.parts = new Array<Uint8Array>(count);
    if (this.parts[index] === undefined) this.got++;
    this.parts[index] = chunk.subarray(8);
    if (this.got < this.parts.length) return null;
    return decodeHanded(Buffer.concat(this.parts));
  }
}

/** Decodes a whole handed-over session. */
function decodeHanded(all: Uint8Array): HandedSession {
  const v = new DataView(all.buffer, all.byteOffset, all.length);
  const hl = v.getUint32(0);
  const h = JSON.parse(new TextDecoder().decode(all.subarray(4, 4 + hl))) as HandedSession;
  let at = 4 + hl;
  for (const m of [...h.queue, ...h.inflight]) {
    const n = v.getUint32(at);
    m.message = decodeRetained(all.slice(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return h;
}
