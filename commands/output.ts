/**
 * How `subscribe`, `read` and `rr` print a message: the people's formats (text, binary: a
 * Topic/Message block), JSON lines, and the script formats of mosquitto_sub: `-v` (topic and
 * payload on one line), `--raw` (the payload only) and `-F` templates (%t %p %q %r %j ...).
 *
 * A script format writes bytes (the payload as it came) and ends each message with a newline
 * unless -N; the people's formats write text lines.
 */
import type { Message } from "../lib/client/message";
import { UsageError } from "./usage";

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The payload as hex digits. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** The bytes as a string when they are valid UTF-8, else null. */
export function utf8OrNull(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

/** True when the text can go to a terminal as it is: no control characters but tab and newlines. */
function printable(text: string): boolean {
  return !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(text);
}

/** A payload for a terminal: text when printable UTF-8 (and not --format binary), else hex with its size. */
export function payloadText(m: Message, binary: boolean): string {
  if (!binary) {
    const text = utf8OrNull(m.payload);
    if (text !== null && printable(text)) return text;
  }
  return `${hex(m.payload)} (${m.payload.length} bytes, hex)`;
}

/** One message as a JSON object (one line of `--format json`), with its reception time when `time` is given. */
export function messageJson(m: Message, time?: Date): string {
  const text = utf8OrNull(m.payload);
  const properties: Record<string, unknown> = {};
  if (m.payloadFormatIndicator !== undefined) properties.payloadFormatIndicator = m.payloadFormatIndicator;
  if (m.messageExpiryInterval !== undefined) properties.messageExpiryInterval = m.messageExpiryInterval;
  if (m.contentType !== undefined) properties.contentType = m.contentType;
  if (m.responseTopic !== undefined) properties.responseTopic = m.responseTopic;
  if (m.correlationData !== undefined) {
    const c = utf8OrNull(m.correlationData);
    if (c !== null) properties.correlationData = c;
    else {
      properties.correlationData = hex(m.correlationData);
      properties.correlationDataEncoding = "hex";
    }
  }
  if (m.userProperties.length > 0) properties.userProperties = m.userProperties;
  if (m.subscriptionIdentifiers.length > 0) properties.subscriptionIdentifiers = m.subscriptionIdentifiers;
  const o: Record<string, unknown> = {};
  if (time !== undefined) o.time = time.toISOString();
  o.topic = m.topic;
  o.payload = text ?? hex(m.payload);
  if (text === null) o.payloadEncoding = "hex";
  Object.assign(o, { qos: m.qos, retain: m.retain, properties });
  return JSON.stringify(o);
}

/** A message as it was received: the message and the time it came. */
export interface Received {
  message: Message;
  /** Date.now() at reception. */
  time: number;
  /** performance.timeOrigin + performance.now() at reception (sub-millisecond, for %U). */
  preciseTime: number;
}

/** The reception time of a message, now. */
export function received(message: Message): Received {
  return { message, time: Date.now(), preciseTime: performance.timeOrigin + performance.now() };
}

/** ISO 8601 in local time with the UTC offset, to the second, as mosquitto_sub's %I: 2016-08-10T09:47:38+0100. */
export function isoLocal(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(Math.abs(n)).padStart(w, "0");
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}${sign}${p(Math.trunc(offset / 60))}${p(offset % 60)}`;
}

/** mosquitto_sub's %j object: tst, topic, qos, retain (0/1), payloadlen, properties (mosquitto's names, when any), payload. */
export function mosquittoJson(r: Received, payloadAsJson = false): string {
  const m = r.message;
  const o: Record<string, unknown> = { tst: new Date(r.time).toISOString(), topic: m.topic, qos: m.qos, retain: m.retain ? 1 : 0, payloadlen: m.payload.length };
  const p: Record<string, unknown> = {};
  if (m.userProperties.length > 0) p["user-properties"] = Object.fromEntries(m.userProperties);
  if (m.contentType !== undefined) p["content-type"] = m.contentType;
  if (m.correlationData !== undefined) p["correlation-data"] = utf8OrNull(m.correlationData) ?? hex(m.correlationData);
  if (m.responseTopic !== undefined) p["response-topic"] = m.responseTopic;
  if (m.payloadFormatIndicator !== undefined) p["payload-format-indicator"] = m.payloadFormatIndicator;
  if (m.messageExpiryInterval !== undefined) p["message-expiry-interval"] = m.messageExpiryInterval;
  if (m.subscriptionIdentifiers.length > 0) p["subscription-identifier"] = m.subscriptionIdentifiers[0];
  if (Object.keys(p).length > 0) o.properties = p;
  const text = utf8OrNull(m.payload);
  if (payloadAsJson && text !== null) {
    try {
      JSON.parse(text);
      return `${JSON.stringify(o).slice(0, -1)},"payload":${text.trim()}}`;
    } catch {
      // not JSON: quoted below, as %j
    }
  }
  o.payload = text ?? hex(m.payload);
  return JSON.stringify(o);
}

type Piece = string | ((r: Received) => string | Uint8Array);

/** The template letters: mosquitto_sub's -F letters (the same meaning), all of them but %A and %m. */
export const TEMPLATE_LETTERS: Record<string, (r: Received) => string | Uint8Array> = {
  t: (r) => r.message.topic,
  p: (r) => r.message.payload,
  q: (r) => String(r.message.qos),
  r: (r) => (r.message.retain ? "1" : "0"),
  l: (r) => String(r.message.payload.length),
  x: (r) => hex(r.message.payload),
  X: (r) => hex(r.message.payload).toUpperCase(),
  j: (r) => mosquittoJson(r),
  J: (r) => mosquittoJson(r, true),
  I: (r) => isoLocal(r.time),
  U: (r) => (r.preciseTime / 1000).toFixed(9),
  P: (r) => r.message.userProperties.map(([k, v]) => `${k}:${v}`).join(" "),
  C: (r) => r.message.contentType ?? "",
  D: (r) => r.message.correlationData ?? "",
  E: (r) => (r.message.messageExpiryInterval === undefined ? "" : String(r.message.messageExpiryInterval)),
  F: (r) => (r.message.payloadFormatIndicator === undefined ? "" : String(r.message.payloadFormatIndicator)),
  R: (r) => r.message.responseTopic ?? "",
  S: (r) => r.message.subscriptionIdentifiers.join(","),
};

/** The backslash escapes of mosquitto_sub's -F. */
const ESCAPES: Record<string, string> = { "\\": "\\", "0": "\0", a: "\x07", e: "\x1b", n: "\n", r: "\r", t: "\t", v: "\v" };

/** A compiled -F template: `%` letters and `\` escapes, checked once. */
export function compileTemplate(template: string): (r: Received) => Uint8Array {
  const pieces: Piece[] = [];
  let text = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c === "%" || c === "\\") {
      const next = template[i + 1];
      if (next === undefined) throw new UsageError(`--format template ends with a lone '${c}'`);
      i++;
      if (c === "%" && next === "%") text += "%";
      else if (c === "%") {
        const f = TEMPLATE_LETTERS[next];
        if (f === undefined) throw new UsageError(`--format template: unknown %${next} (known: %% ${Object.keys(TEMPLATE_LETTERS).map((l) => `%${l}`).join(" ")})`);
        if (text !== "") pieces.push(text);
        text = "";
        pieces.push(f);
      } else {
        const e = ESCAPES[next];
        if (e === undefined) throw new UsageError(`--format template: unknown escape \\${next}`);
        text += e;
      }
    } else text += c;
  }
  if (text !== "") pieces.push(text);
  return (r) => {
    const parts = pieces.map((p) => (typeof p === "string" ? encoder.encode(p) : (() => {
      const v = p(r);
      return typeof v === "string" ? encoder.encode(v) : v;
    })()));
    return Buffer.concat(parts);
  };
}

/** How messages are printed. */
export type OutputMode =
  | { kind: "text" | "binary" | "json" }
  | { kind: "verbose" | "raw" }
  | { kind: "template"; render: (r: Received) => Uint8Array };

/** The output mode of -F/--format, -v and --raw (a -F template wins over -v, as in mosquitto_sub). */
export function outputMode(format: string | undefined, verbose: boolean, raw: boolean): OutputMode {
  if (format !== undefined && format.includes("%")) return { kind: "template", render: compileTemplate(format) };
  if (format !== undefined && (verbose || raw)) throw new UsageError("-F FORMAT does not go with -v or --raw (a template with % does)");
  if (verbose && raw) throw new UsageError("-v and --raw do not go together");
  if (verbose) return { kind: "verbose" };
  if (raw) return { kind: "raw" };
  const f = format ?? "text";
  if (f !== "text" && f !== "binary" && f !== "json") throw new UsageError(`--format must be text, binary, json or a template with %, not '${f}'`);
  return { kind: f };
}

/** True when the mode is for scripts: status lines go to stderr, so that stdout has the messages only. */
export function forScripts(mode: OutputMode): boolean {
  return mode.kind !== "text" && mode.kind !== "binary";
}

/** Writes one message to stdout in `mode`; `newline` false is -N; `timestamps` adds the reception time. */
export function printMessage(r: Received, mode: OutputMode, options: { newline: boolean; timestamps: boolean }): void {
  const m = r.message;
  const time = options.timestamps ? new Date(r.time) : undefined;
  switch (mode.kind) {
    case "text":
    case "binary":
      process.stdout.write(`${time ? `Time:    ${time.toISOString()}\n` : ""}Topic:   ${m.topic}\nMessage: ${payloadText(m, mode.kind === "binary")}\n`);
      return;
    case "json":
      process.stdout.write(messageJson(m, time) + "\n");
      return;
    default: {
      const parts: Uint8Array[] = [];
      if (time && mode.kind !== "template") parts.push(encoder.encode(time.toISOString() + " "));
      if (mode.kind === "verbose") parts.push(encoder.encode(m.topic + " "), m.payload);
      else if (mode.kind === "raw") parts.push(m.payload);
      else if (mode.kind === "template") parts.push(mode.render(r));
      if (options.newline) parts.push(encoder.encode("\n"));
      process.stdout.write(Buffer.concat(parts));
    }
  }
}
