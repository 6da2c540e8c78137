/**
 * Test helper for the cross-check against mqtt-packet (npm): converts our Packet objects to the
 * packet objects mqtt-packet's generate() takes, and the objects its parser emits back to ours.
 *
 * The two models differ in representation only: mqtt-packet names packets by `cmd` string, keeps
 * topics as strings and binary data as Buffers, calls the packet identifier `messageId`, the 3.1.1
 * CONNACK code `returnCode`, single-bit properties booleans, user properties an object of name ->
 * value (or values, when a name repeats), and omits `properties` when a packet has none. Every
 * conversion here is one of those renamings; nothing is defaulted that the wire carries.
 */
import type * as mp from "mqtt-packet";
import { NO_PROPERTIES, PacketType, type Packet, type Properties, type ProtocolVersion, type QoS } from "../../lib/codec";

/** mqtt-packet's property object (its names, its value types). */
export type MqttProperties = Record<string, unknown>;

/** Packet type by mqtt-packet's `cmd` string. */
export const TYPE_BY_CMD: ReadonlyMap<mp.PacketCmd, number> = new Map<mp.PacketCmd, number>([
  ["connect", 1], ["connack", 2], ["publish", 3], ["puback", 4], ["pubrec", 5], ["pubrel", 6], ["pubcomp", 7],
  ["subscribe", 8], ["suback", 9], ["unsubscribe", 10], ["unsuback", 11], ["pingreq", 12], ["pingresp", 13],
  ["disconnect", 14], ["auth", 15],
]);
const ACK_CMD = { 4: "puback", 5: "pubrec", 6: "pubrel", 7: "pubcomp" } as const;

/** How a property value is represented in mqtt-packet. */
type Kind = "same" | "boolean" | "binary";

/** Our property name -> mqtt-packet's name and representation (subscription ids and user properties aside). */
const PROPERTY_MAP: ReadonlyMap<keyof Properties, readonly [string, Kind]> = new Map<keyof Properties, readonly [string, Kind]>([
  ["payloadFormatIndicator", ["payloadFormatIndicator", "boolean"]],
  ["messageExpiryInterval", ["messageExpiryInterval", "same"]],
  ["contentType", ["contentType", "same"]],
  ["responseTopic", ["responseTopic", "same"]],
  ["correlationData", ["correlationData", "binary"]],
  ["sessionExpiryInterval", ["sessionExpiryInterval", "same"]],
  ["assignedClientIdentifier", ["assignedClientIdentifier", "same"]],
  ["serverKeepAlive", ["serverKeepAlive", "same"]],
  ["authenticationMethod", ["authenticationMethod", "same"]],
  ["authenticationData", ["authenticationData", "binary"]],
  ["requestProblemInformation", ["requestProblemInformation", "boolean"]],
  ["willDelayInterval", ["willDelayInterval", "same"]],
  ["requestResponseInformation", ["requestResponseInformation", "boolean"]],
  ["responseInformation", ["responseInformation", "same"]],
  ["serverReference", ["serverReference", "same"]],
  ["reasonString", ["reasonString", "same"]],
  ["receiveMaximum", ["receiveMaximum", "same"]],
  ["topicAliasMaximum", ["topicAliasMaximum", "same"]],
  ["topicAlias", ["topicAlias", "same"]],
  ["maximumQoS", ["maximumQoS", "same"]],
  ["retainAvailable", ["retainAvailable", "boolean"]],
  ["maximumPacketSize", ["maximumPacketSize", "same"]],
  ["wildcardSubscriptionAvailable", ["wildcardSubscriptionAvailable", "boolean"]],
  ["subscriptionIdentifierAvailable", ["subscriptionIdentifiersAvailable", "boolean"]],
  ["sharedSubscriptionAvailable", ["sharedSubscriptionAvailable", "boolean"]],
]);
const OURS_BY_THEIR_NAME = new Map<string, readonly [keyof Properties, Kind]>(
  [...PROPERTY_MAP].map(([ours, [theirs, kind]]) => [theirs, [ours, kind]] as const),
);

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A Buffer copy of bytes (mqtt-packet's writer needs Buffer, not Uint8Array). */
function toBuffer(v: Uint8Array): Buffer {
  return Buffer.from(v);
}

/** A plain Uint8Array copy of a Buffer (so comparisons see one class on both sides). */
function toBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new Error(`mqtt-packet gave ${what} as ${typeof v}, not bytes`);
  return new Uint8Array(v);
}

function topicString(t: Uint8Array | string): string {
  return typeof t === "string" ? t : decoder.decode(t);
}

function topicBytes(v: unknown, what: string): Uint8Array {
  if (typeof v !== "string") throw new Error(`mqtt-packet gave ${what} as ${typeof v}, not a string`);
  return encoder.encode(v);
}

/** Our user property list -> mqtt-packet's object; a repeated name collects its values in an array. */
export function toMqttUserProperties(list: readonly [string, string][]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of list) {
    const prev = Object.hasOwn(out, k) ? out[k] : undefined;
    if (prev === undefined) out[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[k] = [prev, v];
  }
  return out;
}

/** mqtt-packet's user property object -> our list, in the object's key order. */
export function fromMqttUserProperties(obj: unknown): [string, string][] {
  if (typeof obj !== "object" || obj === null) throw new Error("mqtt-packet gave userProperties that is not an object");
  const out: [string, string][] = [];
  for (const k of Object.keys(obj)) {
    const v = (obj as Record<string, unknown>)[k];
    for (const one of Array.isArray(v) ? v : [v]) {
      if (typeof one !== "string") throw new Error(`mqtt-packet gave user property ${k} as ${typeof one}`);
      out.push([k, one]);
    }
  }
  return out;
}

/** Our properties -> mqtt-packet's, in our key order; undefined when there are none (as its parser does). */
export function toMqttProperties(props: Properties): MqttProperties | undefined {
  const out: MqttProperties = {};
  let any = false;
  for (const key of Object.keys(props) as (keyof Properties)[]) {
    const v = props[key];
    if (v === undefined) continue;
    any = true;
    if (key === "userProperties") out.userProperties = toMqttUserProperties(v as [string, string][]);
    else if (key === "subscriptionIdentifiers") {
      const ids = v as number[];
      out.subscriptionIdentifier = ids.length === 1 ? ids[0] : [...ids];
    } else {
      const m = PROPERTY_MAP.get(key);
      if (m === undefined) throw new Error(`no mqtt-packet name for property ${key}`);
      const [name, kind] = m;
      out[name] = kind === "boolean" ? v !== 0 : kind === "binary" ? toBuffer(v as Uint8Array) : v;
    }
  }
  return any ? out : undefined;
}

/** mqtt-packet's properties -> ours; throws on a name it does not know rather than dropping it. */
export function fromMqttProperties(props: unknown): Properties {
  if (props === undefined) return NO_PROPERTIES;
  if (typeof props !== "object" || props === null) throw new Error("mqtt-packet gave properties that are not an object");
  const out: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(props)) {
    if (name === "userProperties") out.userProperties = fromMqttUserProperties(v);
    else if (name === "subscriptionIdentifier") out.subscriptionIdentifiers = Array.isArray(v) ? [...(v as number[])] : [v as number];
    else {
      const m = OURS_BY_THEIR_NAME.get(name);
      if (m === undefined) throw new Error(`unknown mqtt-packet property ${name}`);
      const [key, kind] = m;
      if (kind === "boolean") {
        if (typeof v !== "boolean") throw new Error(`mqtt-packet gave ${name} as ${typeof v}, not a boolean`);
        out[key] = v ? 1 : 0;
      } else out[key] = kind === "binary" ? toBytes(v, name) : v;
    }
  }
  return Object.keys(out).length === 0 ? NO_PROPERTIES : (out as Properties);
}

/** Our packet -> the object mqtt-packet's generate(obj, { protocolVersion: version }) takes. */
export function toMqttPacket(p: Packet, version: ProtocolVersion): mp.Packet {
  switch (p.type) {
    case PacketType.CONNECT: {
      const o: mp.IConnectPacket = {
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: p.protocolVersion,
        clean: p.cleanStart,
        keepalive: p.keepAlive,
        clientId: p.clientId,
      };
      if (p.will !== null) {
        o.will = { topic: topicString(p.will.topic), payload: toBuffer(p.will.payload), qos: p.will.qos, retain: p.will.retain };
        const wp = toMqttProperties(p.will.properties);
        if (wp !== undefined) o.will.properties = wp;
      }
      if (p.username !== null) o.username = p.username;
      if (p.password !== null) o.password = toBuffer(p.password);
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.CONNACK: {
      const o: mp.IConnackPacket = { cmd: "connack", sessionPresent: p.sessionPresent };
      if (version === 5) o.reasonCode = p.reasonCode;
      else o.returnCode = p.reasonCode;
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.PUBLISH: {
      const o: mp.IPublishPacket = {
        cmd: "publish",
        qos: p.qos,
        dup: p.dup,
        retain: p.retain,
        topic: topicString(p.topic),
        payload: toBuffer(p.payload),
      };
      if (p.qos > 0) o.messageId = p.packetId;
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP: {
      const o = { cmd: ACK_CMD[p.type], messageId: p.packetId, reasonCode: p.reasonCode } as mp.IPubackPacket;
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.SUBSCRIBE: {
      const o: mp.ISubscribePacket = {
        cmd: "subscribe",
        messageId: p.packetId,
        subscriptions: p.subscriptions.map((s) => {
          const sub: mp.ISubscription = { topic: s.topicFilter, qos: s.qos };
          if (version === 5) {
            sub.nl = s.noLocal;
            sub.rap = s.retainAsPublished;
            sub.rh = s.retainHandling;
          }
          return sub;
        }),
      };
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.SUBACK: {
      const o: mp.ISubackPacket = { cmd: "suback", messageId: p.packetId, granted: [...p.reasonCodes] };
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.UNSUBSCRIBE: {
      const o: mp.IUnsubscribePacket = { cmd: "unsubscribe", messageId: p.packetId, unsubscriptions: [...p.topicFilters] };
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.UNSUBACK: {
      const o: mp.IUnsubackPacket = { cmd: "unsuback", messageId: p.packetId, granted: [...p.reasonCodes] };
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.PINGREQ: return { cmd: "pingreq" };
    case PacketType.PINGRESP: return { cmd: "pingresp" };
    case PacketType.DISCONNECT: {
      const o: mp.IDisconnectPacket = { cmd: "disconnect", reasonCode: p.reasonCode };
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
    case PacketType.AUTH: {
      const o: mp.IAuthPacket = { cmd: "auth", reasonCode: p.reasonCode };
      const props = toMqttProperties(p.properties);
      if (props !== undefined) o.properties = props;
      return o;
    }
  }
}

function num(v: unknown, what: string): number {
  if (typeof v !== "number") throw new Error(`mqtt-packet gave ${what} as ${typeof v}, not a number`);
  return v;
}

/** A packet object emitted by mqtt-packet's parser (at `version`) -> our packet. */
export function fromMqttPacket(m: mp.Packet, version: ProtocolVersion): Packet {
  const type = TYPE_BY_CMD.get(m.cmd);
  if (type === undefined) throw new Error(`unknown mqtt-packet cmd ${m.cmd}`);
  switch (m.cmd) {
    case "connect": {
      if (m.protocolId !== "MQTT" || (m.protocolVersion !== 4 && m.protocolVersion !== 5)) {
        throw new Error(`mqtt-packet gave protocol ${m.protocolId} ${m.protocolVersion}, which this codec does not speak`);
      }
      const w = m.will;
      return {
        type: PacketType.CONNECT,
        protocolVersion: m.protocolVersion,
        cleanStart: m.clean === true,
        keepAlive: num(m.keepalive, "keepalive"),
        clientId: m.clientId,
        will: w === undefined ? null : {
          topic: topicBytes(w.topic, "the will topic"),
          payload: toBytes(w.payload, "the will payload"),
          qos: (w.qos ?? 0) as QoS,
          retain: w.retain === true,
          properties: fromMqttProperties(w.properties),
        },
        username: m.username ?? null,
        password: m.password === undefined ? null : toBytes(m.password, "the password"),
        properties: fromMqttProperties(m.properties),
      };
    }
    case "connack":
      return {
        type: PacketType.CONNACK,
        sessionPresent: m.sessionPresent,
        reasonCode: num(version === 5 ? m.reasonCode : m.returnCode, "the CONNACK code"),
        properties: fromMqttProperties(m.properties),
      };
    case "publish":
      return {
        type: PacketType.PUBLISH,
        dup: m.dup,
        qos: m.qos,
        retain: m.retain,
        topic: topicBytes(m.topic, "the topic"),
        packetId: m.qos > 0 ? num(m.messageId, "messageId") : 0,
        properties: fromMqttProperties(m.properties),
        payload: toBytes(m.payload, "the payload"),
      };
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      return {
        type: type as 4 | 5 | 6 | 7,
        packetId: num(m.messageId, "messageId"),
        reasonCode: version === 5 ? num(m.reasonCode, "the reason code") : 0, // v5: mqtt-packet gives 0 when the wire omits it
        properties: fromMqttProperties(m.properties),
      };
    case "subscribe":
      return {
        type: PacketType.SUBSCRIBE,
        packetId: num(m.messageId, "messageId"),
        subscriptions: m.subscriptions.map((s) => {
          if (version === 4) { // 3.1.1 has no such options: mqtt-packet leaves them out, our decoder gives their zero values
            return { topicFilter: s.topic, qos: s.qos, noLocal: false, retainAsPublished: false, retainHandling: 0 };
          }
          if (typeof s.nl !== "boolean" || typeof s.rap !== "boolean") throw new Error("mqtt-packet gave a v5 subscription without nl/rap");
          return { topicFilter: s.topic, qos: s.qos, noLocal: s.nl, retainAsPublished: s.rap, retainHandling: num(s.rh, "rh") as 0 | 1 | 2 };
        }),
        properties: fromMqttProperties(m.properties),
      };
    case "suback":
      return {
        type: PacketType.SUBACK,
        packetId: num(m.messageId, "messageId"),
        reasonCodes: m.granted.map((g) => num(g, "a granted code")),
        properties: fromMqttProperties(m.properties),
      };
    case "unsubscribe":
      return {
        type: PacketType.UNSUBSCRIBE,
        packetId: num(m.messageId, "messageId"),
        topicFilters: [...m.unsubscriptions],
        properties: fromMqttProperties(m.properties),
      };
    case "unsuback":
      return {
        type: PacketType.UNSUBACK,
        packetId: num(m.messageId, "messageId"),
        reasonCodes: version === 5 ? m.granted.map((g) => num(g, "a granted code")) : [], // 3.1.1 carries none
        properties: fromMqttProperties(m.properties),
      };
    case "pingreq": return { type: PacketType.PINGREQ };
    case "pingresp": return { type: PacketType.PINGRESP };
    case "disconnect":
      return { type: PacketType.DISCONNECT, reasonCode: version === 5 ? num(m.reasonCode, "the reason code") : 0, properties: fromMqttProperties(m.properties) };
    case "auth":
      return { type: PacketType.AUTH, reasonCode: num(m.reasonCode, "the AUTH reason code"), properties: fromMqttProperties(m.properties) };
  }
}
