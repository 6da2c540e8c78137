import { describe, expect, test } from "bun:test";
import { decodePacket, encodePacket, NO_PROPERTIES, packetSize, PacketType, type Packet } from "../../lib/codec";
import { encodePacketInto } from "../../lib/codec/packet";
import { FIXTURES, type Fixture } from "../fixtures/packets";

/** Every Uint8Array field a decoded packet holds that must be a view of the frame. */
function views(p: Packet): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  if (p.type === PacketType.PUBLISH) {
    out.push(["topic", p.topic as Uint8Array], ["payload", p.payload]);
    if (p.properties.correlationData) out.push(["correlationData", p.properties.correlationData]);
  } else if (p.type === PacketType.CONNECT) {
    if (p.will) out.push(["will.topic", p.will.topic as Uint8Array], ["will.payload", p.will.payload]);
    if (p.will?.properties.correlationData) out.push(["will.correlationData", p.will.properties.correlationData]);
    if (p.password) out.push(["password", p.password]);
    if (p.properties.authenticationData) out.push(["authenticationData", p.properties.authenticationData]);
  } else if ((p.type === PacketType.CONNACK || p.type === PacketType.AUTH) && p.properties.authenticationData) {
    out.push(["authenticationData", p.properties.authenticationData]);
  }
  return out;
}

describe("byte fixture catalogue", () => {
  test("names are unique and every packet type appears at each level it exists at", () => {
    expect(new Set(FIXTURES.map((f) => f.name)).size).toBe(FIXTURES.length);
    for (let type = 1; type <= 15; type++) {
      for (const version of [4, 5] as const) {
        if (type === PacketType.AUTH && version === 4) continue;
        expect(FIXTURES.some((f) => f.packet.type === type && f.version === version)).toBe(true);
      }
    }
  });

  test.each(FIXTURES.map((f) => [f.name, f] as [string, Fixture]))("decode: %s", (_name, f) => {
    const frame = new Uint8Array(f.bytes);
    expect(decodePacket(frame, f.version)).toStrictEqual(f.packet);
  });

  test.each(FIXTURES.map((f) => [f.name, f] as [string, Fixture]))("encode: %s", (_name, f) => {
    expect(Array.from(encodePacket(f.packet, f.version))).toEqual(f.bytes);
  });

  // encodePacket returns uninitialized memory (Bun.allocUnsafe) that the encoder overwrites: every
  // byte must be written, which a buffer of garbage shows
  test.each(FIXTURES.map((f) => [f.name, f] as [string, Fixture]))("encode into a buffer of garbage writes every byte: %s", (_name, f) => {
    const size = packetSize(f.packet, f.version);
    for (const garbage of [0x00, 0xa5, 0xff]) {
      const buf = new Uint8Array(size + 8).fill(garbage);
      expect(encodePacketInto(f.packet, f.version, buf, 4)).toBe(4 + size);
      expect(Array.from(buf.subarray(4, 4 + size))).toEqual(f.bytes);
      expect(Array.from(buf.subarray(0, 4))).toEqual([garbage, garbage, garbage, garbage]);
      expect(Array.from(buf.subarray(4 + size))).toEqual(Array(4).fill(garbage));
    }
  });

  test.each(FIXTURES.map((f) => [f.name, f] as [string, Fixture]))("size === encode(p).length: %s", (_name, f) => {
    expect(packetSize(f.packet, f.version)).toBe(encodePacket(f.packet, f.version).length);
    expect(packetSize(f.packet, f.version)).toBe(f.bytes.length);
  });

  test.each(FIXTURES.map((f) => [f.name, f] as [string, Fixture]))("zero-copy views: %s", (_name, f) => {
    // place the frame inside a larger buffer so that a copy could not pass by accident
    const backing = new Uint8Array(f.bytes.length + 8);
    backing.set(f.bytes, 4);
    const frame = backing.subarray(4, 4 + f.bytes.length);
    const p = decodePacket(frame, f.version);
    for (const [field, v] of views(p)) {
      expect({ field, same: v.buffer === backing.buffer }).toEqual({ field, same: true });
      expect(v.byteOffset).toBeGreaterThanOrEqual(frame.byteOffset);
      expect(v.byteOffset + v.length).toBeLessThanOrEqual(frame.byteOffset + frame.length);
    }
  });
});

describe("non-canonical but valid input", () => {
  test("v5 PUBACK with remaining length 3 and reason code 0 decodes", () => {
    const frame = new Uint8Array([
      0x40, 0x03, // PUBACK, remaining length 3
      0x00, 0x01, // packet identifier 1
      0x00, // reason code 0x00 Success, written although it could be omitted
    ]);
    expect(decodePacket(frame, 5)).toStrictEqual({ type: PacketType.PUBACK, packetId: 1, reasonCode: 0, properties: NO_PROPERTIES });
    // and re-encodes to the shortest form
    expect(Array.from(encodePacket(decodePacket(frame, 5), 5))).toEqual([0x40, 0x02, 0x00, 0x01]);
  });

  test("v5 PUBREC with reason code and empty property block decodes", () => {
    const frame = new Uint8Array([
      0x50, 0x04, // PUBREC, remaining length 4
      0x00, 0x01, // packet identifier 1
      0x10, // reason code 0x10 No matching subscribers
      0x00, // property length 0
    ]);
    expect(decodePacket(frame, 5)).toStrictEqual({ type: PacketType.PUBREC, packetId: 1, reasonCode: 0x10, properties: NO_PROPERTIES });
  });

  test("v5 DISCONNECT with reason code and empty properties decodes", () => {
    const frame = new Uint8Array([
      0xe0, 0x02, // DISCONNECT, remaining length 2
      0x00, // reason code 0x00 Normal disconnection
      0x00, // property length 0
    ]);
    expect(decodePacket(frame, 5)).toStrictEqual({ type: PacketType.DISCONNECT, reasonCode: 0, properties: NO_PROPERTIES });
    expect(Array.from(encodePacket(decodePacket(frame, 5), 5))).toEqual([0xe0, 0x00]);
  });

  test("v5 AUTH with reason code 0 and a method decodes", () => {
    const frame = new Uint8Array([
      0xf0, 0x08, // AUTH, remaining length 8
      0x00, // reason code 0x00 Success
      0x06, // property length 6
      0x15, 0x00, 0x03, 0x74, 0x6f, 0x6b, // Authentication Method "tok"
    ]);
    expect(decodePacket(frame, 5)).toStrictEqual({ type: PacketType.AUTH, reasonCode: 0, properties: { authenticationMethod: "tok" } });
  });

  test("a topic given as a string encodes like the same topic as bytes", () => {
    const f = FIXTURES.find((x) => x.name === "PUBLISH v4 non-ASCII topic")!;
    const p = { ...(f.packet as Extract<Packet, { type: 3 }>), topic: "ü/€" };
    expect(Array.from(encodePacket(p, 4))).toEqual(f.bytes);
  });

  test("long topics repeated, alternating, of equal length or not ASCII each encode to their own bytes (the writer keeps a repeated one)", () => {
    const a = "sensors/building-7/floor-3/room-12/temperature";
    const b = "sensors/building-7/floor-3/room-12/humidity-xx"; // the same length as a
    const u = "sensors/gebäude-7/stockwerk-3/raum-12/température";
    const seq = [a, a, a, b, a, b, b, u, u, u, a, "short/topic", a, `${a}`.slice(0, -1) + "E"];
    for (const topic of seq) {
      const p: Packet = { type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic, packetId: 0, properties: NO_PROPERTIES, payload: new Uint8Array([1]) };
      const bytes = encodePacket(p, 5);
      expect(bytes.length).toBe(packetSize(p, 5));
      const decoded = decodePacket(bytes, 5) as Extract<Packet, { type: 3 }>;
      expect(new TextDecoder().decode(decoded.topic as Uint8Array)).toBe(topic);
    }
  });
});
