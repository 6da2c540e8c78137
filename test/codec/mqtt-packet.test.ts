/**
 * Cross-check against mqtt-packet (npm), an MQTT codec nobody here wrote. For every fixture of the
 * shared catalogue, in both directions:
 *  - parse:    the fixture's bytes, read by mqtt-packet's parser, convert to the fixture's packet;
 *  - generate: mqtt-packet's generate() of the (converted) fixture packet decodes, with our
 *              decodePacket, to the fixture's packet.
 * The comparison is strict (same fields, same values); where mqtt-packet cannot express a fixture
 * the fixture is listed below with the reason, and a test checks that the reason still holds.
 */
import { describe, expect, test } from "bun:test";
import { generate, parser, type Packet as MqttPacket } from "mqtt-packet";
import { decodePacket, PacketType, PACKET_NAMES, type Packet, type ProtocolVersion } from "../../lib/codec";
import { FIXTURES, type Fixture } from "../fixtures/packets";
import { fromMqttPacket, toMqttPacket } from "./mqtt-packet-convert";

/** Fixtures whose bytes mqtt-packet's parser cannot read as the fixture's packet, by name, with why. */
const SKIP_PARSE: Readonly<Record<string, string>> = {
  "AUTH v5 empty (success)":
    "mqtt-packet's parser always reads a reason code byte, so it rejects an AUTH of remaining length 0 " +
    "('Invalid auth reason code'), the form MQTT 5.0 section 3.15.2.1 allows for Success without properties",
};

/** Fixtures whose packet mqtt-packet's generate() cannot express, by name, with why. */
const SKIP_GENERATE: Readonly<Record<string, string>> = {
  "CONNECT v5 password without user name, will without properties, empty will payload and password":
    "mqtt-packet's generate() refuses a password without a user name ('Username is required to use password'), " +
    "which MQTT 5.0 allows (section 3.1.2.9); only 3.1.1 forbade it",
};

/** Reads one frame with a fresh mqtt-packet parser; throws on its error or unless exactly one packet came out. */
function mqttPacketParse(bytes: readonly number[], version: ProtocolVersion): MqttPacket {
  const p = parser({ protocolVersion: version });
  const packets: MqttPacket[] = [];
  const errors: Error[] = [];
  p.on("packet", (pkt) => packets.push(pkt));
  p.on("error", (e: Error) => errors.push(e));
  const left = p.parse(Buffer.from(bytes));
  if (errors.length > 0) throw new Error(`mqtt-packet parser: ${errors.map((e) => e.message).join("; ")}`);
  if (packets.length !== 1 || left !== 0) throw new Error(`mqtt-packet parser gave ${packets.length} packet(s), ${left} byte(s) left`);
  return packets[0]!;
}

/** Direction (a): our fixture bytes through mqtt-packet's parser, converted to our packet. */
function viaParse(f: Fixture): Packet {
  return fromMqttPacket(mqttPacketParse(f.bytes, f.version), f.version);
}

/** Direction (b): mqtt-packet's bytes for the fixture's packet, decoded by us. */
function viaGenerate(f: Fixture): Packet {
  const bytes = generate(toMqttPacket(f.packet, f.version), { protocolVersion: f.version });
  return decodePacket(new Uint8Array(bytes), f.version);
}

const encoder = new TextEncoder();

/**
 * A deep copy that differs from the packet only in representation: topic names given as strings
 * (allowed when encoding) become their UTF-8 bytes, as decoders return them, and every byte view
 * becomes a plain Uint8Array, so that a Buffer and a view of a frame compare by content.
 */
function comparable(v: unknown, key = ""): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (typeof v === "string" && key === "topic") return encoder.encode(v);
  if (Array.isArray(v)) return v.map((x) => comparable(x));
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = comparable(x, k);
    return out;
  }
  return v;
}

/** True when `run` gives the fixture's packet exactly. */
function agrees(f: Fixture, run: (f: Fixture) => Packet): boolean {
  try {
    return Bun.deepEquals(comparable(run(f)), comparable(f.packet), true);
  } catch {
    return false;
  }
}

const label = (f: Fixture) => `${f.name} (v${f.version})`;
const parseCases = FIXTURES.filter((f) => !(f.name in SKIP_PARSE));
const generateCases = FIXTURES.filter((f) => !(f.name in SKIP_GENERATE));

describe("mqtt-packet cross-check", () => {
  test("the skip lists name fixtures that exist", () => {
    const names = new Set(FIXTURES.map((f) => f.name));
    const unknown = [...Object.keys(SKIP_PARSE), ...Object.keys(SKIP_GENERATE)].filter((n) => !names.has(n));
    expect(unknown).toEqual([]);
  });

  test("every packet type at both protocol levels is cross-checked in both directions", () => {
    const missing: string[] = [];
    for (const version of [4, 5] as const) {
      for (let type: number = PacketType.CONNECT; type <= PacketType.AUTH; type++) {
        if (type === PacketType.AUTH && version === 4) continue; // AUTH does not exist in 3.1.1
        const name = `${PACKET_NAMES[type]} v${version}`;
        const ofType = (f: Fixture) => f.version === version && f.packet.type === type;
        if (!parseCases.some(ofType)) missing.push(`${name} (parse)`);
        if (!generateCases.some(ofType)) missing.push(`${name} (generate)`);
      }
    }
    expect(missing).toEqual([]);
  });

  describe("(a) our bytes, parsed by mqtt-packet, give the fixture's packet", () => {
    test.each(parseCases.map((f) => [label(f), f] as const))("%s", (_, f) => {
      expect(comparable(viaParse(f))).toStrictEqual(comparable(f.packet));
    });
  });

  describe("(b) mqtt-packet's generate(), decoded by us, gives the fixture's packet", () => {
    test.each(generateCases.map((f) => [label(f), f] as const))("%s", (_, f) => {
      expect(comparable(viaGenerate(f))).toStrictEqual(comparable(f.packet));
    });
  });

  describe("skipped fixtures are still beyond mqtt-packet (else take them off the list)", () => {
    const skipped = [
      ...FIXTURES.filter((f) => f.name in SKIP_PARSE).map((f) => [`parse: ${label(f)}: ${SKIP_PARSE[f.name]}`, f, viaParse] as const),
      ...FIXTURES.filter((f) => f.name in SKIP_GENERATE).map((f) => [`generate: ${label(f)}: ${SKIP_GENERATE[f.name]}`, f, viaGenerate] as const),
    ];
    if (skipped.length === 0) return;
    test.each(skipped)("%s", (_, f, run) => {
      expect(agrees(f, run)).toBe(false);
    });
  });
});
