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

import { LevelMap } from "./levels";

/** One topic level. */
export class TrieNode<K, V> {
  children: LevelMap<TrieNode<K, V>> | null = null;
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
      const children = node.children ?? (node.children = new LevelMap());
      let child = children.get(level);
      if (child === undefined) {
        child = new TrieNode(node, level);
        children.set(level, child);
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
      n.parent.children!.delete(n.level);
      n = n.parent;
    }
    return true;
  }

  /** Calls `visit` for every subscription whose filter matches `topic` (a topic name, no wildcards). */
  match(topic: string, visit: (key: K, value: V) => void): void {
    const levels = topic.split("/");
    this.walk(this.root, levels, 0, topic.charCodeAt(0) === 0x24 /* $ */, visit);
  }

  private walk(node: TrieNode<K, V>, levels: string[], i: number, dollar: boolean, visit: (key: K, value: V) => void): void {
    const children = node.children;
    if (i === levels.length) {
      if (node.subscribers !== null) for (const [k, v] of node.subscribers) visit(k, v);
      const hash = children?.get("#"); // 'a/#' matches 'a' [MQTT-4.7.1-1]
      if (hash?.subscribers) for (const [k, v] of hash.subscribers) visit(k, v);
      return;
    }
    if (children === null) return;
    const wildcardsAllowed = !(dollar && i === 0); // [MQTT-4.7.2-1]
    if (wildcardsAllowed) {
      const hash = children.get("#");
      if (hash?.subscribers) for (const [k, v] of hash.subscribers) visit(k, v);
      const plus = children.get("+");
      if (plus !== undefined) this.walk(plus, levels, i + 1, dollar, visit);
    }
    const exact = children.get(levels[i]!);
    if (exact !== undefined) this.walk(exact, levels, i + 1, dollar, visit);
  }
}
