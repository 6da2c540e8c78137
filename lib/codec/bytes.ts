/**
 * Copying received bytes. What a socket hands over is a Buffer, and Buffer's slice() makes a view
 * (as subarray() does), not a copy: a message "copied" that way keeps the whole received chunk
 * alive, up to 64 KB or more for a few bytes of payload, for as long as it is queued or retained.
 */

interface BufferMethods {
  copy(this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number): number;
  latin1Slice(this: Uint8Array, start: number, end: number): string;
}
/** Buffer's native methods, called on any Uint8Array; undefined where there is no Buffer (a browser). */
const bufferMethods = (globalThis as { Buffer?: { prototype: BufferMethods } }).Buffer?.prototype;
const bufferCopy = bufferMethods?.copy;
const latin1Slice = typeof bufferMethods?.latin1Slice === "function" ? bufferMethods.latin1Slice : undefined;
const utf8 = new TextDecoder();

/**
 * A copy of `bytes[start, end)` in memory of its own, whatever kind of Uint8Array `bytes` is.
 * Not `slice()`: on a Buffer it goes through Buffer's constructor (species), six times slower.
 */
export function copyBytes(bytes: Uint8Array, start = 0, end = bytes.length): Uint8Array {
  const n = end - start;
  const out = new Uint8Array(n);
  if (n <= 32) for (let i = 0; i < n; i++) out[i] = bytes[start + i]!; // short: a loop beats a native call
  else copyInto(out, 0, bytes, start, end);
  return out;
}

/**
 * `bytes[start, end)`, which the caller knows to be ASCII, as a string: with Buffer's latin1Slice
 * (no view, no UTF-8 decoder; a third of TextDecoder's time on a topic name), else TextDecoder.
 */
export function asciiString(bytes: Uint8Array, start: number, end: number): string {
  return latin1Slice !== undefined ? latin1Slice.call(bytes, start, end) : utf8.decode(bytes.subarray(start, end));
}

/**
 * Copies `src[start, end)` into `dst` at `at`. Buffer's native copy takes any Uint8Array and makes
 * no view: about half the time of `dst.set(src.subarray(start, end), at)`, which it falls back to
 * where there is no Buffer (a browser).
 */
export function copyInto(dst: Uint8Array, at: number, src: Uint8Array, start: number, end: number): void {
  if (bufferCopy !== undefined) bufferCopy.call(src, dst, at, start, end);
  else dst.set(src.subarray(start, end), at);
}
