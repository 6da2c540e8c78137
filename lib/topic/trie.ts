/**
 * The subscription trie: one node per topic level, subscribers kept on the node where their filter
 * ends. Matching a topic walks only the branches that can match it: the exact level, '+' and '#'.
 *
 * - `$`-topics never match a filter that starts with '+' or '#' [MQTT-4.7.2-1].
 * - 'a/#' matches 'a' itself as well as everything below it [MQTT-4.7.1-1].
 * - Empty nodes are pruned on removal, so the trie never outgrows the live subscriptions.
 * - add() returns the node, and a subscriber that keeps it can be removed with removeAt() without
 *   walking the tree again.
 * - `generation` changes on every add or remove, so callers can cache match results per topic.
 */

import { asciiString } from "../codec/bytes";
import { LevelMap } from "./levels";

/**
 * A node's children by level. The '+' and '#' children are held apart as well, so that matching
 * finds them without a lookup, and so is the one other child when there is only one (matching
 * compares its level in place). Kept here rather than on every node: a leaf (most nodes, where a
 * filter ends) has no children and pays nothing for them.
 */
class Children<K, V> extends LevelMap<TrieNode<K, V>> {
  plus: TrieNode<K, V> | null = null;
  hash: TrieNode<K, V> | null = null;
  /** The child other than '+' and '#' when there is exactly one, else null; undefined until looked for. */
  only: TrieNode<K, V> | null | undefined = undefined;
}

/** One topic level. */
export class TrieNode<K, V> {
  children: Children<K, V> | null = null;
  subscribers: Map<K, V> | null = null;
  constructor(
    readonly parent: TrieNode<K, V> | null,
    readonly level: string,
  ) {}
}

/** Topic filters mapped to subscribers (K) with a value each (V: options). */
export class TopicTrie<K, V> {
  readonly root = new TrieNode<K, V>(null, "");
  /** Changes whenever a subscription is added or removed. */
  generation = 0;
  /** Number of (filter, subscriber) entries. */
  size = 0;

  /** Adds or replaces `key`'s subscription to `filter`; returns the filter's node. */
  add(filter: string, key: K, value: V): TrieNode<K, V> {
    let node = this.root;
    for (const level of filter.split("/")) {
      const children = node.children ?? (node.children = new Children());
      let child = children.get(level);
      if (child === undefined) {
        child = new TrieNode(node, level);
        children.set(level, child);
        if (level === "+") children.plus = child;
        else if (level === "#") children.hash = child;
        else children.only = undefined;
      }
      node = child;
    }
    const subs = node.subscribers ?? (node.subscribers = new Map());
    if (!subs.has(key)) this.size++;
    subs.set(key, value);
    this.generation++;
    return node;
  }

  /** The node of `filter`, if any subscriber or deeper filter keeps it alive. */
  find(filter: string): TrieNode<K, V> | undefined {
    let node: TrieNode<K, V> | undefined = this.root;
    for (const level of filter.split("/")) {
      node = node.children?.get(level);
      if (node === undefined) return undefined;
    }
    return node;
  }

  /** Removes `key`'s subscription to `filter`; true when there was one. */
  remove(filter: string, key: K): boolean {
    const node = this.find(filter);
    return node !== undefined && this.removeAt(node, key);
  }

  /** Removes `key` from a node returned by add(), pruning nodes left empty. */
  removeAt(node: TrieNode<K, V>, key: K): boolean {
    if (node.subscribers === null || !node.subscribers.delete(key)) return false;
    this.size--;
    this.generation++;
    let n: TrieNode<K, V> | null = node;
    while (n !== null && n.parent !== null && (n.subscribers === null || n.subscribers.size === 0) && (n.children === null || n.children.size === 0)) {
      const siblings: Children<K, V> = n.parent.children!;
      siblings.delete(n.level);
      if (siblings.plus === n) siblings.plus = null;
      else if (siblings.hash === n) siblings.hash = null;
      else siblings.only = undefined;
      n = n.parent;
    }
    return true;
  }

  /**
   * Pushes onto `out` every node whose subscribers match `topic` (a topic name, no wildcards),
   * each once. The topic is walked by index: a level's string is made only where a node has
   * children other than '+' and '#' to look it up in.
   */
  matchNodes(topic: string, out: TrieNode<K, V>[]): void {
    this.walk(this.root, topic, 0, topic.charCodeAt(0) === 0x24 /* $ */, out);
  }

  /**
   * matchNodes() over the topic name `bytes[start, end)`, which must be ASCII (a validated topic
   * with no byte past 0x7f): no string is made for the topic, and one for a level only where a
   * node has several children other than '+' and '#' to look it up in. An ASCII level equals a
   * node's level exactly when their lengths and code units agree (a non-ASCII level never does).
   */
  matchAsciiNodes(bytes: Uint8Array, start: number, end: number, out: TrieNode<K, V>[]): void {
    this.read = 0;
    this.walkBytes(this.root, bytes, start, end, start, 0, start < end && bytes[start] === 0x24 /* $ */, out);
  }

  /**
   * After matchAsciiNodes(): a bit per level whose content the walk read (bit 30 for level 30 and
   * deeper). The walk reads a level where a node has children other than '+' and '#' to compare it
   * with, and the first level where the root has '+' or '#' (a `$` there keeps them out). Until the
   * trie changes, a topic with as many levels and the same content at every level read matches the
   * same nodes (sameMatch()).
   */
  read = 0;

  /** Calls `visit` for every subscription whose filter matches `topic` (a topic name, no wildcards). */
  match(topic: string, visit: (key: K, value: V) => void): void {
    const nodes: TrieNode<K, V>[] = [];
    this.matchNodes(topic, nodes);
    for (const node of nodes) for (const [k, v] of node.subscribers!) visit(k, v);
  }

  /** `start` is where the level to match begins; past the end of the topic, every level matched. */
  private walk(node: TrieNode<K, V>, topic: string, start: number, dollar: boolean, out: TrieNode<K, V>[]): void {
    const children = node.children;
    if (start > topic.length) {
      if (node.subscribers !== null && node.subscribers.size > 0) out.push(node);
      const hash = children === null ? null : children.hash; // 'a/#' matches 'a' [MQTT-4.7.1-1]
      if (hash !== null && hash.subscribers !== null && hash.subscribers.size > 0) out.push(hash);
      return;
    }
    if (children === null) return;
    let end = topic.indexOf("/", start);
    if (end < 0) end = topic.length;
    if (!(dollar && start === 0)) {
      // [MQTT-4.7.2-1]: no wildcard at the first level matches a $-topic
      const hash = children.hash;
      if (hash !== null && hash.subscribers !== null && hash.subscribers.size > 0) out.push(hash);
      if (children.plus !== null) this.walk(children.plus, topic, end + 1, dollar, out);
    }
    const exacts = children.size - (children.plus === null ? 0 : 1) - (children.hash === null ? 0 : 1);
    if (exacts === 1) {
      // one level to compare with: no string made for the topic's level, no lookup
      const only = children.only === undefined ? (children.only = onlyExact(children)) : children.only;
      if (only !== null && only.level.length === end - start && topic.startsWith(only.level, start)) this.walk(only, topic, end + 1, dollar, out);
    } else if (exacts > 1) {
      const exact = children.get(start === 0 && end === topic.length ? topic : topic.substring(start, end));
      if (exact !== undefined && exact !== children.plus && exact !== children.hash) this.walk(exact, topic, end + 1, dollar, out);
    }
  }

  /**
   * walk() over bytes: `from` is where the level to match begins in `bytes[begin, end)`. A loop
   * down the trie rather than a call per level: only where both a '+' child and an exact child
   * match does it branch (a call for the exact one).
   */
  private walkBytes(node: TrieNode<K, V>, bytes: Uint8Array, begin: number, end: number, from: number, level: number, dollar: boolean, out: TrieNode<K, V>[]): void {
    for (; ; level++) {
      const children = node.children;
      if (from > end) {
        if (node.subscribers !== null && node.subscribers.size > 0) out.push(node);
        const hash = children === null ? null : children.hash; // 'a/#' matches 'a' [MQTT-4.7.1-1]
        if (hash !== null && hash.subscribers !== null && hash.subscribers.size > 0) out.push(hash);
        return;
      }
      if (children === null) return;
      let stop = from;
      while (stop < end && bytes[stop] !== 0x2f) stop++;
      const plus = children.plus;
      const hash = children.hash;
      let next: TrieNode<K, V> | null = null;
      const exacts = children.size - (plus === null ? 0 : 1) - (hash === null ? 0 : 1);
      if (exacts > 0 || (from === begin && (plus !== null || hash !== null))) this.read |= levelBit(level);
      if (exacts === 1) {
        // one level to compare with, in place: no string made, no lookup
        const only = children.only === undefined ? (children.only = onlyExact(children)) : children.only;
        if (only !== null) {
          const level = only.level;
          const n = stop - from;
          if (level.length === n) {
            let i = 0;
            while (i < n && level.charCodeAt(i) === bytes[from + i]) i++;
            if (i === n) next = only;
          }
        }
      } else if (exacts > 1) {
        const exact = children.get(asciiString(bytes, from, stop));
        if (exact !== undefined && exact !== plus && exact !== hash) next = exact;
      }
      if (!(dollar && from === begin)) {
        // [MQTT-4.7.2-1]: no wildcard at the first level matches a $-topic
        if (hash !== null && hash.subscribers !== null && hash.subscribers.size > 0) out.push(hash);
        if (plus !== null) {
          if (next !== null) this.walkBytes(next, bytes, begin, end, stop + 1, level + 1, dollar, out);
          node = plus;
          from = stop + 1;
          continue;
        }
      }
      if (next === null) return;
      node = next;
      from = stop + 1;
    }
  }
}

/** The child other than '+' and '#' when there is exactly one, else null. */
function onlyExact<K, V>(children: Children<K, V>): TrieNode<K, V> | null {
  let only: TrieNode<K, V> | null = null;
  for (const [, child] of children) {
    if (child === children.plus || child === children.hash) continue;
    if (only !== null) return null;
    only = child;
  }
  return only;
}

/** A level's bit in TopicTrie.read: bit 30 stands for level 30 and every deeper one. */
export function levelBit(level: number): number {
  return 1 << (level < 30 ? level : 30);
}

/**
 * True when two topic names match the same trie nodes, given `read`, the levels the walk of
 * `before` read (TopicTrie.read), and a trie unchanged since: they differ in one stretch that holds
 * no '/' in either (so their levels are as many) and lies within a level the walk did not read.
 * A publisher for many devices (`dev/<id>/state`, matched by `dev/+/state`) is matched once.
 */
export function sameMatch(before: Uint8Array, after: Uint8Array, read: number): boolean {
  const bl = before.length;
  const al = after.length;
  const min = bl < al ? bl : al;
  let a = 0;
  let level = 0; // of the first difference
  for (; a < min; a++) {
    const c = after[a];
    if (c !== before[a]) break;
    if (c === 0x2f) level++;
  }
  if (a === bl && a === al) return true;
  if ((read & levelBit(level)) !== 0) return false;
  let b = 0; // the common end, not overlapping the common start
  while (b < min - a && before[bl - 1 - b] === after[al - 1 - b]) b++;
  for (let i = a; i < bl - b; i++) if (before[i] === 0x2f) return false;
  for (let i = a; i < al - b; i++) if (after[i] === 0x2f) return false;
  return true;
}
