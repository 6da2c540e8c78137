/**
 * One-line descriptions of packets, for logs: compact (`PUBLISH(3): Topic=/a/b, QoS=1, PacketId=7,
 * Payload=5 bytes`) or verbose (every field and property of the packet). Passwords are never shown.
 */
import { PACKET_NAMES, PacketType } from "./constants";
import type { Packet } from "./packet";
import { reasonName } from "./reason-codes";

const utf8 = new TextDecoder("utf-8", { fatal: true });
/** Longest payload shown in full by the verbose form; longer ones are cut. */
const MAX_SHOWN = 256;

function text(v: Uint8Array | string): string {
  return typeof v === "string" ? v : new TextDecoder().decode(v);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, "0")}`;
}

function reason(code: number): string {
  return `${hex(code)} (${reasonName(code)})`;
}

/** Bytes as a quoted string when they are printable UTF-8, else as hex; cut after MAX_SHOWN bytes. */
function bytes(b: Uint8Array): string {
  const shown = b.length > MAX_SHOWN ? b.subarray(0, MAX_SHOWN) : b;
  const more = b.length > MAX_SHOWN ? `... (${b.length} bytes)` : "";
  try {
    const s = utf8.decode(shown);
    // eslint-disable-next-line no-control-regex
    if (!/[\x00-\x08\x0e-\x1f\x7f]/.test(s)) return JSON.stringify(s) + more;
  } catch {
    // not UTF-8: hex below
  }
  return `0x${Array.from(shown, (x) => x.toString(16).padStart(2, "0")).join("")}${more}`;
}

/** A value of the verbose form. */
function value(v: unknown): string {
  if (v === null || v === undefined) return "none";
  if (v instanceof Uint8Array) return bytes(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(value).join(", ")}]`;
  if (typeof v === "object") return `{${fields(v as Record<string, unknown>)}}`;
  return String(v);
}

/** `Key=value` pairs of an object's fields, keys capitalized; passwords masked. */
function fields(o: Record<string, unknown>, skip: readonly string[] = []): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (skip.includes(k) || v === undefined) continue;
    const key = k[0]!.toUpperCase() + k.slice(1);
    if (k === "password") out.push(`${key}=${v === null ? "none" : `*** (${(v as Uint8Array).length} bytes)`}`);
    else if (k === "reasonCode") out.push(`${key}=${reason(v as number)}`);
    else if (k === "reasonCodes") out.push(`${key}=[${(v as number[]).map(hex).join(", ")}]`);
    else if (k === "payload") out.push(`Payload=${(v as Uint8Array).length} bytes ${bytes(v as Uint8Array)}`);
    else if (k === "topic") out.push(`Topic=${text(v as Uint8Array | string)}`);
    else out.push(`${key}=${value(v)}`);
  }
  return out.join(", ");
}

/** The compact fields of a packet. */
function compact(p: Packet): string {
  switch (p.type) {
    case PacketType.CONNECT: {
      const f = [`ClientId=${p.clientId}`, `Protocol=${p.protocolVersion === 5 ? "5" : "3.1.1"}`, `CleanStart=${p.cleanStart}`, `KeepAlive=${p.keepAlive}`];
      if (p.username !== null) f.push(`Username=${p.username}`);
      if (p.password !== null) f.push("Password=***");
      if (p.will !== null) f.push(`Will=${text(p.will.topic)} (QoS ${p.will.qos}${p.will.retain ? ", retained" : ""})`);
      if (p.properties.sessionExpiryInterval) f.push(`SessionExpiryInterval=${p.properties.sessionExpiryInterval}`);
      return f.join(", ");
    }
    case PacketType.CONNACK:
      return `SessionPresent=${p.sessionPresent}, ReasonCode=${reason(p.reasonCode)}`;
    case PacketType.PUBLISH: {
      const f = [`Topic=${text(p.topic)}`, `QoS=${p.qos}`];
      if (p.qos > 0) f.push(`PacketId=${p.packetId}`);
      if (p.retain) f.push("Retain=true");
      if (p.dup) f.push("Dup=true");
      if (p.properties.topicAlias !== undefined) f.push(`TopicAlias=${p.properties.topicAlias}`);
      f.push(`Payload=${p.payload.length} bytes`);
      return f.join(", ");
    }
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP:
      return `PacketId=${p.packetId}${p.reasonCode === 0 ? "" : `, ReasonCode=${reason(p.reasonCode)}`}`;
    case PacketType.SUBSCRIBE:
      return `PacketId=${p.packetId}, Topics=${p.subscriptions.map((s) => `${s.topicFilter} (QoS ${s.qos})`).join(" ")}`;
    case PacketType.UNSUBSCRIBE:
      return `PacketId=${p.packetId}, Topics=${p.topicFilters.join(" ")}`;
    case PacketType.SUBACK:
    case PacketType.UNSUBACK:
      return `PacketId=${p.packetId}, ReasonCodes=[${p.reasonCodes.map(hex).join(", ")}]`;
    case PacketType.DISCONNECT:
    case PacketType.AUTH:
      return `ReasonCode=${reason(p.reasonCode)}${p.properties.reasonString ? `, ReasonString=${p.properties.reasonString}` : ""}`;
    default:
      return "";
  }
}

/**
 * Describes a packet on one line: `NAME(type): Field=value, ...`. Compact by default (the fields
 * one reads a conversation by); `verbose` shows every field and every property.
 */
export function describePacket(p: Packet, verbose = false): string {
  const head = `${PACKET_NAMES[p.type]}(${p.type})`;
  const body = verbose ? fields(p as unknown as Record<string, unknown>, ["type"]) : compact(p);
  return body === "" ? head : `${head}: ${body}`;
}
