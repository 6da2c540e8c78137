/**
 * Retained messages in a topic trie, the same shape as the subscription trie (lib/topic/trie.ts)
 * seen from the other side: here the trie holds topic names and is walked with a filter. A
 * wildcard subscription then costs O(matches + depth), whatever the total count.
 *
 * - Each message is stored once, as its encoded v5 PUBLISH (RETAIN set, packet identifier 1); a
 *   Message is made from those bytes only when one is sent. What it is charged for is read from
 *   them, and an expiry is kept in a side map: a message that never expires carries nothing else.
 * - A topic with no topic below it is a leaf, its message's bytes alone; only topics with topics
 *   below them are nodes. A node keeps a single child inline and only makes a Map for its second:
 *   most topic levels below a device's own have one child (`dev/<id>/state`).
 * - `$`-topics never match a filter starting with '+' or '#' [MQTT-4.7.2-1]; 'a/#' matches 'a'
 *   [MQTT-4.7.1-1]. Expired messages are deleted when a walk meets them.
 * - A walk is a RetainedCursor that goes on where it stopped: large walks are done in slices.
 */
import { PacketType, type QoS } from "../codec/constants";
import { decodePacket, encodePacket, fixedHeaderLength } from "../codec/packet";
import { Reader } from "../codec/reader";
import type { PublishPacket } from "../codec/packets/publish";
import { LevelMap } from "../topic/levels";
import type { Message } from "./message";

/**
 * A child in the trie: a node, or, for a topic with no topic below it (`r/<g>/<i>`, most retained
 * topics), its message's encoded bytes alone: a node object would cost as much as the message.
 */
type Child = RetainedNode | Uint8Array;

/** One topic level of the retained trie that has topics below it (or is the root). */
class RetainedNode {
  /** The only child (`key` is its level) until a second one comes; then `kids` holds them all. */
  key: string | null = null;
  child: Child | null = null;
  kids: LevelMap<Child> | null = null;
  /** The retained message on this topic: its encoded v5 PUBLISH, or null. */
  bytes: Uint8Array | null = null;

  get(level: string): Child | undefined {
    if (this.kids !== null) return this.kids.get(level);
    return this.key === level ? this.child! : undefined;
  }

  /** Sets the child of `level`, adding or replacing it. */
  put(level: string, child: Child): void {
    if (this.kids !== null) this.kids.set(level, child);
    else if (this.child === null || this.key === level) {
      this.key = level;
      this.child = child;
    } else {
      this.kids = new LevelMap<Child>().set(this.key!, this.child).set(level, child);
      this.key = null;
      this.child = null;
    }
  }

  remove(level: string): void {
    if (this.kids === null) {
      this.key = null;
      this.child = null;
      return;
    }
    this.kids.delete(level);
    if (this.kids.size === 1) {
      const [k, c] = this.kids.entries().next().value!;
      this.key = k;
      this.child = c;
      this.kids = null;
    }
  }

  get hasChildren(): boolean {
    return this.child !== null || this.kids !== null;
  }
}

/** The message of a child: a leaf's bytes, or a node's (null when it has none). */
function messageOf(child: Child): Uint8Array | null {
  return child instanceof RetainedNode ? child.bytes : child;
}

/** True for the broker's own `$SYS/...` topics. */
function isSys(topic: string): boolean {
  return topic.startsWith("$SYS/");
}

/** Level strings shared between nodes (`state` in a million `dev/<id>/state`), up to a bound. */
const interned = new Map<string, string>();
const INTERN_MAX = 16_384;
function intern(level: string): string {
  const known = interned.get(level);
  if (known !== undefined) return known;
  if (interned.size < INTERN_MAX) interned.set(level, level);
  return level;
}

/** Sees one retained message of a walk: its stored PUBLISH and expiry (0 = never). */
export type RetainedVisit = (bytes: Uint8Array, expiresAt: number) => void;

/** Why a new retained topic is refused: the count or the bytes bound. */
export type RetainedLimit = "messages" | "bytes";

/** The retained messages: set, delete, look up, and walk by a topic filter. */
export class RetainedStore {
  private readonly root = new RetainedNode();
  /**
   * When each message that expires does so (Date.now() ms), by its stored bytes: kept beside the
   * trie so that a message that never expires, the most, carries no field for it.
   */
  private readonly expiry = new Map<Uint8Array, number>();
  /** Number of retained messages. */
  size = 0;
  /** Topic and payload bytes of the retained messages. */
  bytes = 0;
  /** The part of size and bytes that is the broker's own `$SYS` topics, which the bounds leave out. */
  private sysSize = 0;
  private sysBytes = 0;

  /** `onExpired` hears of each message a walk found expired and deleted. */
  constructor(private readonly onExpired: (topic: string) => void = () => {}) {}

  /** Stores `message` as the retained message of its topic (replacing one), or deletes it when the payload is empty [MQTT-3.3.1-6]. */
  set(message: Message): void {
    if (message.payload.length === 0) {
      this.delete(message.topic);
      return;
    }
    const levels = message.topic.split("/");
    const last = levels.length - 1;
    let node = this.root;
    for (let i = 0; i < last; i++) node = inner(node, levels[i]!);
    const bytes = encodeRetained(message);
    const level = levels[last]!;
    const old = node.get(level);
    const before = old === undefined ? null : messageOf(old);
    if (old instanceof RetainedNode) old.bytes = bytes;
    else node.put(old === undefined ? intern(level) : level, bytes);
    this.account(message.topic, before, bytes);
    if (message.expiresAt !== 0) this.expiry.set(bytes, message.expiresAt);
  }

  /** Deletes the retained message of `topic`; true when there was one. Nodes left empty are pruned. */
  delete(topic: string): boolean {
    const levels = topic.split("/");
    const path: RetainedNode[] = [this.root];
    for (let i = 0; i < levels.length - 1; i++) {
      const next = path[i]!.get(levels[i]!);
      if (!(next instanceof RetainedNode)) return false;
      path.push(next);
    }
    const parent = path[path.length - 1]!;
    const level = levels[levels.length - 1]!;
    const child = parent.get(level);
    const bytes = child === undefined ? null : messageOf(child);
    if (bytes === null) return false;
    if (child instanceof RetainedNode) child.bytes = null;
    else parent.remove(level);
    this.account(topic, bytes, null);
    prune(path, levels);
    return true;
  }

  /** Counts the change of `topic`'s message from `before` to `after` (null: none). */
  private account(topic: string, before: Uint8Array | null, after: Uint8Array | null): void {
    const count = (after === null ? 0 : 1) - (before === null ? 0 : 1);
    const cost = (after === null ? 0 : costOf(after)) - (before === null ? 0 : costOf(before));
    this.size += count;
    this.bytes += cost;
    if (isSys(topic)) {
      this.sysSize += count;
      this.sysBytes += cost;
    }
    if (before !== null && this.expiry.size > 0) this.expiry.delete(before);
  }

  /** When the stored message `bytes` expires (Date.now() ms), 0 = never. */
  expiresAt(bytes: Uint8Array): number {
    return this.expiry.size === 0 ? 0 : (this.expiry.get(bytes) ?? 0);
  }

  /** The stored message of `topic`, if any. */
  private find(topic: string): Uint8Array | undefined {
    const levels = topic.split("/");
    let node = this.root;
    for (let i = 0; i < levels.length - 1; i++) {
      const next = node.get(levels[i]!);
      if (!(next instanceof RetainedNode)) return undefined;
      node = next;
    }
    const child = node.get(levels[levels.length - 1]!);
    return (child === undefined ? null : messageOf(child)) ?? undefined;
  }

  /** True when `topic` has a retained message (expired or not). */
  has(topic: string): boolean {
    return this.find(topic) !== undefined;
  }

  /** The retained message of `topic`, undefined when none or expired at `now`. */
  get(topic: string, now = Date.now()): Message | undefined {
    const bytes = this.find(topic);
    if (bytes === undefined) return undefined;
    const expiresAt = this.expiresAt(bytes);
    return expiresAt !== 0 && expiresAt <= now ? undefined : retainedMessage(bytes, expiresAt);
  }

  /**
   * The bound a new retained topic of `cost` topic and payload bytes would cross, or null when it
   * fits; a topic that has a retained message already only replaces it, and always fits. The
   * broker's own `$SYS` topics are not counted, nor refused.
   */
  refuses(topic: string, cost: number, maxMessages: number, maxBytes: number): RetainedLimit | null {
    const size = this.size - this.sysSize;
    if ((size < maxMessages && this.bytes - this.sysBytes + cost <= maxBytes) || isSys(topic)) return null;
    if (this.has(topic)) return null;
    return size >= maxMessages ? "messages" : "bytes";
  }

  /** Every retained topic (a full walk: tests and tools, not the broker's paths). */
  *topics(): Generator<string> {
    const stack: [Child, string | null][] = [[this.root, null]];
    while (stack.length > 0) {
      const [child, topic] = stack.pop()!;
      if (topic !== null && messageOf(child) !== null) yield topic;
      if (child instanceof RetainedNode) for (const [k, c] of childList(child)) stack.push([c, topic === null ? k : `${topic}/${k}`]);
    }
  }

  /** Same as topics(): the topics with a retained message. */
  keys(): Generator<string> {
    return this.topics();
  }

  /** A walk over the retained messages matching `filter` (a valid topic filter); see RetainedCursor. */
  walk(filter: string): RetainedCursor {
    return new RetainedCursor(this, this.root, filter.split("/"));
  }

  /** @internal a walk met the expired message `bytes` (the one its topic has now): delete it. */
  expired(bytes: Uint8Array): void {
    const topic = topicOf(bytes);
    if (this.delete(topic)) this.onExpired(topic);
  }
}

/** The node of `level` below `node`, made if need be: a leaf there becomes a node keeping its message. */
function inner(node: RetainedNode, level: string): RetainedNode {
  const child = node.get(level);
  if (child instanceof RetainedNode) return child;
  const made = new RetainedNode();
  if (child === undefined) node.put(intern(level), made);
  else {
    made.bytes = child;
    node.put(level, made);
  }
  return made;
}

/**
 * After a delete below `path` (the nodes from the root down to the deleted topic's parent, each
 * `levels[i]` below `path[i]`): each node left without children is taken away, or, when it still
 * has a message, becomes a leaf of that message.
 */
function prune(path: RetainedNode[], levels: string[]): void {
  for (let i = path.length - 1; i > 0; i--) {
    const node = path[i]!;
    if (node.hasChildren) return;
    if (node.bytes !== null) {
      path[i - 1]!.put(levels[i - 1]!, node.bytes);
      return;
    }
    path[i - 1]!.remove(levels[i - 1]!);
  }
}

/** Work left in a walk: match `filter[i]` at `node`, or go through children. */
interface Frame {
  node: Child;
  /** Filter level to match next; -1: everything below (a '#'). */
  i: number;
  /** Children still to go through, when the level is '+' or '#'. */
  iter: Iterator<[string, Child]> | null;
}

/**
 * A walk over the retained messages that match one filter, resumable: next() visits at most
 * `budget` trie nodes, calling `visit` for each match, and returns true when the walk is done.
 * The trie may change between calls (nodes added or deleted): the walk sees a message as it is
 * when it gets there, and a deleted one not at all.
 */
export class RetainedCursor {
  private readonly stack: Frame[];
  /** Trie nodes visited so far. */
  visited = 0;

  constructor(
    private readonly store: RetainedStore,
    private readonly root: RetainedNode,
    private readonly filter: string[],
  ) {
    this.stack = [{ node: root, i: 0, iter: null }];
  }

  /** True when the walk has nothing left. */
  get done(): boolean {
    return this.stack.length === 0;
  }

  /** Walks on for at most `budget` nodes; `visit` gets each match that has not expired at `now`. True when done. */
  next(budget: number, now: number, visit: RetainedVisit): boolean {
    const stack = this.stack;
    const end = this.visited + budget;
    while (stack.length > 0 && this.visited < end) {
      const top = stack[stack.length - 1]!;
      if (top.iter !== null) {
        // going through the children of a '+' (i = its level) or '#' (i = -1) node
        const r = top.iter.next();
        if (r.done) {
          stack.pop();
          continue;
        }
        const [key, child] = r.value;
        if (top.node === this.root && key.charCodeAt(0) === 0x24) continue; // [MQTT-4.7.2-1] a wildcard first level skips '$' topics
        this.visited++;
        if (top.i < 0) {
          this.emit(messageOf(child), now, visit);
          if (child instanceof RetainedNode && child.hasChildren) stack.push({ node: child, i: -1, iter: children(child) });
        } else this.enter(child, top.i + 1, now, visit);
        continue;
      }
      stack.pop();
      this.visited++;
      this.enter(top.node, top.i, now, visit);
    }
    return stack.length === 0;
  }

  /** At `child`, with filter level `i` to match next. */
  private enter(child: Child, i: number, now: number, visit: RetainedVisit): void {
    const f = this.filter;
    if (i === f.length) {
      this.emit(messageOf(child), now, visit);
      return;
    }
    const level = f[i]!;
    if (!(child instanceof RetainedNode)) {
      if (level === "#") this.emit(child, now, visit); // 'a/#' matches 'a' [MQTT-4.7.1-1]; a leaf is never the root
      return;
    }
    if (level === "#") {
      if (i > 0) this.emit(child.bytes, now, visit); // 'a/#' matches 'a' [MQTT-4.7.1-1]
      if (child.hasChildren) this.stack.push({ node: child, i: -1, iter: children(child) });
    } else if (level === "+") {
      if (child.hasChildren) this.stack.push({ node: child, i, iter: children(child) });
    } else {
      const next = child.get(level);
      if (next !== undefined) this.stack.push({ node: next, i: i + 1, iter: null });
    }
  }

  private emit(bytes: Uint8Array | null, now: number, visit: RetainedVisit): void {
    if (bytes === null) return;
    const expiresAt = this.store.expiresAt(bytes);
    if (expiresAt !== 0 && expiresAt <= now) {
      this.store.expired(bytes);
      return;
    }
    visit(bytes, expiresAt);
  }
}

function children(node: RetainedNode): Iterator<[string, Child]> {
  return childList(node)[Symbol.iterator]();
}

function childList(node: RetainedNode): Iterable<[string, Child]> {
  if (node.kids !== null) return node.kids;
  return node.child === null ? [] : [[node.key!, node.child]];
}

/** The stored form: a v5 PUBLISH with RETAIN set, its properties as published (expiry kept beside it). */
function encodeRetained(m: Message): Uint8Array {
  return encodePacket({ type: PacketType.PUBLISH, dup: false, qos: m.qos, retain: true, topic: m.topicBytes, packetId: m.qos > 0 ? 1 : 0, properties: m.properties, payload: m.payload }, 5);
}

/** The topic length of a stored PUBLISH, whose variable header starts at `at`. */
function topicLength(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 8) | bytes[at + 1]!;
}

/** Topic and payload bytes of a stored PUBLISH, what it is charged for (maxRetainedBytes): read from it rather than kept beside it. */
function costOf(bytes: Uint8Array): number {
  const at = fixedHeaderLength(bytes);
  const topic = topicLength(bytes, at);
  const r = new Reader(bytes, at + 2 + topic + (bytes[0]! & 0x06 ? 2 : 0), bytes.length, "a stored PUBLISH"); // past the packet identifier when QoS > 0
  const properties = r.varint("the property length");
  return topic + bytes.length - r.pos - properties;
}

const decoder = new TextDecoder();

/** The topic of a stored PUBLISH. */
function topicOf(bytes: Uint8Array): string {
  const at = fixedHeaderLength(bytes);
  return decoder.decode(bytes.subarray(at + 2, at + 2 + topicLength(bytes, at)));
}

/**
 * A retained message as the broker sends it: a Message whose topic, payload and properties are
 * views of the stored bytes, which are never changed. A v5 subscriber without its own properties
 * at the message's QoS gets the stored bytes themselves.
 */
export function retainedMessage(bytes: Uint8Array, expiresAt: number): Message {
  const p = decodePacket(bytes, 5) as PublishPacket;
  const topicBytes = p.topic as Uint8Array;
  const forms = new Array(12);
  if (expiresAt === 0) forms[6 + p.qos * 2 + 1] = { bytes, packetIdOffset: fixedHeaderLength(bytes) + 2 + topicBytes.length }; // message.ts formIndex(5, qos, true)
  return {
    topic: decoder.decode(topicBytes),
    topicBytes,
    payload: p.payload,
    qos: p.qos as QoS,
    retain: true,
    properties: p.properties,
    expiresAt,
    persisted: true,
    ownTopic: true,
    forms,
    formsShared: true,
  };
}
