/**
 * The children of a trie node by topic level: a Map, split into shards once it is large. A JS
 * Map rehashes all its entries at once when it grows or shrinks past a power of two, which for a
 * node with a million children (`dev/<id>`) holds the event loop for tens of milliseconds; shards
 * of at most a few thousand entries each rehash in well under a millisecond.
 */

/** Entries past which a LevelMap splits into shards. */
const SPLIT = 4096;
const SHARDS = 256;

/** A string's shard: FNV-1a over its UTF-16 code units. */
function shardOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % SHARDS;
}

/** A map from topic level to child node with a Map's get/set/delete/size and iteration. */
export class LevelMap<V> {
  private small: Map<string, V> | null = new Map();
  private shards: Map<string, V>[] | null = null;
  /** Number of entries. */
  size = 0;

  /** The child of `key`, if any. */
  get(key: string): V | undefined {
    return this.small !== null ? this.small.get(key) : this.shards![shardOf(key)]!.get(key);
  }

  /** Sets the child of `key`. */
  set(key: string, value: V): this {
    const map = this.small ?? this.shards![shardOf(key)]!;
    const had = map.size;
    map.set(key, value);
    this.size += map.size - had;
    if (this.small !== null && this.size > SPLIT) this.split();
    return this;
  }

  /** Removes the child of `key`; true when there was one. */
  delete(key: string): boolean {
    const map = this.small ?? this.shards![shardOf(key)]!;
    if (!map.delete(key)) return false;
    this.size--;
    return true;
  }

  private split(): void {
    const shards = Array.from({ length: SHARDS }, () => new Map<string, V>());
    for (const [k, v] of this.small!) shards[shardOf(k)]!.set(k, v);
    this.shards = shards;
    this.small = null;
  }

  /** Every [level, child]; deleting during the iteration is safe, as with a Map. */
  *entries(): Generator<[string, V]> {
    if (this.small !== null) yield* this.small;
    else for (const shard of this.shards!) yield* shard;
  }

  /** Same as entries(). */
  [Symbol.iterator](): Generator<[string, V]> {
    return this.entries();
  }
}
