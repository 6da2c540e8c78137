/**
 * Every property of MQTT 5.0 section 2.2.2.2 against every property block it could be put in.
 *
 * SPEC below is written from the spec's table, not from lib/codec/properties.ts: the first test
 * compares the two, the rest hand-build frames (so that a property can be put where it does not
 * belong) and check decodePacket accepts each property exactly where the spec allows it.
 */
import { describe, expect, test } from "bun:test";
import {
  decodePacket,
  MqttError,
  PACKET_NAMES,
  PacketType,
  PROPERTY_TABLE,
  PropertyType,
  ReasonCode,
  WILL_CONTEXT,
  type ConnectPacket,
  type Packet,
  type Properties,
} from "../../lib/codec";

/** Where a property block can sit: the fourteen columns of the spec's table. */
type Where =
  | "CONNECT" | "CONNACK" | "PUBLISH" | "Will Properties" | "PUBACK" | "PUBREC" | "PUBREL" | "PUBCOMP"
  | "SUBSCRIBE" | "SUBACK" | "UNSUBSCRIBE" | "UNSUBACK" | "DISCONNECT" | "AUTH";
const ALL_WHERE: readonly Where[] = [
  "CONNECT", "CONNACK", "PUBLISH", "Will Properties", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
  "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "DISCONNECT", "AUTH",
];

/** Data types of section 1.5, as the table names them. */
type WireType = "Byte" | "Two Byte Integer" | "Four Byte Integer" | "Variable Byte Integer" | "UTF-8 Encoded String" | "Binary Data" | "UTF-8 String Pair";

interface SpecRow {
  id: number;
  name: string;
  type: WireType;
  /** The field the codec decodes it into. */
  key: keyof Properties;
  where: readonly Where[];
}

const ACKS: Where[] = ["PUBACK", "PUBREC", "PUBREL", "PUBCOMP"];

/** MQTT 5.0 section 2.2.2.2, table 2-4 "Properties", row by row. */
const SPEC: readonly SpecRow[] = [
  { id: 0x01, name: "Payload Format Indicator", type: "Byte", key: "payloadFormatIndicator", where: ["PUBLISH", "Will Properties"] },
  { id: 0x02, name: "Message Expiry Interval", type: "Four Byte Integer", key: "messageExpiryInterval", where: ["PUBLISH", "Will Properties"] },
  { id: 0x03, name: "Content Type", type: "UTF-8 Encoded String", key: "contentType", where: ["PUBLISH", "Will Properties"] },
  { id: 0x08, name: "Response Topic", type: "UTF-8 Encoded String", key: "responseTopic", where: ["PUBLISH", "Will Properties"] },
  { id: 0x09, name: "Correlation Data", type: "Binary Data", key: "correlationData", where: ["PUBLISH", "Will Properties"] },
  { id: 0x0b, name: "Subscription Identifier", type: "Variable Byte Integer", key: "subscriptionIdentifiers", where: ["PUBLISH", "SUBSCRIBE"] },
  { id: 0x11, name: "Session Expiry Interval", type: "Four Byte Integer", key: "sessionExpiryInterval", where: ["CONNECT", "CONNACK", "DISCONNECT"] },
  { id: 0x12, name: "Assigned Client Identifier", type: "UTF-8 Encoded String", key: "assignedClientIdentifier", where: ["CONNACK"] },
  { id: 0x13, name: "Server Keep Alive", type: "Two Byte Integer", key: "serverKeepAlive", where: ["CONNACK"] },
  { id: 0x15, name: "Authentication Method", type: "UTF-8 Encoded String", key: "authenticationMethod", where: ["CONNECT", "CONNACK", "AUTH"] },
  { id: 0x16, name: "Authentication Data", type: "Binary Data", key: "authenticationData", where: ["CONNECT", "CONNACK", "AUTH"] },
  { id: 0x17, name: "Request Problem Information", type: "Byte", key: "requestProblemInformation", where: ["CONNECT"] },
  { id: 0x18, name: "Will Delay Interval", type: "Four Byte Integer", key: "willDelayInterval", where: ["Will Properties"] },
  { id: 0x19, name: "Request Response Information", type: "Byte", key: "requestResponseInformation", where: ["CONNECT"] },
  { id: 0x1a, name: "Response Information", type: "UTF-8 Encoded String", key: "responseInformation", where: ["CONNACK"] },
  { id: 0x1c, name: "Server Reference", type: "UTF-8 Encoded String", key: "serverReference", where: ["CONNACK", "DISCONNECT"] },
  { id: 0x1f, name: "Reason String", type: "UTF-8 Encoded String", key: "reasonString", where: ["CONNACK", ...ACKS, "SUBACK", "UNSUBACK", "DISCONNECT", "AUTH"] },
  { id: 0x21, name: "Receive Maximum", type: "Two Byte Integer", key: "receiveMaximum", where: ["CONNECT", "CONNACK"] },
  { id: 0x22, name: "Topic Alias Maximum", type: "Two Byte Integer", key: "topicAliasMaximum", where: ["CONNECT", "CONNACK"] },
  { id: 0x23, name: "Topic Alias", type: "Two Byte Integer", key: "topicAlias", where: ["PUBLISH"] },
  { id: 0x24, name: "Maximum QoS", type: "Byte", key: "maximumQoS", where: ["CONNACK"] },
  { id: 0x25, name: "Retain Available", type: "Byte", key: "retainAvailable", where: ["CONNACK"] },
  {
    id: 0x26, name: "User Property", type: "UTF-8 String Pair", key: "userProperties",
    where: ["CONNECT", "CONNACK", "PUBLISH", "Will Properties", ...ACKS, "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "DISCONNECT", "AUTH"],
  },
  { id: 0x27, name: "Maximum Packet Size", type: "Four Byte Integer", key: "maximumPacketSize", where: ["CONNECT", "CONNACK"] },
  { id: 0x28, name: "Wildcard Subscription Available", type: "Byte", key: "wildcardSubscriptionAvailable", where: ["CONNACK"] },
  { id: 0x29, name: "Subscription Identifier Available", type: "Byte", key: "subscriptionIdentifierAvailable", where: ["CONNACK"] },
  { id: 0x2a, name: "Shared Subscription Available", type: "Byte", key: "sharedSubscriptionAvailable", where: ["CONNACK"] },
];

/** The codec's context number for a column. */
const CONTEXT: Record<Where, number> = {
  CONNECT: PacketType.CONNECT, CONNACK: PacketType.CONNACK, PUBLISH: PacketType.PUBLISH, "Will Properties": WILL_CONTEXT,
  PUBACK: PacketType.PUBACK, PUBREC: PacketType.PUBREC, PUBREL: PacketType.PUBREL, PUBCOMP: PacketType.PUBCOMP,
  SUBSCRIBE: PacketType.SUBSCRIBE, SUBACK: PacketType.SUBACK, UNSUBSCRIBE: PacketType.UNSUBSCRIBE, UNSUBACK: PacketType.UNSUBACK,
  DISCONNECT: PacketType.DISCONNECT, AUTH: PacketType.AUTH,
};

const WIRE_TYPE: Record<WireType, number> = {
  Byte: PropertyType.Byte,
  "Two Byte Integer": PropertyType.TwoByteInteger,
  "Four Byte Integer": PropertyType.FourByteInteger,
  "Variable Byte Integer": PropertyType.VariableByteInteger,
  "UTF-8 Encoded String": PropertyType.Utf8String,
  "Binary Data": PropertyType.BinaryData,
  "UTF-8 String Pair": PropertyType.Utf8StringPair,
};

// ---- hand-built frames ----

const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
const str = (s: string): number[] => [s.length >> 8, s.length & 0xff, ...ascii(s)];

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** One valid value of each wire type: its bytes and the value the codec decodes them into. */
const SAMPLE: Record<WireType, { bytes: number[]; value: unknown }> = {
  Byte: { bytes: [0x01], value: 1 },
  "Two Byte Integer": { bytes: [0x01, 0x02], value: 0x0102 },
  "Four Byte Integer": { bytes: [0x00, 0x01, 0x00, 0x02], value: 0x10002 },
  "Variable Byte Integer": { bytes: [0x85, 0x01], value: 133 },
  "UTF-8 Encoded String": { bytes: str("ab/c"), value: "ab/c" },
  "Binary Data": { bytes: [0x00, 0x03, 0x00, 0xff, 0x7f], value: Uint8Array.of(0x00, 0xff, 0x7f) },
  "UTF-8 String Pair": { bytes: [...str("k"), ...str("v")], value: ["k", "v"] },
};

/** A property's bytes (identifier then value) with a sample value. */
const prop = (row: SpecRow, valueBytes = SAMPLE[row.type].bytes): number[] => [row.id, ...valueBytes];

/** The value the codec should hold after decoding one occurrence. */
function decodedValue(row: SpecRow): unknown {
  const v = SAMPLE[row.type].value;
  if (row.type === "UTF-8 String Pair") return [v];
  if (row.id === 0x0b) return [v];
  return v;
}

const AUTH_METHOD = SPEC.find((r) => r.id === 0x15)!;

/** Properties a valid packet of this kind needs beside the one under test. */
function requiredAlongside(where: Where, ids: number[]): number[] {
  if (where === "AUTH" && !ids.includes(0x15)) return prop(AUTH_METHOD); // section 3.15.2.2.2
  if (where === "CONNECT" && ids.includes(0x16) && !ids.includes(0x15)) return prop(AUTH_METHOD); // section 3.1.2.11.10
  return [];
}

const block = (content: number[]): number[] => [...varint(content.length), ...content];

/** A complete, otherwise valid v5 frame whose property block for `where` holds `content`. */
function frameWith(where: Where, content: number[]): Uint8Array {
  const props = block(content);
  const connectHead = [...str("MQTT"), 5];
  let first: number;
  let body: number[];
  switch (where) {
    case "CONNECT": first = 0x10; body = [...connectHead, 0x02, 0, 60, ...props, ...str("c")]; break;
    case "Will Properties": first = 0x10; body = [...connectHead, 0x06, 0, 60, 0, ...str("c"), ...props, ...str("will/t"), 0, 1, 0x2a]; break;
    case "CONNACK": first = 0x20; body = [0, 0, ...props]; break;
    case "PUBLISH": first = 0x30; body = [...str("t/1"), ...props, ...ascii("payload")]; break;
    case "PUBACK": first = 0x40; body = [0, 1, 0, ...props]; break;
    case "PUBREC": first = 0x50; body = [0, 1, 0, ...props]; break;
    case "PUBREL": first = 0x62; body = [0, 1, 0, ...props]; break;
    case "PUBCOMP": first = 0x70; body = [0, 1, 0, ...props]; break;
    case "SUBSCRIBE": first = 0x82; body = [0, 1, ...props, ...str("a/#"), 0x01]; break;
    case "SUBACK": first = 0x90; body = [0, 1, ...props, 0x01]; break;
    case "UNSUBSCRIBE": first = 0xa2; body = [0, 1, ...props, ...str("a/#")]; break;
    case "UNSUBACK": first = 0xb0; body = [0, 1, ...props, 0x00]; break;
    case "DISCONNECT": first = 0xe0; body = [0, ...props]; break;
    case "AUTH": first = 0xf0; body = [0x18, ...props]; break;
  }
  return Uint8Array.from([first, ...varint(body.length), ...body]);
}

/** The decoded property block of `where` (the will's for Will Properties). */
function propertiesOf(p: Packet, where: Where): Properties {
  if (where === "Will Properties") {
    const will = (p as ConnectPacket).will;
    expect(will).not.toBeNull();
    return will!.properties;
  }
  expect(PACKET_NAMES[p.type]).toBe(where);
  return (p as { properties: Properties }).properties;
}

function decodeError(frame: Uint8Array): MqttError {
  let caught: unknown;
  try {
    decodePacket(frame, 5);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(MqttError);
  return caught as MqttError;
}

const hex = (n: number): string => n.toString(16).padStart(2, "0");

/** How the codec's error message names the block. */
const blockName = (where: Where): string => (where === "Will Properties" ? "will properties" : `${where} properties`);

// ---- the tests ----

describe("the codec's table matches the spec's", () => {
  test("same identifiers, in identifier order", () => {
    expect(PROPERTY_TABLE.map((s) => s.id)).toEqual(SPEC.map((r) => r.id));
  });

  test.each(SPEC.map((row) => ({ hex: hex(row.id), name: row.name, row })))("0x$hex $name: name, wire type, field and packets", ({ row }) => {
    const spec = PROPERTY_TABLE.find((s) => s.id === row.id)!;
    expect(spec.name).toBe(row.name);
    expect(spec.type).toBe(WIRE_TYPE[row.type]);
    expect(spec.key).toBe(row.key);
    const allowed = ALL_WHERE.filter((w) => (spec.contexts & (1 << CONTEXT[w])) !== 0);
    expect(allowed).toEqual(ALL_WHERE.filter((w) => row.where.includes(w)));
    expect(spec.contexts & ~ALL_WHERE.reduce((m, w) => m | (1 << CONTEXT[w]), 0)).toBe(0); // no other bits
  });
});

describe("baseline: every frame built here decodes without the property under test", () => {
  test.each([...ALL_WHERE])("%s with an empty property block", (where) => {
    const p = decodePacket(frameWith(where, requiredAlongside(where, [])), 5);
    const props = propertiesOf(p, where);
    expect(Object.keys(props)).toEqual(where === "AUTH" ? ["authenticationMethod"] : []);
  });
});

const MATRIX = SPEC.flatMap((row) =>
  ALL_WHERE.map((where) => ({ hex: hex(row.id), name: row.name, where, allowed: row.where.includes(where), row })),
);

describe(`each of the ${SPEC.length} properties in each of the ${ALL_WHERE.length} property blocks (section 2.2.2.2)`, () => {
  test.each(MATRIX)("0x$hex $name in $where: allowed=$allowed", ({ row, where, allowed }) => {
    const frame = frameWith(where, [...requiredAlongside(where, [row.id]), ...prop(row)]);
    if (allowed) {
      const props = propertiesOf(decodePacket(frame, 5), where);
      expect(props[row.key]).toEqual(decodedValue(row) as never);
    } else {
      const err = decodeError(frame);
      expect(err.reasonCode).toBe(ReasonCode.MalformedPacket);
      expect(err.message).toContain(`property ${row.name} is not allowed`);
      expect(err.message).toContain(blockName(where));
    }
  });
});

const NON_REPEATABLE = SPEC.filter((r) => r.id !== 0x26).flatMap((row) =>
  row.where.filter((w) => !(row.id === 0x0b && w === "PUBLISH")).map((where) => ({ hex: hex(row.id), name: row.name, where, row })),
);

describe("repeated properties", () => {
  test.each(NON_REPEATABLE)("0x$hex $name twice in $where is a Protocol Error (section 2.2.2.2)", ({ row, where }) => {
    const frame = frameWith(where, [...requiredAlongside(where, [row.id]), ...prop(row), ...prop(row)]);
    const err = decodeError(frame);
    expect(err.reasonCode).toBe(ReasonCode.ProtocolError);
    expect(err.message).toContain(`${row.name} appears more than once`);
    expect(err.message).toContain(blockName(where));
  });

  const USER = SPEC.find((r) => r.id === 0x26)!;
  const PAIRS: [string, string][] = [["k", "1"], ["a", "2"], ["k", "3"], ["k", "1"], ["", ""]];

  test.each([...USER.where])("User Property repeated in %s is kept, in wire order, duplicates included", (where) => {
    const content = [...requiredAlongside(where, [0x26]), ...PAIRS.flatMap(([k, v]) => [0x26, ...str(k), ...str(v)])];
    const props = propertiesOf(decodePacket(frameWith(where, content), 5), where);
    expect(props.userProperties).toEqual(PAIRS);
  });

  test("Subscription Identifier repeated in PUBLISH is accepted, in wire order (section 3.3.2.3.8)", () => {
    const ids = [1, 133, 16_384, 268_435_455, 1];
    const content = ids.flatMap((id) => [0x0b, ...varint(id)]);
    const props = propertiesOf(decodePacket(frameWith("PUBLISH", content), 5), "PUBLISH");
    expect(props.subscriptionIdentifiers).toEqual(ids);
  });

  test("Subscription Identifier twice in SUBSCRIBE is a Protocol Error (section 3.8.2.1.2)", () => {
    const err = decodeError(frameWith("SUBSCRIBE", [0x0b, 0x01, 0x0b, 0x02]));
    expect(err.reasonCode).toBe(ReasonCode.ProtocolError);
    expect(err.message).toContain("Subscription Identifier appears more than once in SUBSCRIBE properties");
  });

  test("a repeated property among others is still found", () => {
    const reason = SPEC.find((r) => r.id === 0x1f)!;
    const user = SPEC.find((r) => r.id === 0x26)!;
    const err = decodeError(frameWith("DISCONNECT", [...prop(reason), ...prop(user), ...prop(user), ...prop(reason)]));
    expect(err.reasonCode).toBe(ReasonCode.ProtocolError);
    expect(err.message).toContain("Reason String appears more than once in DISCONNECT properties");
  });
});

describe("identifiers outside the table", () => {
  const UNKNOWN = [0x00, 0x04, 0x05, 0x06, 0x07, 0x0a, 0x0c, 0x10, 0x14, 0x1b, 0x1d, 0x1e, 0x20, 0x2b, 0x7f];
  test.each(UNKNOWN.map((id) => ({ hex: hex(id), id })))("identifier 0x$hex is a Malformed Packet in every block (section 2.2.2.2)", ({ id }) => {
    for (const where of ALL_WHERE) {
      const err = decodeError(frameWith(where, [...requiredAlongside(where, []), id, 0x00, 0x00, 0x00, 0x00]));
      expect(err.reasonCode).toBe(ReasonCode.MalformedPacket);
      expect(err.message).toContain("unknown property identifier");
      expect(err.message).toContain(blockName(where));
    }
  });
});
