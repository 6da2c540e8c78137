import { describe, expect, test } from "bun:test";
import { decodePacket, Framer, MqttError } from "../../lib/codec";
import { MALFORMED, type MalformedCase } from "../fixtures/malformed";
import { FIXTURES } from "../fixtures/packets";

/** Bytes that follow each case on the stream: a whole PINGREQ, then the first byte of another. */
const TRAILING = [0xc0, 0x00, 0xc0];

/** Runs `fn` and returns what it threw (undefined when it returned). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Asserts `e` is an MqttError with the case's reason code and message. */
function expectCaseError(e: unknown, c: MalformedCase): void {
  expect(e).toBeInstanceOf(MqttError);
  const err = e as MqttError;
  expect({ reasonCode: err.reasonCode }).toEqual({ reasonCode: c.reasonCode });
  expect(err.message).toMatch(c.message);
}

/**
 * What the fixed header of `bytes` declares: the whole frame length, "invalid" for a remaining
 * length of more than four bytes, or "incomplete" when the header itself is cut short.
 */
function declaredLength(bytes: number[]): number | "invalid" | "incomplete" {
  let rl = 0;
  let mul = 1;
  for (let i = 1; i <= 4; i++) {
    const b = bytes[i];
    if (b === undefined) return "incomplete";
    rl += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return 1 + i + rl;
    mul *= 128;
  }
  return "invalid";
}

const cases = MALFORMED.map((c) => [c.name, c] as [string, MalformedCase]);

describe("malformed-input table", () => {
  test("has at least 45 cases with unique names and unique byte strings", () => {
    expect(MALFORMED.length).toBeGreaterThanOrEqual(45);
    expect(new Set(MALFORMED.map((c) => c.name)).size).toBe(MALFORMED.length);
    expect(new Set(MALFORMED.map((c) => `${c.version}:${c.bytes.join(",")}`)).size).toBe(MALFORMED.length);
  });

  test("every frame is self-consistent unless the case is about the fixed header", () => {
    const header = /remaining length|frame holds/;
    for (const c of MALFORMED) {
      if (header.test(c.message.source)) continue;
      expect({ name: c.name, length: declaredLength(c.bytes) }).toEqual({ name: c.name, length: c.bytes.length });
    }
  });

  test.each(cases)("decode rejects: %s", (_name, c) => {
    expectCaseError(thrown(() => decodePacket(new Uint8Array(c.bytes), c.version)), c);
  });

  test.each(cases)("framed with trailing bytes: %s", (_name, c) => {
    const framer = new Framer();
    framer.push(new Uint8Array([...c.bytes, ...TRAILING]));
    const declared = declaredLength(c.bytes);
    if (declared === "invalid") {
      // the framer itself rejects a remaining length it cannot read, with the same code
      expectCaseError(thrown(() => framer.next()), c);
      return;
    }
    expect(declared).not.toBe("incomplete");
    const frame = framer.next();
    if (declared === c.bytes.length) {
      expect(frame).not.toBeNull();
      expect(Array.from(frame!)).toEqual(c.bytes);
      expectCaseError(thrown(() => decodePacket(frame!, c.version)), c);
      // framing goes on: the PINGREQ that follows comes out whole, the lone byte waits
      expect(Array.from(framer.next()!)).toEqual([0xc0, 0x00]);
      expect(framer.next()).toBeNull();
      expect(framer.buffered).toBe(1);
    } else if ((declared as number) < c.bytes.length) {
      // the header is believed: the frame ends where the remaining length says
      expect(Array.from(frame!)).toEqual(c.bytes.slice(0, declared as number));
    } else {
      // the header promises more than is there: the framer waits for it
      expect(frame).toBeNull();
      expect(framer.buffered).toBe(c.bytes.length + TRAILING.length);
    }
  });

  test.each(cases.filter(([, c]) => declaredLength(c.bytes) === c.bytes.length))("framed one byte at a time: %s", (_name, c) => {
    const framer = new Framer();
    let frame: Uint8Array | null = null;
    for (const b of c.bytes) {
      expect(frame).toBeNull();
      framer.push(new Uint8Array([b]));
      frame = framer.next();
    }
    expect(Array.from(frame!)).toEqual(c.bytes);
    expectCaseError(thrown(() => decodePacket(frame!, c.version)), c);
  });
});

describe("the decoder throws nothing but MqttError", () => {
  // every single-byte corruption of every fixture either decodes or is rejected with an MqttError
  test.each(FIXTURES.map((f) => [f.name, f] as const))("corruptions of %s", (_name, f) => {
    for (let i = 0; i < f.bytes.length; i++) {
      for (const v of [0x00, 0x7f, 0x80, 0xff]) {
        const bytes = f.bytes.slice();
        bytes[i] = v;
        const e = thrown(() => decodePacket(new Uint8Array(bytes), f.version));
        if (e !== undefined && !(e instanceof MqttError)) throw new Error(`byte ${i} = ${v}: ${String(e)}`);
      }
    }
    for (let n = 0; n < f.bytes.length; n++) {
      const e = thrown(() => decodePacket(new Uint8Array(f.bytes.slice(0, n)), f.version));
      expect(e).toBeInstanceOf(MqttError);
    }
  });
});
