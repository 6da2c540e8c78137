/**
 * Randomized round trip: a seeded generator builds valid packets of every type at both protocol
 * levels; each must satisfy packetSize(p) === encodePacket(p).length and decode back to itself,
 * and all of them, sent as one stream cut into random chunks, must come out of a Framer in order.
 * The seed is in each test's name: a failure reproduces with the same seed.
 */
import { expect, test } from "bun:test";
import {
  ALLOWED_REASON_CODES,
  ALLOWED_V4_CONNACK,
  ALLOWED_V4_SUBACK,
  decodePacket,
  encodePacket,
  Framer,
  NO_PROPERTIES,
  packetSize,
  PACKET_NAMES,
  PacketType,
  type ConnectProperties,
  type Packet,
  type Properties,
  type ProtocolVersion,
  type QoS,
} from "../../lib/codec";
import { prng } from "../fixtures/prng";


/** Random choices drawn from one seeded PRNG. */
class Gen {
  private rnd: () => number;
  constructor(seed: number) {
    this.rnd = prng(seed);
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.rnd() * (max - min + 1));
  }
  bool(p = 0.5): boolean {
    return this.rnd() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)]!;
  }
  /** A size mostly small, sometimes up to `max`. */
  size(max: number): number {
    const r = this.rnd();
    if (r < 0.4) return this.int(0, 8);
    if (r < 0.8) return this.int(0, Math.min(max, 200));
    return this.int(0, max);
  }
  bytes(max: number): Uint8Array {
    const n = this.size(max);
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }
  /** A string of ASCII and 2-, 3- and 4-byte UTF-8 characters; never U+0000 or a lone surrogate. */
  text(maxChars: number, alphabet: readonly string[] = TEXT_CHARS): string {
    const n = this.size(maxChars);
    let s = "";
    for (let i = 0; i < n; i++) s += this.pick(alphabet);
    return s;
  }
  /** A topic name: levels of text joined by '/', no wildcards, at least one character. */
  topic(): string {
    const levels = this.int(1, 6);
    const parts: string[] = [];
    for (let i = 0; i < levels; i++) parts.push(this.text(this.bool(0.1) ? 120 : 12, TOPIC_CHARS));
    const t = parts.join("/");
    return t.length > 0 ? t : "t";
  }
  /** A topic filter, wildcards and shared subscriptions included. */
  filter(): string {
    const levels = this.int(1, 5);
    const parts: string[] = [];
    for (let i = 0; i < levels; i++) {
      const r = this.rnd();
      parts.push(r < 0.15 ? "+" : this.text(10, TOPIC_CHARS));
    }
    if (this.bool(0.2)) parts.push("#");
    if (this.bool(0.1)) parts.unshift("$share", "group");
    const f = parts.join("/");
    return f.length > 0 ? f : "#";
  }
}

/**
 * ASCII letters and punctuation, then 2-byte (é, ß, Ω, U+00A0, U+07FF), 3-byte (€, 日, U+0800,
 * U+FEFF, U+FFFD) and 4-byte (😀, 𝄞, U+10FFFD) characters; no control characters or
 * non-characters, which the spec says a string SHOULD NOT hold (section 1.5.4).
 */
const TOPIC_CHARS: readonly string[] = [
  ..."abcxyzABZ019-_. $~!", "é", "ß", "Ω", "\u00a0", "\u07ff", "€", "日", "本", "\u0800", "\ufeff", "\ufffd", "😀", "𝄞", "\u{10fffd}",
];
const TEXT_CHARS: readonly string[] = [...TOPIC_CHARS, "/", "+", "#"];

const encoder = new TextEncoder();
const u32 = (g: Gen): number => g.int(0, 0xffff_ffff);

/** A random valid value for each property the generator may use. */
const VALUE: { [K in keyof Properties]-?: (g: Gen, context: number) => Properties[K] } = {
  payloadFormatIndicator: (g) => g.int(0, 1),
  messageExpiryInterval: u32,
  contentType: (g) => g.text(30),
  responseTopic: (g) => g.topic(),
  correlationData: (g) => g.bytes(64),
  subscriptionIdentifiers: (g, context) => {
    const n = context === PacketType.PUBLISH ? g.int(1, 4) : 1;
    return Array.from({ length: n }, () => g.pick([1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455, g.int(1, 268_435_455)]));
  },
  sessionExpiryInterval: u32,
  assignedClientIdentifier: (g) => g.text(23),
  serverKeepAlive: (g) => g.int(0, 0xffff),
  authenticationMethod: (g) => g.text(20),
  authenticationData: (g) => g.bytes(100),
  requestProblemInformation: (g) => g.int(0, 1),
  willDelayInterval: u32,
  requestResponseInformation: (g) => g.int(0, 1),
  responseInformation: (g) => g.text(30),
  serverReference: (g) => g.text(30),
  reasonString: (g) => g.text(60),
  receiveMaximum: (g) => g.int(1, 0xffff),
  topicAliasMaximum: (g) => g.int(0, 0xffff),
  topicAlias: (g) => g.int(1, 0xffff),
  maximumQoS: (g) => g.int(0, 1),
  retainAvailable: (g) => g.int(0, 1),
  userProperties: (g) => Array.from({ length: g.int(1, 4) }, () => [g.text(10), g.text(20)] as [string, string]),
  maximumPacketSize: (g) => g.int(1, 0xffff_ffff),
  wildcardSubscriptionAvailable: (g) => g.int(0, 1),
  subscriptionIdentifierAvailable: (g) => g.int(0, 1),
  sharedSubscriptionAvailable: (g) => g.int(0, 1),
};

/** The properties each block may carry (MQTT 5.0 section 3), written out per packet. */
const P = PacketType;
const WILL = 16;
const ACK_KEYS: (keyof Properties)[] = ["reasonString", "userProperties"];
const KEYS: Record<number, (keyof Properties)[]> = {
  [P.CONNECT]: ["sessionExpiryInterval", "receiveMaximum", "maximumPacketSize", "topicAliasMaximum", "requestResponseInformation", "requestProblemInformation", "userProperties", "authenticationMethod", "authenticationData"],
  [WILL]: ["willDelayInterval", "payloadFormatIndicator", "messageExpiryInterval", "contentType", "responseTopic", "correlationData", "userProperties"],
  [P.CONNACK]: [
    "sessionExpiryInterval", "receiveMaximum", "maximumQoS", "retainAvailable", "maximumPacketSize", "assignedClientIdentifier", "topicAliasMaximum",
    "reasonString", "userProperties", "wildcardSubscriptionAvailable", "subscriptionIdentifierAvailable", "sharedSubscriptionAvailable",
    "serverKeepAlive", "responseInformation", "serverReference", "authenticationMethod", "authenticationData",
  ],
  [P.PUBLISH]: ["payloadFormatIndicator", "messageExpiryInterval", "topicAlias", "responseTopic", "correlationData", "userProperties", "subscriptionIdentifiers", "contentType"],
  [P.PUBACK]: ACK_KEYS, [P.PUBREC]: ACK_KEYS, [P.PUBREL]: ACK_KEYS, [P.PUBCOMP]: ACK_KEYS,
  [P.SUBSCRIBE]: ["subscriptionIdentifiers", "userProperties"],
  [P.SUBACK]: ACK_KEYS,
  [P.UNSUBSCRIBE]: ["userProperties"],
  [P.UNSUBACK]: ACK_KEYS,
  [P.DISCONNECT]: ["sessionExpiryInterval", "reasonString", "serverReference", "userProperties"],
  [P.AUTH]: ["authenticationMethod", "authenticationData", "reasonString", "userProperties"],
};

/** A random subset of the block's properties; none at protocol level 4. */
function properties(g: Gen, context: number, version: ProtocolVersion): Properties {
  if (version !== 5 || g.bool(0.3)) return NO_PROPERTIES;
  const props: Record<string, unknown> = {};
  for (const key of KEYS[context]!) {
    if (g.bool(0.35)) props[key] = VALUE[key](g, context);
  }
  // Authentication Data needs its Method in CONNECT (section 3.1.2.11.10)
  if (context === P.CONNECT && props.authenticationData !== undefined && props.authenticationMethod === undefined) {
    props.authenticationMethod = VALUE.authenticationMethod(g, context);
  }
  return props as Properties;
}

const qos = (g: Gen): QoS => g.int(0, 2) as QoS;
const packetId = (g: Gen): number => (g.bool(0.1) ? g.pick([1, 0xffff]) : g.int(1, 0xffff));
const reasonCode = (g: Gen, type: number): number => g.pick([...ALLOWED_REASON_CODES.get(type)!]);

const TYPES = [P.CONNECT, P.CONNACK, P.PUBLISH, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP, P.SUBSCRIBE, P.SUBACK, P.UNSUBSCRIBE, P.UNSUBACK, P.PINGREQ, P.PINGRESP, P.DISCONNECT, P.AUTH];

/** A random valid packet for a connection at `version`. */
function packet(g: Gen, version: ProtocolVersion): Packet {
  const v5 = version === 5;
  // PUBLISH is the common case on a real connection; AUTH exists only in MQTT 5.0
  const type = g.bool(0.3) ? P.PUBLISH : g.pick(v5 ? TYPES : TYPES.filter((t) => t !== P.AUTH));
  switch (type) {
    case P.CONNECT: {
      const willQos = qos(g);
      const username = g.bool() ? g.text(20) : null;
      // 3.1.1 [MQTT-3.1.2-22]: no password without a user name
      const password = (v5 || username !== null) && g.bool() ? g.bytes(64) : null;
      return {
        type, protocolVersion: version, cleanStart: g.bool(), keepAlive: g.int(0, 0xffff),
        clientId: g.bool(0.1) ? "" : g.text(23),
        will: g.bool() ? { topic: g.topic(), payload: g.bytes(5000), qos: willQos, retain: g.bool(), properties: properties(g, WILL, version) } : null,
        username, password, properties: properties(g, P.CONNECT, version) as ConnectProperties,
      };
    }
    case P.CONNACK: {
      const code = v5 ? reasonCode(g, P.CONNACK) : g.pick([...ALLOWED_V4_CONNACK]);
      return { type, sessionPresent: code === 0 && g.bool(), reasonCode: code, properties: properties(g, P.CONNACK, version) };
    }
    case P.PUBLISH: {
      const q = qos(g);
      const props = properties(g, P.PUBLISH, version);
      // an empty topic name is allowed only with a Topic Alias [MQTT-3.3.2-1]
      const name = props.topicAlias !== undefined && g.bool(0.5) ? "" : g.topic();
      const topic = g.bool(0.2) ? encoder.encode(name) : name; // the encoder takes bytes as well as a string
      return { type, dup: q > 0 && g.bool(), qos: q, retain: g.bool(), topic, packetId: q > 0 ? packetId(g) : 0, properties: props, payload: g.bytes(5000) };
    }
    case P.PUBACK:
    case P.PUBREC:
    case P.PUBREL:
    case P.PUBCOMP:
      return { type, packetId: packetId(g), reasonCode: v5 && g.bool() ? reasonCode(g, type) : 0, properties: properties(g, type, version) };
    case P.SUBSCRIBE:
      return {
        type, packetId: packetId(g), properties: properties(g, P.SUBSCRIBE, version),
        subscriptions: Array.from({ length: g.int(1, 6) }, () => ({
          topicFilter: g.filter(), qos: qos(g),
          noLocal: v5 && g.bool(), retainAsPublished: v5 && g.bool(), retainHandling: v5 ? (g.int(0, 2) as 0 | 1 | 2) : 0,
        })),
      };
    case P.SUBACK:
      return {
        type, packetId: packetId(g), properties: properties(g, P.SUBACK, version),
        reasonCodes: Array.from({ length: g.int(1, 6) }, () => (v5 ? reasonCode(g, P.SUBACK) : g.pick([...ALLOWED_V4_SUBACK]))),
      };
    case P.UNSUBSCRIBE:
      return { type, packetId: packetId(g), properties: properties(g, P.UNSUBSCRIBE, version), topicFilters: Array.from({ length: g.int(1, 6) }, () => g.filter()) };
    case P.UNSUBACK:
      return { type, packetId: packetId(g), properties: properties(g, P.UNSUBACK, version), reasonCodes: v5 ? Array.from({ length: g.int(1, 6) }, () => reasonCode(g, P.UNSUBACK)) : [] };
    case P.PINGREQ:
    case P.PINGRESP:
      return { type };
    case P.DISCONNECT:
      return { type, reasonCode: v5 && g.bool() ? reasonCode(g, P.DISCONNECT) : 0, properties: properties(g, P.DISCONNECT, version) };
    case P.AUTH: {
      const props = properties(g, P.AUTH, version);
      const code = g.pick([0x00, 0x18, 0x19]);
      // any AUTH but the empty one carries its Authentication Method (section 3.15.2.2.2)
      if ((code !== 0 || props !== NO_PROPERTIES) && props.authenticationMethod === undefined) {
        return { type, reasonCode: code, properties: { ...props, authenticationMethod: VALUE.authenticationMethod(g, P.AUTH) } };
      }
      return { type, reasonCode: code, properties: props };
    }
  }
  throw new Error(`no generator for packet type ${type}`);
}

/** What decoding should give back: topic names as UTF-8 bytes; everything else as generated. */
function expected(p: Packet): Packet {
  const bytes = (t: string | Uint8Array): Uint8Array => (typeof t === "string" ? encoder.encode(t) : t);
  if (p.type === P.PUBLISH) return { ...p, topic: bytes(p.topic) };
  if (p.type === P.CONNECT && p.will !== null) return { ...p, will: { ...p.will, topic: bytes(p.will.topic) } };
  return p;
}

/** Throws with the seed and index so that a failure names the packet that broke. */
function at<T>(where: string, p: Packet, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`${where} (${PACKET_NAMES[p.type]}): ${msg}`);
  }
}

const SEEDS = [0x5eed_0001, 0x00c0_ffee, 20_260_101];
const PER_CASE = 500;
const CASES = SEEDS.flatMap((seed) => ([4, 5] as const).map((version) => ({ seed, version, count: PER_CASE })));

test.each(CASES)("$count random packets at protocol level $version, seed $seed: size, encode, decode", ({ seed, version, count }) => {
  const g = new Gen(seed ^ version);
  const seen = new Set<number>();
  for (let i = 0; i < count; i++) {
    const p = packet(g, version);
    seen.add(p.type);
    const where = `seed ${seed} level ${version} packet #${i}`;
    const frame = at(where, p, () => encodePacket(p, version));
    at(where, p, () => expect(packetSize(p, version)).toBe(frame.length));
    const decoded = at(where, p, () => decodePacket(frame, version));
    at(where, p, () => expect(decoded).toEqual(expected(p)));
  }
  expect(seen.size).toBe(version === 5 ? 15 : 14); // every packet type came up
});

test.each(CASES)("$count random packets at protocol level $version, seed $seed: one stream through a Framer in random chunks", ({ seed, version, count }) => {
  const g = new Gen(seed ^ version);
  const packets = Array.from({ length: count }, () => packet(g, version));
  const frames = packets.map((p) => encodePacket(p, version));
  const stream = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let o = 0;
  for (const f of frames) {
    stream.set(f, o);
    o += f.length;
  }
  const chunks = new Gen(seed + 1);
  const framer = new Framer();
  let next = 0;
  for (let pos = 0; pos < stream.length; ) {
    const n = Math.min(stream.length - pos, chunks.size(chunks.pick([16, 1500, 20_000])));
    framer.push(stream.subarray(pos, pos + n));
    pos += n;
    for (let f = framer.next(); f !== null; f = framer.next()) {
      const p = packets[next]!;
      const where = `seed ${seed} level ${version} frame #${next}`;
      at(where, p, () => expect(f).toEqual(frames[next]!));
      at(where, p, () => expect(decodePacket(f, version)).toEqual(expected(p)));
      next++;
    }
  }
  expect(next).toBe(count);
  expect(framer.buffered).toBe(0);
});
