/** lib/codec/bytes.ts: copies that are copies, and ASCII strings without a decoder. */
import { describe, expect, test } from "bun:test";
import { asciiString, copyBytes, copyInto } from "../../lib/codec/bytes";

/** A Buffer as a socket hands one over: a view into a larger chunk. */
function chunk(n: number): Buffer {
  const big = Buffer.alloc(n + 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 1) & 0x7f;
  return big.subarray(10, 10 + n);
}

describe("copyBytes", () => {
  for (const n of [0, 1, 31, 32, 33, 4096]) {
    test(`${n} bytes of a Buffer: the same bytes, in a plain Uint8Array of their own`, () => {
      const src = chunk(n + 6);
      const copy = copyBytes(src, 3, 3 + n);
      expect(copy.constructor).toBe(Uint8Array);
      expect(copy.byteLength).toBe(n);
      expect(copy.buffer.byteLength).toBe(n); // not a view of the chunk
      expect(Array.from(copy)).toEqual(Array.from(src.subarray(3, 3 + n)));
      src.fill(0);
      if (n > 0) expect(copy.some((b) => b !== 0)).toBe(true); // unaffected by the chunk's reuse
    });
  }
});

test("copyInto copies a range into another array at an offset, from a Buffer or a Uint8Array", () => {
  for (const src of [chunk(50), new Uint8Array(chunk(50))]) {
    const dst = new Uint8Array(60);
    copyInto(dst, 7, src, 5, 45);
    expect(Array.from(dst.subarray(7, 47))).toEqual(Array.from(src.subarray(5, 45)));
    expect(dst.subarray(0, 7).every((b) => b === 0) && dst.subarray(47).every((b) => b === 0)).toBe(true);
  }
});

test("asciiString is what UTF-8 decoding makes of ASCII bytes, over any range", () => {
  const text = "dev/12345/state and $SYS/# + more";
  const bytes = Buffer.from(`xx${text}yy`);
  expect(asciiString(bytes, 2, 2 + text.length)).toBe(text);
  expect(asciiString(bytes, 5, 5)).toBe("");
  expect(asciiString(new Uint8Array(bytes), 2, 5)).toBe(new TextDecoder().decode(bytes.subarray(2, 5)));
});
