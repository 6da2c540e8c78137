/**
 * Delivery to one session: the outbox. A QoS 0 message goes straight to the connection's output or
 * is dropped; a QoS 1/2 message is sent while the client's window (its Receive Maximum and our
 * maxInflight) has room, otherwise queued; the queue is pumped into the window as acknowledgements
 * free it and as the output drains, and a resumed session's unacknowledged messages are re-sent
 * from here. What it writes goes to connections' output buffers, flushed once per event-loop turn
 * by the broker. It knows sessions and connections, not sockets or the trie.
 */
import type { QoS } from "../codec/constants";
import { PacketType } from "../codec/constants";
import { ReasonCode } from "../codec/reason-codes";
import { decodePacket, type Packet } from "../codec/packet";
import type { PublishPacket } from "../codec/packets/publish";
import type { Connection } from "./connection";
import { encodeForm, messageCost, persist, publishOf, type Message } from "./message";
import { fixedHeaderLength, remainingLength } from "../codec/packet";
import { varintSize } from "../codec/writer";
import type { BrokerOptions } from "./options";
import type { InflightMessage, QueuedMessage, Session } from "./session";
import type { BrokerCounters } from "./observe/counters";
import type { Overload } from "./overload/overload";
import type { Delivery } from "./router";

/**
 * The most output a client may have waiting before work that can wait (a subscription's retained
 * messages) does: the socket takes a few hundred KB at a time, so more only grows the buffer.
 */
const BACKLOG_OUTPUT_BYTES = 512 * 1024;

const NO_BYTES = new Uint8Array(0);

/** The logging the outbox needs from its owner. */
export interface OutboxLogging {
  readonly packetLog: 0 | 1 | 2;
  logPacket(conn: Connection, direction: "Sent" | "Received", p: Packet): void;
  log(level: "debug" | "info" | "warning" | "error", line: string): void;
}

/** Per-session delivery: sending, queueing, the in-flight window and redelivery. */
export class Outbox {
  /** Sessions whose full queues hold publishers back, each with the publishers and since when. */
  private readonly blocked = new Map<Session, { since: number; publishers: Set<Connection> }>();
  /** Sessions whose dropped messages have been logged, until one is queued again. */
  private readonly dropping = new WeakSet<Session>();
  /** Publishers held back by memory pressure. */
  private readonly memoryHeld = new Set<Connection>();
  /** Publishers to go on once the current handler is done. */
  private resuming: Connection[] = [];
  private resumeScheduled = false;
  /** The connection whose PUBLISH is being routed, if any: the one a full queue holds back. */
  publisher: Connection | null = null;
  /**
   * The message being routed from a PUBLISH whose frame it may go out as, unchanged (see forward()),
   * and that frame: `frameBuf[frameStart, frameEnd)`, valid only while it is routed.
   */
  private forwarding: Message | null = null;
  private frameBuf: Uint8Array = NO_BYTES;
  private frameStart = 0;
  private frameEnd = 0;
  /** The protocol level of that frame, and where its packet identifier is (QoS > 0). */
  private frameVersion = 5;
  private framePacketIdAt = 0;

  constructor(
    private readonly clients: Map<string, Connection>,
    private readonly options: BrokerOptions,
    private readonly counters: BrokerCounters,
    private readonly logging: OutboxLogging,
    private readonly overload: Pick<Overload, "shedQos0">,
  ) {}

  /** True when a session is online and has room for the message now (a shared group's choice). */
  hasRoom(session: Session, message: Message): boolean {
    const conn = this.clients.get(session.clientId);
    if (conn === undefined || conn.outputFull) return false;
    return message.qos === 0 || (session.queued < this.options.maxQueuedMessages && session.queuedBytes + messageCost(message) <= this.options.maxQueuedBytes);
  }

  /**
   * Sends or queues one message for one session. QoS 0 goes only to a connected client with room
   * in its output, else it is dropped and counted; it never holds a publisher back. QoS 1/2 is sent
   * while the client's window has room, otherwise queued; what happens at the queue's bound is
   * overflow()'s part.
   */
  deliver(session: Session, message: Message, qos: QoS, retain: boolean, subscriptionIds: number[] | null, now: number): void {
    const conn = this.clients.get(session.clientId);
    if (message.expiresAt !== 0 && message.expiresAt <= (now || Date.now())) {
      this.counters.dropped.expired++; // section 3.3.2.3.3
      return;
    }
    if (qos === 0) {
      if (conn !== undefined && !this.dropsQos0(conn, message.payload.length)) this.sendPublish(conn, message, 0, retain, subscriptionIds, 0, false, now);
      return;
    }
    if (conn !== undefined && session.queued === 0 && session.inflight.size < conn.sendWindow && !conn.outputFull) {
      this.sendInflight(conn, session, persist(message), qos, retain, subscriptionIds, now);
      return;
    }
    // an in-flight record already (see InflightMessage): pump() sends it as it is
    const q: InflightMessage = { message: persist(message), qos, retain, subscriptionIds, packetId: 0, released: false, held: false };
    if (session.enqueue(q, this.options.maxQueuedMessages, this.options.maxQueuedBytes)) this.dropping.delete(session);
    else this.overflow(conn, session, q);
  }

  /**
   * A QoS 1/2 message for a session whose queue is at its bound. An offline session's is dropped
   * and counted: it never holds a publisher back. An online one's follows slowConsumerPolicy; with
   * "backpressure" it is queued past the bound and the publisher that sent it is held back (its
   * socket is not read) until the queue is down to half, so the excess is at most one message
   * per held publisher. A message that has no publisher to hold back (a will, retained messages
   * for a new subscription, the client's own publication, which holding back would stop its
   * acknowledgements too) may take the queue to twice its bound; past that the client is
   * disconnected with 0x97, as with "disconnect".
   */
  private overflow(conn: Connection | undefined, session: Session, q: QueuedMessage): void {
    const policy = this.options.slowConsumerPolicy;
    if (conn === undefined || policy === "drop") {
      this.counters.dropped.queue_full++;
      if (!this.dropping.has(session)) {
        this.dropping.add(session);
        this.logging.log("warning", `queue of ${conn === undefined ? "offline " : ""}client '${session.clientId}' is full: messages for it are dropped`);
      }
      return;
    }
    const publisher = this.publisher;
    const holdable = publisher !== null && publisher.session !== session && policy === "backpressure";
    if (policy === "disconnect" || (!holdable && !session.enqueue(q, this.options.maxQueuedMessages * 2, this.options.maxQueuedBytes * 2))) {
      conn.close(ReasonCode.QuotaExceeded, "too many messages queued for this client");
      return;
    }
    if (!holdable) return;
    session.enqueue(q, Infinity, Infinity);
    let blocked = this.blocked.get(session);
    if (blocked === undefined) {
      blocked = { since: Date.now(), publishers: new Set() };
      this.blocked.set(session, blocked);
    }
    if (!blocked.publishers.has(publisher)) {
      blocked.publishers.add(publisher);
      publisher.holdBack(session);
    }
  }

  /** Lets the publishers a session held back go on, once its queue is down to half its bound (or it went offline). */
  private release(session: Session): void {
    const blocked = this.blocked.get(session);
    if (blocked === undefined) return;
    this.blocked.delete(session);
    for (const p of blocked.publishers) if (p.releaseHold(session)) this.resuming.push(p);
    this.scheduleResume();
  }

  /** Resumes the publishers let go once the current handler is done: a publisher's buffered packets route again, and not inside the handler that freed the queue. */
  private scheduleResume(): void {
    if (this.resuming.length > 0 && !this.resumeScheduled) {
      this.resumeScheduled = true;
      queueMicrotask(this.resumeAll);
    }
  }

  private readonly resumeAll = (): void => {
    this.resumeScheduled = false;
    const resuming = this.resuming;
    this.resuming = [];
    for (const p of resuming) p.resume();
  };

  /** A connection ended: publishers its session held back go on, and it holds nobody's queue any more. */
  disconnected(conn: Connection): void {
    if (conn.session !== null && this.clients.get(conn.session.clientId) === undefined) {
      this.release(conn.session);
      this.wake(conn.session); // what waited for room goes on for the offline session (queued, or dropped at QoS 0)
    }
    conn.forEachHold((reason) => {
      if (reason === "memory") this.memoryHeld.delete(conn);
      else if (typeof reason !== "string") this.blocked.get(reason)?.publishers.delete(conn);
    });
  }

  /**
   * Under memory pressure: holds back a connection that just published, until the pressure is
   * over (memoryRelieved). A client with messages in flight or queued towards it is not held: its
   * acknowledgements are what frees that memory.
   */
  holdForMemory(conn: Connection): void {
    const session = conn.session!;
    if (session.inflight.size > 0 || session.queued > 0 || conn.heldBack) return;
    if (this.memoryHeld.size === 0) this.logging.log("warning", "memory pressure: holding publishers back until it is over");
    this.memoryHeld.add(conn);
    conn.holdBack("memory");
  }

  /** The memory pressure is over: every publisher it held back goes on. */
  memoryRelieved(): void {
    if (this.memoryHeld.size === 0) return;
    this.logging.log("warning", `memory pressure over: ${this.memoryHeld.size} publisher(s) held back go on`);
    for (const p of this.memoryHeld) if (p.releaseHold("memory")) this.resuming.push(p);
    this.memoryHeld.clear();
    this.scheduleResume();
  }

  /**
   * Disconnects, with 0x97, clients that have held publishers back for slowConsumerTimeoutMs
   * without acknowledging anything; their sessions go offline and the publishers go on.
   */
  sweep(now: number): void {
    if (this.blocked.size === 0) return;
    const timeout = this.options.slowConsumerTimeoutMs;
    for (const [session, blocked] of this.blocked) {
      if (now - Math.max(blocked.since, session.lastAcknowledged) < timeout) continue;
      const conn = this.clients.get(session.clientId);
      if (conn === undefined) this.release(session);
      else conn.close(ReasonCode.QuotaExceeded, `no acknowledgement for ${timeout} ms while the queue was full`);
    }
  }

  /** Sends a message into the client's window; `queued`: the queue's record of it, which becomes the in-flight one. */
  private sendInflight(conn: Connection, session: Session, message: Message, qos: QoS, retain: boolean, subscriptionIds: number[] | null, now: number, queued: QueuedMessage | null = null): void {
    const packetId = session.allocatePacketId();
    let m: InflightMessage;
    if (queued === null) m = { message, qos, retain, subscriptionIds, packetId, released: false, held: false };
    else {
      m = queued as InflightMessage; // made with the in-flight fields by deliver() (one restored from the store gains them here)
      m.packetId = packetId;
      m.released = m.held = false;
    }
    session.addInflight(m);
    if (!this.sendPublish(conn, message, qos, retain, subscriptionIds, packetId, false, now)) session.removeInflight(packetId); // [MQTT-3.1.2-25] as if delivered
  }

  /**
   * Lets `message`, being routed from the PUBLISH in `frame[start, end)` of protocol level
   * `version`, go out as that frame (its packet identifier replaced) to every subscriber that would
   * be sent the same bytes: same level and QoS, the retain flag as received, no subscription
   * identifiers or topic alias. The caller makes sure the message's properties are the frame's
   * (no Topic Alias, which the broker removes; no expiry, which it counts down) and that the frame
   * has no DUP flag, and calls it again with null once the message is routed.
   */
  forward(message: Message | null, frame: Uint8Array = NO_BYTES, start = 0, end = 0, version = 5): void {
    this.forwarding = message;
    this.frameBuf = frame;
    if (message === null) return;
    this.frameStart = start;
    this.frameEnd = end;
    this.frameVersion = version;
    this.framePacketIdAt = fixedHeaderLength(frame, start) + 2 + message.topicBytes.length;
  }

  /**
   * A QoS 0 PUBLISH whose topic matched one session (`d`), delivered without a message being built:
   * the frame `buf[start, end)` of protocol level `version`, as it came (no retain flag, expiry or
   * topic alias: the caller checks), is appended to the subscriber's output when it gets exactly
   * those bytes (one subscription without an identifier, the same level, no topic aliases of its
   * own); or it is dropped as deliver() drops QoS 0 (offline, memory pressure, output full, too
   * large for the client). False when the subscriber needs an encoding of its own: the caller
   * builds the message and routes it. `payloadLength` is what memory pressure counts.
   */
  forwardQos0(origin: Session, d: Delivery, version: number, buf: Uint8Array, start: number, end: number, payloadLength: number): boolean {
    const subs = d.subs;
    if (subs.length !== 1) return false;
    const s = subs[0]!;
    if (s.noLocal && d.session === origin) return true; // [MQTT-3.8.3-3]
    const conn = this.clients.get(d.session.clientId);
    if (conn === undefined) return true; // QoS 0 goes only to a connected client
    if (!this.takesFrame(conn, version, s.subscriptionId !== undefined && conn.version === 5)) return false;
    if (!this.dropsQos0(conn, payloadLength)) this.appendFrame(conn, buf, start, end, 0, 0, 0);
    return true;
  }

  /**
   * A retained message without an expiry, sent at QoS 0 to a new subscription as it is stored: the
   * v5 PUBLISH `bytes`, RETAIN set, at any QoS. Appended to the subscriber's output when it takes
   * v5 frames as they are (takesFrame: no subscription identifier to add, `withIds`): the bytes
   * themselves, or at QoS 1 or 2 the same without the packet identifier; or dropped as deliver()
   * drops QoS 0. No message is built for it. False when the subscriber needs an encoding of its own.
   */
  sendStoredQos0(session: Session, bytes: Uint8Array, withIds: boolean): boolean {
    const conn = this.clients.get(session.clientId);
    if (conn === undefined) return true; // QoS 0 goes only to a connected client
    if (!this.takesFrame(conn, 5, withIds)) return false;
    if (this.dropsQos0(conn, bytes.length)) return true;
    if ((bytes[0]! & 0x06) === 0) {
      this.appendFrame(conn, bytes, 0, bytes.length, 0, 0, 0);
      return true;
    }
    const rl = bytes.length - fixedHeaderLength(bytes) - 2; // without the packet identifier
    if (1 + varintSize(rl) + rl > conn.clientMaxPacketSize) this.counters.dropped.too_large++; // [MQTT-3.1.2-25] dropped for this client only
    else {
      conn.appendAsQos0(bytes);
      this.counters.sent[0]++;
    }
    return true;
  }

  /** True (and counted) when a QoS 0 delivery of `payloadLength` bytes to `conn` is dropped: memory pressure, or its output full. */
  private dropsQos0(conn: Connection, payloadLength: number): boolean {
    if (this.overload.shedQos0(payloadLength)) {
      this.counters.dropped.memory_pressure++;
      return true;
    }
    if (conn.outputFull) {
      conn.dropped++;
      this.counters.dropped.output_full++;
      return true;
    }
    return false;
  }

  /**
   * True when `conn` is sent a PUBLISH of protocol level `version` exactly as it is: its level,
   * no subscription identifiers to add (`withIds`) and no topic aliases of its own, and no packet
   * log to write.
   */
  private takesFrame(conn: Connection, version: number, withIds: boolean): boolean {
    return conn.version === version && !withIds && conn.clientTopicAliasMax === 0 && this.logging.packetLog === 0;
  }

  /**
   * Appends the PUBLISH frame `buf[start, end)` to `conn`'s output at `qos`, with `packetId` at
   * `packetIdAt` in it (QoS > 0). False (and counted) when it is larger than the client's Maximum
   * Packet Size and was not sent.
   */
  private appendFrame(conn: Connection, buf: Uint8Array, start: number, end: number, qos: QoS, packetId: number, packetIdAt: number): boolean {
    if (end - start > conn.clientMaxPacketSize) {
      this.counters.dropped.too_large++; // [MQTT-3.1.2-25] dropped for this client only
      return false;
    }
    const at = conn.appendRange(buf, start, end, qos < 2); // a repetition after a crash is allowed below QoS 2: need not wait for the commit
    if (qos > 0) conn.patchU16(at + packetIdAt, packetId);
    this.counters.sent[qos]++;
    return true;
  }

  /**
   * Appends one PUBLISH to a connection's output: the frame it came in when forward() allows, else
   * the message's shared encoded form. False when it is larger than the client's Maximum Packet
   * Size and was not sent.
   */
  sendPublish(conn: Connection, message: Message, qos: QoS, retain: boolean, subscriptionIds: number[] | null, packetId: number, dup: boolean, now: number): boolean {
    const ids = conn.version === 5 ? subscriptionIds : null;
    if (message === this.forwarding && qos === message.qos && retain === message.retain && !dup && this.takesFrame(conn, this.frameVersion, ids !== null)) {
      return this.appendFrame(conn, this.frameBuf, this.frameStart, this.frameEnd, qos, packetId, this.framePacketIdAt);
    }
    if (!message.formsShared && conn.clientTopicAliasMax === 0) {
      // the only subscriber: encoded straight into its output, with its packet identifier
      const packet = publishOf(message, conn.version, qos, retain, dup, ids, now, 0, false, packetId);
      const rl = remainingLength(packet, conn.version);
      if (1 + varintSize(rl) + rl > conn.clientMaxPacketSize) {
        this.counters.dropped.too_large++; // [MQTT-3.1.2-25] dropped for this client only
        return false;
      }
      conn.writePublish(packet, rl, qos < 2 && message.qos < 2);
      this.counters.sent[qos]++;
      if (this.logging.packetLog !== 0) this.logging.logPacket(conn, "Sent", packet);
      return true;
    }
    const form = conn.clientTopicAliasMax === 0 ? encodeForm(message, conn.version, qos, retain, dup, ids, now) : this.aliasedForm(conn, message, qos, retain, dup, ids, now);
    if (form.bytes.length > conn.clientMaxPacketSize) {
      this.counters.dropped.too_large++; // [MQTT-3.1.2-25] dropped for this client only
      return false;
    }
    const at = conn.append(form.bytes, qos < 2 && message.qos < 2); // a repetition after a crash is allowed: need not wait for the commit
    if (qos > 0) conn.patchU16(at + form.packetIdOffset, packetId);
    this.counters.sent[qos]++;
    if (this.logging.packetLog !== 0) this.logging.logPacket(conn, "Sent", { ...(decodePacket(form.bytes, conn.version) as PublishPacket), packetId });
    return true;
  }

  /**
   * A PUBLISH for a client that accepts topic aliases: a topic that has an alias goes out with an
   * empty name; a new topic gets the next alias while any are left, never more than the client's
   * Topic Alias Maximum [MQTT-3.3.2-11]; the rest go out with their name only.
   */
  private aliasedForm(conn: Connection, message: Message, qos: QoS, retain: boolean, dup: boolean, ids: number[] | null, now: number) {
    const aliases = (conn.outboundAliases ??= new Map());
    const known = aliases.get(message.topic);
    if (known !== undefined) return encodeForm(message, 5, qos, retain, dup, ids, now, known, true);
    if (aliases.size < conn.clientTopicAliasMax) {
      const alias = aliases.size + 1;
      const form = encodeForm(message, 5, qos, retain, dup, ids, now, alias, false);
      if (form.bytes.length <= conn.clientMaxPacketSize) { // an alias counts only once the client has seen it
        aliases.set(message.topic, alias);
        return form;
      }
    }
    return encodeForm(message, 5, qos, retain, dup, ids, now);
  }

  /**
   * True while a connected client has a backlog: its output over half of maxOutputBytes (at most
   * BACKLOG_OUTPUT_BYTES), or its queue over half of maxQueuedMessages. Work that would add much to
   * it (a subscription's retained messages) waits with whenRoom() instead of filling the output
   * (where QoS 0 would be dropped, and a large output buffer grown by copying it, which holds the
   * event loop for milliseconds) or the queue (where QoS 1/2 would overflow).
   */
  backlogged(session: Session): boolean {
    const conn = this.clients.get(session.clientId);
    if (conn === undefined) return false;
    const half = this.options.maxOutputBytes / 2;
    return conn.pending > (half < BACKLOG_OUTPUT_BYTES ? half : BACKLOG_OUTPUT_BYTES) || session.queued > this.options.maxQueuedMessages / 2;
  }

  /** Runs `then` once the session is no longer backlogged (pump() sees it), or its client has gone. */
  whenRoom(session: Session, then: () => void): void {
    (session.roomWaiters ??= []).push(then);
  }

  /** Runs what waited for room towards the session, in the next turn of the event loop. */
  private wake(session: Session): void {
    const waiters = session.roomWaiters;
    if (waiters === null) return;
    session.roomWaiters = null;
    setImmediate(() => {
      for (const w of waiters) w();
    });
  }

  /** Fills a connected session's window from its queue; wakes what waited for room towards it once it has some. */
  pump(session: Session): void {
    if (session.roomWaiters !== null && !this.backlogged(session)) this.wake(session);
    if (session.queued === 0 && !session.hasHeld && this.blocked.size === 0) return; // nothing to send, nobody to let go (a PUBACK with the queue empty)
    const conn = this.clients.get(session.clientId);
    if (conn === undefined) return;
    let now = 0; // read once a message with an expiry needs it
    if (session.hasHeld) this.sendHeld(conn, session, (now = Date.now()));
    while (session.queued > 0 && session.inflight.size < conn.sendWindow && !conn.outputFull) {
      const q = session.dequeue()!;
      if (q.message.expiresAt !== 0 && q.message.expiresAt <= (now ||= Date.now())) {
        this.counters.dropped.expired++; // section 3.3.2.3.3
        continue;
      }
      this.sendInflight(conn, session, q.message, q.qos, q.retain, q.subscriptionIds, now, q);
    }
    if (this.blocked.size !== 0 && session.queued <= this.options.maxQueuedMessages >>> 1 && session.queuedBytes <= this.options.maxQueuedBytes / 2) this.release(session);
  }

  /** Re-sends a resumed session's unacknowledged messages [MQTT-4.4.0-1]: PUBREL at once, PUBLISH as the window allows; then its queue. */
  redeliver(conn: Connection, session: Session): void {
    for (const m of session.inflight.values()) {
      m.held = !m.released;
      if (m.released) conn.writePacket({ type: PacketType.PUBREL, packetId: m.packetId, reasonCode: 0, properties: {} });
    }
    session.hasHeld = true;
    this.pump(session);
  }

  /**
   * Re-sends a resumed session's unacknowledged PUBLISH packets, in order, while the client's window
   * has room: its Receive Maximum may be lower than on the connection they were first sent on [MQTT-3.3.4-9].
   */
  private sendHeld(conn: Connection, session: Session, now: number): void {
    let outstanding = 0;
    for (const m of session.inflight.values()) if (!m.held || m.released) outstanding++;
    session.hasHeld = false;
    for (const m of session.inflight.values()) {
      if (!m.held || m.released) continue; // released: the client sent PUBREC for what it got before
      if (outstanding >= conn.sendWindow) {
        session.hasHeld = true;
        return;
      }
      m.held = false;
      if (this.sendPublish(conn, m.message, m.qos, m.retain, m.subscriptionIds, m.packetId, true, now)) outstanding++; // DUP [MQTT-3.3.1-1]
      else session.removeInflight(m.packetId); // too large now: as if delivered [MQTT-3.1.2-25]
    }
  }
}
