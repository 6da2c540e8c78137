/**
 * Per-client protocol state that outlives a connection: subscriptions, QoS 1/2 messages in flight
 * and queued, QoS 2 packet identifiers received and not yet released, packet identifier
 * allocation, expiry. No sockets or timers are touched here; the connection and broker drive it.
 */
import type { QoS } from "../codec/constants";
import type { TrieNode } from "../topic/trie";
import type { SharedGroup } from "../topic/shared";
import { messageCost, type Message } from "./message";
import type { SessionJournal } from "./store/journal";

/** Options of one subscription (section 3.8.3.1) and its identifier. */
export interface SubscriptionEntry {
  session: Session;
  filter: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
  /** Share name of a `$share/` subscription, else null. */
  shareName: string | null;
}

/** A group of shared subscribers, holding one trie entry for all of them. */
export type Group = SharedGroup<SubscriptionEntry>;

/** Who a trie entry belongs to: a session, or a shared-subscription group. */
export type Subscriber = Session | Group;

/** The node type of the broker's trie. */
export type SubscriptionNode = TrieNode<Subscriber, SubscriptionEntry | Group>;

/** A subscription the session holds, with its trie node for removal without a walk. */
export interface HeldSubscription {
  entry: SubscriptionEntry;
  node: SubscriptionNode;
  /** The group of a shared subscription, else null. */
  group: Group | null;
}

/** A QoS 1/2 message waiting for room in the client's window. */
export interface QueuedMessage {
  message: Message;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[] | null;
}

/**
 * A QoS 1/2 message sent to the client and not yet acknowledged. The broker makes queued messages
 * with these fields too (packetId 0), so that one taken from the queue is sent as it is.
 */
export interface InflightMessage extends QueuedMessage {
  packetId: number;
  /** QoS 2: PUBREC received and PUBREL sent; waiting for PUBCOMP. */
  released: boolean;
  /** Not yet re-sent on the resumed session: over the client's Receive Maximum until acknowledgements free the window. */
  held: boolean;
}

/**
 * The empty collections every new session starts with, shared: most sessions (an idle sensor, a
 * publisher that never subscribes) never fill some of them, and an empty Map, Set and Array cost
 * about 200 bytes a session. A session gets its own on the first write (the add/set methods
 * below); writing to a shared one throws, so a missed write site shows at once.
 */
class SharedEmptyMap<K, V> extends Map<K, V> {
  override set(): this {
    throw new Error("internal error: a write to the shared empty map");
  }
}
class SharedEmptySet<T> extends Set<T> {
  override add(): this {
    throw new Error("internal error: a write to the shared empty set");
  }
}
/**
 * A session's outgoing QoS 1/2 messages by packet identifier: a Map's part (size, get, has,
 * values in send order) without a Map. The hot path (a send, its PUBACK) is an array store and a
 * load: the identifiers allocatePacketId() hands out stay below a few times the number in flight,
 * so the array stays small. values() (a redelivery, a snapshot for the store) sorts by send order.
 */
export class InflightTable {
  /** Messages by packet identifier; holes where none is in flight. */
  private byId: (InflightMessage | undefined)[] = [];
  /** When each was added (a counter), by packet identifier: the send order. */
  private order: number[] = [];
  private added = 0;
  /** Messages in flight. */
  size = 0;

  get(packetId: number): InflightMessage | undefined {
    return this.byId[packetId];
  }

  has(packetId: number): boolean {
    return this.byId[packetId] !== undefined;
  }

  /** Adds a message (or replaces the one with its identifier); it goes last in send order. */
  set(m: InflightMessage): void {
    const id = m.packetId;
    if (this.byId[id] === undefined) this.size++;
    this.byId[id] = m;
    this.order[id] = this.added++;
  }

  delete(packetId: number): boolean {
    if (this.byId[packetId] === undefined) return false;
    this.byId[packetId] = undefined;
    if (--this.size === 0 && this.byId.length > 4096) this.clear(); // after a burst: give the long arrays back
    return true;
  }

  clear(): void {
    this.byId = [];
    this.order = [];
    this.size = 0;
  }

  /** Calls `each` for every message in flight, in no particular order (no copy, no sort). */
  forEach(each: (m: InflightMessage) => void): void {
    const byId = this.byId;
    for (let id = 1; id < byId.length; id++) if (byId[id] !== undefined) each(byId[id]!);
  }

  /** The messages in send order (a copy: the caller may delete while it goes through them). */
  values(): InflightMessage[] {
    const out: InflightMessage[] = [];
    const byId = this.byId;
    for (let id = 1; id < byId.length; id++) if (byId[id] !== undefined) out.push(byId[id]!);
    return out.sort((a, b) => this.order[a.packetId]! - this.order[b.packetId]!);
  }
}

/** The InflightTable every session starts with (a write to it throws, as to the shared empty collections above). */
class SharedEmptyInflight extends InflightTable {
  override set(): void {
    throw new Error("internal error: a write to the shared empty in-flight table");
  }
}

const NO_SUBSCRIPTIONS: Map<string, HeldSubscription> = new SharedEmptyMap();
const NO_INFLIGHT: InflightTable = new SharedEmptyInflight();
const NO_IDS: Set<number> = new SharedEmptySet();
const NO_QUEUE: (QueuedMessage | undefined)[] = Object.freeze([]) as unknown as (QueuedMessage | undefined)[];

/** Packet identifiers go round at least 1..MIN_ID_RANGE (see allocatePacketId). */
const MIN_ID_RANGE = 256;

/** The state of one client identifier. */
export class Session {
  /** Subscriptions by topic filter (shared ones by their full `$share/...` filter); add with holdSubscription(). */
  subscriptions = NO_SUBSCRIPTIONS;
  /** Outgoing QoS 1/2 messages by packet identifier (values() in send order); add with addInflight(). */
  inflight = NO_INFLIGHT;
  /** Incoming QoS 2 packet identifiers awaiting PUBREL [MQTT-4.3.3-9]; add with addIncomingQos2(). */
  incomingQos2 = NO_IDS;
  private queue = NO_QUEUE;
  private head = 0;
  /** Payload bytes held in the queue. */
  queuedBytes = 0;
  private nextPacketId = 1;
  /** Session Expiry Interval in seconds (0xFFFFFFFF = never). */
  expiryInterval = 0;
  /** Protocol level of the client that owns the session now. */
  protocolVersion: 4 | 5 = 5;
  /** Set while the client is connected; typed loosely to keep I/O out of this module. */
  connected = false;
  /** True while some in-flight message is held (see InflightMessage.held). */
  hasHeld = false;
  /** Work waiting for room towards the client (Outbox.whenRoom), such as the rest of a subscription's retained messages. */
  roomWaiters: (() => void)[] | null = null;
  /** User name of the client that owns the session now (for access rules). */
  username: string | null = null;
  /** When the client last acknowledged a message (PUBACK, PUBREC, PUBCOMP): its progress, for slowConsumerTimeoutMs. */
  lastAcknowledged = 0;
  /** True once the session has ended (endSession): its subscriptions are being removed, nothing more is delivered to it. */
  ended = false;
  /** Where its durable changes are noted: set while persistence is on and the session outlives its connection, else null. */
  journal: SessionJournal | null = null;

  constructor(readonly clientId: string) {}

  /** Number of queued messages. */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Adds or replaces a subscription. */
  holdSubscription(key: string, held: HeldSubscription): void {
    if (this.subscriptions === NO_SUBSCRIPTIONS) this.subscriptions = new Map();
    this.subscriptions.set(key, held);
    this.journal?.subscribed(key, held.entry);
  }

  /** Records an outgoing QoS 1/2 message as in flight. */
  addInflight(m: InflightMessage): void {
    if (this.inflight === NO_INFLIGHT) this.inflight = new InflightTable();
    this.inflight.set(m);
    this.journal?.inflightAdded(m);
  }

  /** QoS 2: PUBREC received for an outgoing message, PUBREL to be sent [MQTT-4.3.3-4]. */
  releaseInflight(m: InflightMessage): void {
    m.released = true;
    this.journal?.inflightReleased(m.packetId);
  }

  /** Forgets an outgoing message (acknowledged, or dropped); false when the identifier was not in use. */
  removeInflight(packetId: number): boolean {
    if (!this.inflight.delete(packetId)) return false;
    this.journal?.inflightRemoved(packetId);
    return true;
  }

  /** Records an incoming QoS 2 packet identifier until its PUBREL. */
  addIncomingQos2(packetId: number): void {
    if (this.incomingQos2 === NO_IDS) this.incomingQos2 = new Set();
    this.incomingQos2.add(packetId);
    this.journal?.incomingAdded(packetId);
  }

  /** Releases an incoming QoS 2 packet identifier (PUBREL); false when it was not held. */
  removeIncomingQos2(packetId: number): boolean {
    if (!this.incomingQos2.delete(packetId)) return false;
    this.journal?.incomingRemoved(packetId);
    return true;
  }

  /** Appends a message to the queue; false when the queue is at its bound. */
  enqueue(q: QueuedMessage, maxMessages: number, maxBytes: number): boolean {
    const cost = messageCost(q.message);
    if (this.queued >= maxMessages || this.queuedBytes + cost > maxBytes) return false;
    if (this.queue === NO_QUEUE) this.queue = [];
    this.queue.push(q);
    this.queuedBytes += cost;
    this.journal?.enqueued(q);
    return true;
  }

  /** The queued messages, oldest first (a copy). */
  queuedMessages(): QueuedMessage[] {
    return this.queue.slice(this.head) as QueuedMessage[];
  }

  /** Takes the oldest queued message. */
  dequeue(): QueuedMessage | undefined {
    if (this.head >= this.queue.length) return undefined;
    const q = this.queue[this.head]!;
    this.queue[this.head++] = undefined;
    if (this.head === this.queue.length) {
      this.queue = NO_QUEUE; // drained: give the array back
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.queuedBytes -= messageCost(q.message);
    this.journal?.dequeued(q);
    return q;
  }

  /**
   * The least of `stampOf` over the messages the client has not acknowledged yet: in flight (a
   * QoS 2 one whose PUBREC came is the client's already) and queued; Infinity when there are none
   * or none has a stamp. Queued messages keep their arrival order, so the first one stands for the
   * queue. (The cluster: where in the message stream a session's unacknowledged messages start.)
   */
  oldestUnacknowledged(stampOf: (m: Message) => number | undefined): number {
    let oldest = Infinity;
    this.inflight.forEach((m) => {
      if (m.released) return;
      const stamp = stampOf(m.message);
      if (stamp !== undefined && stamp < oldest) oldest = stamp;
    });
    const first = this.head < this.queue.length ? this.queue[this.head] : undefined;
    const stamp = first === undefined ? undefined : stampOf(first.message);
    return stamp !== undefined && stamp < oldest ? stamp : oldest;
  }

  /** Forgets queued and in-flight messages (clean start, or the session ends). */
  clearMessages(): void {
    this.queue = NO_QUEUE;
    this.head = 0;
    this.queuedBytes = 0;
    this.inflight.clear();
    this.hasHeld = false;
    this.incomingQos2.clear();
    this.journal?.cleared();
  }

  /**
   * A packet identifier not in use by an outgoing QoS 1/2 message [MQTT-2.2.1-3]; 0 when all are.
   * They go round 1..N, N twice the number in flight (at least 256): one is used again only after
   * its acknowledgement, as the protocol allows, and the InflightTable indexed by them stays small.
   */
  allocatePacketId(): number {
    const inflight = this.inflight;
    if (inflight.size >= 65535) return 0;
    const top = Math.min(65535, Math.max(MIN_ID_RANGE, inflight.size * 2));
    let id = this.nextPacketId > top ? 1 : this.nextPacketId;
    while (inflight.has(id)) id = id >= top ? 1 : id + 1;
    this.nextPacketId = id + 1;
    return id;
  }
}
