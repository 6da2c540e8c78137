/**
 * Retained messages in a topic trie, the same shape as the subscription trie (lib/topic/trie.ts)
 * seen from the other side: here the trie holds topic names and is walked with a filter. A
 * wildcard subscription then costs O(matches + depth), whatever the total count.
 *
 * - Each message is stored once, as its encoded v5 PUBLISH (RETAIN set, packet identifier 1),
 *   with its expiry beside it; a Message is made from those bytes only when one is sent.
 * - A node keeps a single child inline and only makes a Map for its second: most topic levels
 *   below a device's own have one child (`dev/<id>/state`).
 * - `$`-topics never match a filter starting with '+' or '#' [MQTT-4.7.2-1]; 'a/#' matches 'a'
 *   [MQTT-4.7.1-1]. Expired messages are deleted when a walk meets them.
 * - A walk is a RetainedCursor that goes on where it stopped: large walks are done in slices.
 */
import { PacketType, type QoS } from "../codec/constants";
import { decodePacket, encodePacket } from "../codec/packet";
import type { PublishPacket } from "../codec/packets/publish";
import { LevelMap } from "../topic/levels";
import type { Message } from "./message";

/** One topic level of the retained trie. */
class RetainedNode {
  /** The only child (`key` is its level) until a second one comes; then `kids` holds them all. */
  key: string | null = null;
  child: RetainedNode | null = null;
  kids: LevelMap<RetainedNode> | null = null;
  /** The retained message on this topic: its encoded v5 PUBLISH, or null. */
  bytes: Uint8Array | null = null;
  /** When it expires (Date.now() ms), 0 = never. */
  expiresAt = 0;
  /** Topic and payload bytes it is charged for (maxRetainedBytes). */
  cost = 0;

  get(level: string): RetainedNode | undefined {
    if (this.kids !== null) return this.kids.get(level);
    return this.key === level ? this.child! : undefined;
  }

  add(level: string): RetainedNode {
    const node = new RetainedNode();
    if (this.kids !== null) this.kids.set(level, node);
    else if (this.child === null) {
      this.key = level;
      this.child = node;
    } else {
      this.kids = new LevelMap<RetainedNode>().set(this.key!, this.child).set(level, node);
      this.key = null;
      this.child = null;
    }
    return node;
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

  get empty(): boolean {
    return this.bytes === null && this.child === null && this.kids === null;
  }
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

/** A retained message as a walk finds it: its stored PUBLISH and expiry. */
export interface RetainedEntry {
  readonly bytes: Uint8Array;
  readonly expiresAt: number;
}

/** Why a new retained topic is refused: the count or the bytes bound. */
export type RetainedLimit = "messages" | "bytes";

/** The retained messages: set, delete, look up, and walk by a topic filter. */
export class RetainedStore {
  private readonly root = new RetainedNode();
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
    let node = this.root;
    for (const level of message.topic.split("/")) node = node.get(level) ?? node.add(intern(level));
    const cost = message.topicBytes.length + message.payload.length;
    if (node.bytes === null) this.size++;
    this.bytes += cost - node.cost;
    if (isSys(message.topic)) {
      if (node.bytes === null) this.sysSize++;
      this.sysBytes += cost - node.cost;
    }
    node.bytes = encodeRetained(message);
    node.expiresAt = message.expiresAt;
    node.cost = cost;
  }

  /** Deletes the retained message of `topic`; true when there was one. Nodes left empty are pruned. */
  delete(topic: string): boolean {
    const levels = topic.split("/");
    const path: RetainedNode[] = [this.root];
    let node = this.root;
    for (const level of levels) {
      const next = node.get(level);
      if (next === undefined) return false;
      path.push((node = next));
    }
    if (node.bytes === null) return false;
    this.size--;
    this.bytes -= node.cost;
    if (isSys(topic)) {
      this.sysSize--;
      this.sysBytes -= node.cost;
    }
    node.bytes = null;
    node.cost = 0;
    node.expiresAt = 0;
    for (let i = levels.length; i > 0 && path[i]!.empty; i--) path[i - 1]!.remove(levels[i - 1]!);
    return true;
  }

  /** The node of `topic` holding a message, if any. */
  private find(topic: string): RetainedNode | undefined {
    let node: RetainedNode | undefined = this.root;
    for (const level of topic.split("/")) {
      node = node.get(level);
      if (node === undefined) return undefined;
    }
    return node.bytes === null ? undefined : node;
  }

  /** True when `topic` has a retained message (expired or not). */
  has(topic: string): boolean {
    return this.find(topic) !== undefined;
  }

  /** The retained message of `topic`, undefined when none or expired at `now`. */
  get(topic: string, now = Date.now()): Message | undefined {
    const node = this.find(topic);
    if (node === undefined || (node.expiresAt !== 0 && node.expiresAt <= now)) return undefined;
    return retainedMessage(node as RetainedEntry);
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
    const stack: [RetainedNode, string | null][] = [[this.root, null]];
    while (stack.length > 0) {
      const [node, topic] = stack.pop()!;
      if (topic !== null && node.bytes !== null) yield topic;
      for (const [k, c] of childList(node)) stack.push([c, topic === null ? k : `${topic}/${k}`]);
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

  /** @internal a walk met an expired message: delete it. */
  expired(node: RetainedNode, topic: string): void {
    if (node.bytes !== null && this.delete(topic)) this.onExpired(topic);
  }
}

/** Work left in a walk: match `filter[i]` at `node`, or go through children. */
interface Frame {
  node: RetainedNode;
  /** Filter level to match next; -1: everything below (a '#'). */
  i: number;
  /** Children still to go through, when the level is '+' or '#'. */
  iter: Iterator<[string, RetainedNode]> | null;
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
  next(budget: number, now: number, visit: (entry: RetainedEntry) => void): boolean {
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
          this.emit(child, now, visit);
          if (child.child !== null || child.kids !== null) stack.push({ node: child, i: -1, iter: children(child) });
        } else this.enter(child, top.i + 1, now, visit);
        continue;
      }
      stack.pop();
      this.visited++;
      this.enter(top.node, top.i, now, visit);
    }
    return stack.length === 0;
  }

  /** At `node`, with filter level `i` to match next. */
  private enter(node: RetainedNode, i: number, now: number, visit: (entry: RetainedEntry) => void): void {
    const f = this.filter;
    if (i === f.length) {
      this.emit(node, now, visit);
      return;
    }
    const level = f[i]!;
    if (level === "#") {
      if (i > 0) this.emit(node, now, visit); // 'a/#' matches 'a' [MQTT-4.7.1-1]
      if (node.child !== null || node.kids !== null) this.stack.push({ node, i: -1, iter: children(node) });
    } else if (level === "+") {
      if (node.child !== null || node.kids !== null) this.stack.push({ node, i, iter: children(node) });
    } else {
      const next = node.get(level);
      if (next !== undefined) this.stack.push({ node: next, i: i + 1, iter: null });
    }
  }

  private emit(node: RetainedNode, now: number, visit: (entry: RetainedEntry) => void): void {
    if (node.bytes === null) return;
    if (node.expiresAt !== 0 && node.expiresAt <= now) {
      this.store.expired(node, topicOf(node.bytes));
      return;
    }
    visit(node as RetainedEntry);
  }
}

function children(node: RetainedNode): Iterator<[string, RetainedNode]> {
  return childList(node)[Symbol.iterator]();
}

function childList(node: RetainedNode): Iterable<[string, RetainedNode]> {
  if (node.kids !== null) return node.kids;
  return node.child === null ? [] : [[node.key!, node.child]];
}

/** The stored form: a v5 PUBLISH with RETAIN set, its properties as published (expiry kept beside it). */
function encodeRetained(m: Message): Uint8Array {
  return encodePacket({ type: PacketType.PUBLISH, dup: false, qos: m.qos, retain: true, topic: m.topicBytes, packetId: m.qos > 0 ? 1 : 0, properties: m.properties, payload: m.payload }, 5);
}

const decoder = new TextDecoder();

/** The topic of a stored PUBLISH. */
function topicOf(bytes: Uint8Array): string {
  let i = 1;
  while (bytes[i]! & 0x80) i++;
  const n = (bytes[i + 1]! << 8) | bytes[i + 2]!;
  return decoder.decode(bytes.subarray(i + 3, i + 3 + n));
}

/**
 * A retained message as the broker sends it: a Message whose topic, payload and properties are
 * views of the stored bytes, which are never changed. A v5 subscriber without its own properties
 * at the message's QoS gets the stored bytes themselves.
 */
export function retainedMessage(entry: RetainedEntry): Message {
  const p = decodePacket(entry.bytes, 5) as PublishPacket;
  const topicBytes = p.topic as Uint8Array;
  const forms = new Array(12);
  if (entry.expiresAt === 0) {
    let header = 1;
    while (entry.bytes[header]! & 0x80) header++;
    forms[6 + p.qos * 2 + 1] = { bytes: entry.bytes, packetIdOffset: header + 1 + 2 + topicBytes.length }; // message.ts formIndex(5, qos, true)
  }
  return {
    topic: decoder.decode(topicBytes),
    topicBytes,
    payload: p.payload,
    qos: p.qos as QoS,
    retain: true,
    properties: p.properties,
    expiresAt: entry.expiresAt,
    persisted: true,
    ownTopic: true,
    forms,
    formsShared: true,
  };
}
