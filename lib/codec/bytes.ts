/**
 * Copying received bytes. What a socket hands over is a Buffer, and Buffer's slice() makes a view
 * (as subarray() does), not a copy: a message "copied" that way keeps the whole received chunk
 * alive, up to 64 KB or more for a few bytes of payload, for as long as it is queued or retained.
 */

/** A copy of `bytes[start, end)` in memory of its own, whatever kind of Uint8Array `bytes` is. */
export function copyBytes(bytes: Uint8Array, start = 0, end = bytes.length): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, start, end);
}

const bufferCopy = (globalThis as { Buffer?: { prototype: { copy(this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number): number } } }).Buffer?.prototype.copy;

/**
 * Copies `src[start, end)` into `dst` at `at`. Buffer's native copy takes any Uint8Array and makes
 * no view: about half the time of `dst.set(src.subarray(start, end), at)`, which it falls back to
 * where there is no Buffer (a browser).
 */
export function copyInto(dst: Uint8Array, at: number, src: Uint8Array, start: number, end: number): void {
  if (bufferCopy !== undefined) bufferCopy.call(src, dst, at, start, end);
  else dst.set(src.subarray(start, end), at);
}
