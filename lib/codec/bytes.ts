/**
 * Copying received bytes. What a socket hands over is a Buffer, and Buffer's slice() makes a view
 * (as subarray() does), not a copy: a message "copied" that way keeps the whole received chunk
 * alive, up to 64 KB or more for a few bytes of payload, for as long as it is queued or retained.
 */

/** A copy of `bytes[start, end)` in memory of its own, whatever kind of Uint8Array `bytes` is. */
export function copyBytes(bytes: Uint8Array, start = 0, end = bytes.length): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, start, end);
}
