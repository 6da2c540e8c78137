/**
 * Routing: who gets a message. The subscription trie (shared groups beside normal subscriptions),
 * the match cache (results per topic until the subscriptions change) and route(), which merges a
 * client's overlapping subscriptions into one delivery at the highest granted QoS and hands it to
 * the outbox. No sockets here: the outbox and the connections do the sending.
 */
import type { QoS } from "../codec/constants";
import { TopicTrie, type TrieNode } from "../topic/trie";
import { SharedGroup } from "../topic/shared";
import { topicMatches } from "../topic/match";
import type { Message } from "./message";
import type { Outbox } from "./outbox";
import type { BrokerOptions } from "./options";
import type { Group, Session, Subscriber, SubscriptionEntry } from "./session";

/** A client's merged delivery for one topic: its matching subscriptions. */
export interface Delivery {
  session: Session;
  subs: SubscriptionEntry[];
}

/** What a topic matches: sessions with their subscriptions, and shared groups. */
export interface Matches {
  deliveries: Delivery[];
  groups: Group[];
}

/** Read access as the router needs it (the broker's access rules). */
export interface ReadAccess {
  /** True when access rules are in force. */
  readonly checksAccess: boolean;
  /** Whether a session's client may read a topic. */
  mayRead(session: Session, topic: string): boolean;
}

const MATCH_CACHE_MAX = 10_000;
/** What a topic nobody subscribed to matches. */
const NO_MATCHES: Matches = Object.freeze({ deliveries: [], groups: [] }) as unknown as Matches;

/** Told when this node starts or stops needing a filter or a shared group (the cluster engine's interest). */
export interface Interest {
  /** A subscription to `filter` was added (one call per subscription, not per filter). */
  subscribed(filter: string): void;
  /** A subscription to `filter` was removed. */
  unsubscribed(filter: string): void;
  /** The first member joined the shared group `key` (`$share/{shareName}/{filter}`). */
  groupAdded(key: string, shareName: string, filter: string): void;
  /** The last member left the shared group `key`. */
  groupRemoved(key: string): void;
}

/** True for the broker's own `$SYS` topics: they stay on the node that made them. */
function isSysTopic(topic: string): boolean {
  return topic.startsWith("$SYS");
}

/** The trie, the match cache and route(). */
export class Router {
  /** Where messages go beyond this node (the cluster engine's publish), null on a lone broker. Shared groups are then served through it. */
  outbound: ((message: Message) => void) | null = null;
  /** Told about the filters and shared groups this node needs, null on a lone broker. */
  interest: Interest | null = null;
  readonly trie = new TopicTrie<Subscriber, SubscriptionEntry | Group>();
  /** Shared-subscription groups by their full `$share/{name}/{filter}`. */
  readonly sharedGroups = new Map<string, Group>();
  private matchCache = new Map<string, Matches>();
  /** Hits since the cache was last cleared, and how many lookups go past it before it is tried again. */
  private cacheHits = 0;
  private cacheBypass = 0;
  /** Subscriptions held by sessions: normal ones, and shared ones (each member counts). */
  normalCount = 0;
  sharedCount = 0;
  private matchGeneration = -1;
  /** What a trie node matches when it is the only one a topic matched, kept (and forgotten) with the cache. */
  private readonly byNode = new Map<TrieNode<Subscriber, SubscriptionEntry | Group>, Matches>();

  /** `retain` stores or clears a retained message routed with RETAIN set. */
  constructor(
    private readonly options: BrokerOptions,
    private readonly outbox: Outbox,
    private readonly access: ReadAccess,
    private readonly retain: (message: Message) => void,
  ) {}

  /** Counts invalidate() calls: a match kept elsewhere (MatchMemo) holds while it and the trie's generation stay the same. */
  invalidations = 0;

  /** Forgets cached matches (who may read what changed). */
  invalidate(): void {
    this.matchGeneration = -1;
    this.invalidations++;
  }

  /**
   * True when a topic can be matched by its bytes alone (matchAscii): no access rules read it and
   * no denied filter does, which would need it as a string.
   */
  get matchesBytes(): boolean {
    return !this.access.checksAccess && this.options.deniedTopicFilters.length === 0;
  }

  /**
   * match() for a topic name given as ASCII bytes, when matchesBytes: the trie is walked over the
   * bytes and no string is made for the topic. Not cached here (the cache is keyed by strings);
   * a publisher that repeats its topic keeps the answer (MatchMemo).
   */
  matchAscii(bytes: Uint8Array): Matches {
    if (this.matchGeneration !== this.trie.generation) this.forgetMatches();
    const nodes = this.nodes;
    nodes.length = 0;
    this.trie.matchAsciiNodes(bytes, 0, bytes.length, nodes);
    return this.matchesOf(nodes, "");
  }

  /** True when a message on `topic` goes to the other nodes of a cluster. */
  sendsOut(topic: string): boolean {
    return this.outbound !== null && !isSysTopic(topic);
  }

  /**
   * Delivers a message to every matching subscription (`matches`, when the caller looked them up
   * already); `origin` is the publishing session. In a cluster the message also goes to the other
   * nodes, and shared groups get it through the cluster (one member across all nodes); a message
   * that came from another node (`remote`) is delivered here only, and not retained again.
   */
  route(message: Message, origin: Session | null, matches: Matches = this.match(message.topic), remote = false): void {
    if (message.retain && this.options.retainAvailable && !remote) this.retain(message);
    const { deliveries, groups } = matches;
    message.formsShared = deliveries.length + groups.length > 1; // one subscriber: encoded straight into its output
    const now = message.expiresAt === 0 ? 0 : Date.now();
    for (let i = 0; i < deliveries.length; i++) {
      const d = deliveries[i]!;
      const subs = d.subs;
      if (subs.length === 1) {
        const s = subs[0]!;
        if (s.noLocal && d.session === origin) continue; // [MQTT-3.8.3-3]
        this.deliverTo(s, message, now);
        continue;
      }
      // overlapping subscriptions: one delivery at the highest QoS, with every identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3]
      let qos = -1;
      let retainFlag = false;
      let ids: number[] | null = null;
      for (const s of subs) {
        if (s.noLocal && d.session === origin) continue;
        const q = s.qos < message.qos ? s.qos : message.qos;
        if (q > qos) qos = q;
        if (s.retainAsPublished && message.retain) retainFlag = true;
        if (s.subscriptionId !== undefined) (ids ??= []).push(s.subscriptionId);
      }
      if (qos >= 0) this.outbox.deliver(d.session, message, qos as QoS, retainFlag, ids, now);
    }
    if (remote) return;
    if (this.sendsOut(message.topic)) {
      this.outbound!(message);
      return;
    }
    // each shared group once, to one member [MQTT-4.8.2-3]
    for (let i = 0; i < groups.length; i++) {
      const member = groups[i]!.pick((m) => this.canTake(m.session, message));
      if (member !== undefined) this.deliverTo(member, message, now);
    }
  }

  /** Delivers a message the cluster gave this node for the shared group `key` to one member [MQTT-4.8.2-3]. */
  deliverShared(key: string, message: Message): void {
    const group = this.sharedGroups.get(key);
    if (group === undefined || this.isDenied(message.topic)) return;
    const member = group.pick((m) => this.canTake(m.session, message));
    if (member !== undefined) this.deliverTo(member, message, message.expiresAt === 0 ? 0 : Date.now());
  }

  /** Delivers a message as one subscription asks: its QoS, Retain As Published, identifier. */
  private deliverTo(s: SubscriptionEntry, message: Message, now: number): void {
    const qos = (s.qos < message.qos ? s.qos : message.qos) as QoS;
    this.outbox.deliver(s.session, message, qos, s.retainAsPublished && message.retain, s.subscriptionId === undefined ? null : [s.subscriptionId], now);
  }

  /** True when a session is online, has room for the message now and may read it (a shared group's choice). */
  private canTake(session: Session, message: Message): boolean {
    return this.outbox.hasRoom(session, message) && (!this.access.checksAccess || this.access.mayRead(session, message.topic));
  }

  /** Matching sessions for a topic, each with its matching subscriptions, and shared groups; cached per topic. */
  match(topic: string): Matches {
    if (this.matchGeneration !== this.trie.generation) this.forgetMatches();
    const cached = this.cacheBypass === 0;
    let matches: Matches | undefined;
    if (cached) {
      matches = this.matchCache.get(topic);
      if (matches !== undefined) {
        this.cacheHits++;
        return matches;
      }
    } else this.cacheBypass--;
    const nodes = this.nodes;
    nodes.length = 0;
    // a denied topic reaches nobody, also through a broader filter such as '#' that was granted
    if (!this.isDenied(topic)) this.trie.matchNodes(topic, nodes);
    matches = this.matchesOf(nodes, topic);
    if (!cached) return matches;
    if (this.matchCache.size >= MATCH_CACHE_MAX) {
      // full: when it filled with topics seen once (every device on its own topic), it is left
      // alone for a while instead of being filled again with topics that do not come back
      if (this.cacheHits < MATCH_CACHE_MAX / 2) this.cacheBypass = MATCH_CACHE_MAX * 4;
      this.matchCache.clear();
      this.cacheHits = 0;
      if (this.cacheBypass > 0) return matches;
    }
    this.matchCache.set(topic, matches);
    return matches;
  }

  /** Clears what was kept of earlier matches: the subscriptions, or who may read what, changed. */
  private forgetMatches(): void {
    this.matchCache.clear();
    this.byNode.clear();
    this.cacheHits = 0;
    this.matchGeneration = this.trie.generation;
  }

  private readonly nodes: TrieNode<Subscriber, SubscriptionEntry | Group>[] = [];

  /** What the trie nodes a topic matched give: its deliveries and groups. */
  private matchesOf(nodes: TrieNode<Subscriber, SubscriptionEntry | Group>[], topic: string): Matches {
    if (nodes.length === 0) return NO_MATCHES;
    if (nodes.length > 1 || this.access.checksAccess) return this.collect(nodes, topic);
    // one filter matched (every device on its own topic, one subscriber to dev/+/state): what it
    // matches is the same for every topic, kept by node
    const node = nodes[0]!;
    let matches = this.byNode.get(node);
    if (matches === undefined) this.byNode.set(node, (matches = this.collect(nodes, topic)));
    return matches;
  }

  /** The deliveries and groups of the subscribers of `nodes`, a client's subscriptions merged into one delivery. */
  private collect(nodes: TrieNode<Subscriber, SubscriptionEntry | Group>[], topic: string): Matches {
    const bySession = new Map<Session, Delivery>();
    const groups: Group[] = [];
    const checksAccess = this.access.checksAccess;
    for (let i = 0; i < nodes.length; i++) {
      for (const [subscriber, entry] of nodes[i]!.subscribers!) {
        if (entry instanceof SharedGroup) {
          groups.push(entry);
          continue;
        }
        const session = subscriber as Session;
        if (session.ended) continue; // its subscriptions are on their way out (Broker.endSession)
        if (checksAccess && !this.access.mayRead(session, topic)) continue; // read access, checked once per topic and cached
        const d = bySession.get(session);
        if (d === undefined) bySession.set(session, { session, subs: [entry] });
        else d.subs.push(entry);
      }
    }
    return { deliveries: [...bySession.values()], groups };
  }

  /** True when a denied topic filter (deniedTopicFilters) matches the topic. */
  isDenied(topic: string): boolean {
    const denied = this.options.deniedTopicFilters;
    for (let i = 0; i < denied.length; i++) if (topicMatches(denied[i]!, topic)) return true;
    return false;
  }

  /**
   * Adds or replaces a session's subscription [MQTT-3.8.4-3]; `key` is the filter as the client
   * sent it, `$share/...` included. A shared subscription joins its group. True when it is new.
   */
  subscribe(session: Session, key: string, entry: SubscriptionEntry): boolean {
    const existed = session.subscriptions.has(key);
    if (entry.shareName === null) {
      const node = this.trie.add(entry.filter, session, entry);
      session.holdSubscription(key, { entry, node, group: null });
      if (!existed) this.interest?.subscribed(entry.filter);
      if (!existed) this.normalCount++;
      return !existed;
    }
    let group = this.sharedGroups.get(key);
    let node;
    if (group === undefined) {
      group = new SharedGroup<SubscriptionEntry>(entry.shareName, entry.filter);
      this.sharedGroups.set(key, group);
      node = this.trie.add(entry.filter, group, group);
      this.interest?.groupAdded(key, entry.shareName, entry.filter);
    } else {
      node = this.trie.find(entry.filter)!;
    }
    group.join(entry, (m) => m.session === session);
    session.holdSubscription(key, { entry, node, group });
    if (!existed) this.sharedCount++;
    return !existed;
  }

  /** Removes a session's subscription by the filter it subscribed with; false when it had none. */
  unsubscribe(session: Session, key: string): boolean {
    const held = session.subscriptions.get(key);
    if (held === undefined) return false;
    session.subscriptions.delete(key);
    session.journal?.unsubscribed(key);
    if (held.group === null) this.normalCount--;
    else this.sharedCount--;
    if (held.group === null) {
      this.trie.removeAt(held.node, session);
      this.interest?.unsubscribed(held.entry.filter);
    } else if (held.group.leave((m) => m.session === session)) {
      this.trie.removeAt(held.node, held.group);
      this.sharedGroups.delete(key);
      this.interest?.groupRemoved(key);
    }
    return true;
  }
}
