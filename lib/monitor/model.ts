/**
 * The monitor's data: the latest message, a short history and the recent numeric values of each
 * topic, plus totals and the message rate.
 *
 * Per-message work is O(1) amortised (a Map update and two bounded arrays trimmed in batches), so
 * that 10 000 msg/s over thousands of topics costs little; everything that depends on the whole
 * topic set (sorting, filtering, the tree) is computed when a frame is drawn, and the sorted list
 * is cached until a new topic arrives.
 */

/** How many messages of a topic the history view shows. */
export const HISTORY = 100;
/** How many numeric values of a topic the sparkline shows. */
export const SPARK = 24;

/** One received message, as the monitor keeps it. */
export interface Entry {
  /** Milliseconds since the epoch when it arrived. */
  time: number;
  payload: Uint8Array;
  qos: number;
  retain: boolean;
}

/** What the monitor knows of one topic. */
export interface TopicState {
  topic: string;
  count: number;
  last: Entry;
  /** The recent messages, oldest first; up to 2 x HISTORY long between trims. */
  history: Entry[];
  /** The recent numeric payloads, oldest first (empty while payloads are not numbers). */
  values: number[];
}

const decoder = new TextDecoder();

/** The payload as a finite number when it is a short decimal number, else null. */
export function numericPayload(payload: Uint8Array): number | null {
  if (payload.length === 0 || payload.length > 32) return null;
  const c = payload[0]!;
  // quick reject: a number starts with a digit, a sign or a dot
  if (!((c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x20)) return null;
  const text = decoder.decode(payload).trim();
  if (text === "") return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

/** The topics, their messages and the counters of a monitor session. */
export class MonitorModel {
  readonly topics = new Map<string, TopicState>();
  /** The broker, as `host:port`, and whether the client is connected to it. */
  broker = "";
  connected = true;
  /** Messages received since the start. */
  total = 0;
  /** Messages received in the last full second. */
  rate = 0;
  private rateBase = 0;
  private sorted: TopicState[] | null = null;

  /** Records one message (O(1) amortised). */
  add(topic: string, payload: Uint8Array, qos: number, retain: boolean, time = Date.now()): void {
    this.total++;
    const entry: Entry = { time, payload, qos, retain };
    let t = this.topics.get(topic);
    if (t === undefined) {
      t = { topic, count: 0, last: entry, history: [], values: [] };
      this.topics.set(topic, t);
      this.sorted = null;
    }
    t.count++;
    t.last = entry;
    t.history.push(entry);
    if (t.history.length >= 2 * HISTORY) t.history = t.history.slice(-HISTORY);
    const n = numericPayload(payload);
    if (n === null) {
      if (t.values.length > 0) t.values = [];
    } else {
      t.values.push(n);
      if (t.values.length >= 2 * SPARK) t.values = t.values.slice(-SPARK);
    }
  }

  /** Called once a second: the rate becomes the number of messages since the previous call. */
  tick(): void {
    this.rate = this.total - this.rateBase;
    this.rateBase = this.total;
  }

  /** The topics sorted by name (cached until a new topic arrives). */
  sortedTopics(): TopicState[] {
    this.sorted ??= [...this.topics.values()].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
    return this.sorted;
  }
}

/** One line of the topic tree: a level of the topic hierarchy with its message count. */
export interface TreeLine {
  depth: number;
  name: string;
  /** Messages received on this topic and every topic below it. */
  count: number;
  /** Topics at or below this level. */
  topics: number;
}

interface TreeNode {
  name: string;
  count: number;
  topics: number;
  children: Map<string, TreeNode>;
}

/** The topic tree of `topics` (sorted by name), flattened depth first, with counts per branch. */
export function topicTree(topics: readonly TopicState[]): TreeLine[] {
  const root: TreeNode = { name: "", count: 0, topics: 0, children: new Map() };
  for (const t of topics) {
    let node = root;
    for (const level of t.topic.split("/")) {
      let child = node.children.get(level);
      if (child === undefined) {
        child = { name: level, count: 0, topics: 0, children: new Map() };
        node.children.set(level, child);
      }
      child.count += t.count;
      child.topics++;
      node = child;
    }
  }
  const lines: TreeLine[] = [];
  const walk = (node: TreeNode, depth: number) => {
    for (const child of node.children.values()) {
      lines.push({ depth, name: child.name, count: child.count, topics: child.topics });
      walk(child, depth + 1);
    }
  };
  walk(root, 0);
  return lines;
}
