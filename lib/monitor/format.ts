/**
 * A message's payload and time as the monitors show them (the terminal monitor, commands/monitor,
 * and the broker's web dashboard): pretty JSON, text when printable, a hex dump otherwise; a
 * sparkline of recent numeric values; a wall-clock time.
 */

/** How payloads are shown: auto (pretty JSON, text when printable, hex otherwise), binary (hex dump) or text. */
export type Format = "auto" | "binary" | "text";

/** The most payload bytes formatted for the screen. */
const MAX_SHOWN_BYTES = 4096;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const lenientUtf8 = new TextDecoder();
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
const CONTROL_ALL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
const BLOCKS = "▁▂▃▄▅▆▇█";

/** HH:MM:SS.mmm of a time in milliseconds, local time. */
export function clock(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** A hex dump: offset, 16 bytes in hex, and the printable ASCII. */
export function hexDump(bytes: Uint8Array): string[] {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    let hex = "";
    let ascii = "";
    for (let i = 0; i < 16; i++) {
      if (i < row.length) {
        const b = row[i]!;
        hex += b.toString(16).padStart(2, "0") + " ";
        ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".";
      } else hex += "   ";
      if (i === 7) hex += " ";
    }
    lines.push(`${off.toString(16).padStart(4, "0")}  ${hex} |${ascii}|`);
  }
  return lines.length > 0 ? lines : ["(empty)"];
}

/** The payload as screen lines in the given format. */
export function formatPayload(payload: Uint8Array, format: Format): string[] {
  const cut = payload.length > MAX_SHOWN_BYTES;
  const shown = cut ? payload.subarray(0, MAX_SHOWN_BYTES) : payload;
  let lines: string[];
  if (payload.length === 0) lines = ["(empty)"];
  else if (format === "binary") lines = hexDump(shown.subarray(0, 256));
  else if (format === "text") lines = lenientUtf8.decode(shown).replace(CONTROL_ALL, "·").split("\n");
  else {
    let text: string | null = null;
    try {
      text = strictUtf8.decode(shown);
    } catch {
      // not UTF-8 (or cut inside a character): shown in hex below
    }
    if (text !== null && !cut && /^\s*[[{]/.test(text)) {
      try {
        text = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        // not JSON after all: shown as text
      }
    }
    lines = text !== null && !CONTROL.test(text) ? text.replace(/\t/g, "  ").split("\n") : hexDump(shown.subarray(0, 256));
  }
  if (cut) lines.push(`… (${payload.length} bytes)`);
  return lines;
}

/** A sparkline of numbers, one block per value, scaled between their minimum and maximum. */
export function sparkline(values: readonly number[]): string {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const span = max - min;
  let s = "";
  for (const v of values) s += BLOCKS[span === 0 ? 3 : Math.round(((v - min) / span) * (BLOCKS.length - 1))];
  return s;
}
