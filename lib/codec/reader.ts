/**
 * A bounds-checked cursor over one received frame. Every primitive of section 1.5 is read here and
 * nowhere else; strings are validated as the spec demands, and binary data and topic names come back
 * as `subarray` views of the frame (zero-copy).
 */
import { malformed, MqttError, protocolError, ReasonCode } from "./reason-codes";
import { NO_PROPERTIES, PROPERTY_BY_ID, PropertyType, WILL_CONTEXT, type Properties } from "./properties";
import { PACKET_NAMES, PacketType } from "./constants";
import { asciiString, copyBytes, copyInto } from "./bytes";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decodes bytes already checked to be a valid MQTT string (validateTopicName()) without checking them again. */
export function decodeValidated(bytes: Uint8Array): string {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return utf8.decode(bytes);
  return asciiString(bytes, 0, bytes.length);
}

/**
 * Checks that `bytes[start, end)` is well-formed UTF-8 without U+0000 and returns it decoded.
 * [MQTT-1.5.4-1] [MQTT-1.5.4-2]
 */
export function decodeUtf8(bytes: Uint8Array, start: number, end: number, what: string): string {
  let ascii = true;
  for (let i = start; i < end; i++) {
    const b = bytes[i]!;
    if (b === 0) malformed(`${what} contains U+0000`); // [MQTT-1.5.4-2]
    if (b >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (start === end) return "";
  // ASCII is valid UTF-8 and was checked for U+0000 above; String.fromCharCode.apply over a typed
  // array is several times slower than asciiString() or TextDecoder.
  if (ascii) return asciiString(bytes, start, end);
  try {
    const s = utf8.decode(bytes.subarray(start, end));
    if (!ascii && s.includes("\0")) malformed(`${what} contains U+0000`); // [MQTT-1.5.4-2]
    return s;
  } catch (e) {
    if (e instanceof MqttError) throw e;
    return malformed(`${what} is not valid UTF-8`); // [MQTT-1.5.4-1]
  }
}

/** 1 for the bytes a topic name takes without a closer look: ASCII other than U+0000, '#' and '+'. */
const TOPIC_BYTE_OK = new Uint8Array(256).map((_, b) => (b !== 0 && b !== 0x23 && b !== 0x2b && b < 0x80 ? 1 : 0));

/**
 * Validates a topic name held as bytes: well-formed UTF-8, no U+0000, no wildcard characters.
 * Returns nothing; the caller keeps the view. [MQTT-1.5.4-1] [MQTT-1.5.4-2] [MQTT-3.3.2-2]
 */
export function validateTopicName(bytes: Uint8Array, start: number, end: number, what: string): void {
  // the common case, printable ASCII without wildcards, costs one table load per byte
  let i = start;
  while (i < end && TOPIC_BYTE_OK[bytes[i]!] === 1) i++;
  for (; i < end; i++) {
    const b = bytes[i]!;
    if (b === 0x23 || b === 0x2b) {
      throw new MqttError(ReasonCode.TopicNameInvalid, `topic name invalid: ${what} contains the wildcard '${String.fromCharCode(b)}'`); // [MQTT-3.3.2-2]
    }
    if (b === 0) malformed(`${what} contains U+0000`); // [MQTT-1.5.4-2]
    if (b >= 0x80) {
      decodeUtf8(bytes, i, end, what); // [MQTT-1.5.4-1]; wildcards are ASCII, so the rest was scanned here too
      for (let j = i + 1; j < end; j++) {
        const c = bytes[j]!;
        if (c === 0x23 || c === 0x2b) {
          throw new MqttError(ReasonCode.TopicNameInvalid, `topic name invalid: ${what} contains the wildcard '${String.fromCharCode(c)}'`); // [MQTT-3.3.2-2]
        }
      }
      return;
    }
  }
}

// Names of each property block for messages, built once rather than on every decode.
const PROPERTIES_WHERE: readonly string[] = Array.from({ length: WILL_CONTEXT + 1 }, (_, c) =>
  c === WILL_CONTEXT ? "will properties" : `${PACKET_NAMES[c]} properties`,
);
const PROPERTY_LENGTH_WHAT: readonly string[] = PROPERTIES_WHERE.map((w) => `the property length of ${w}`);

/**
 * The topic of the last PUBLISH a connection received, as bytes its owner keeps (never a view of a
 * frame). A PUBLISH that repeats it decodes to these very bytes: no view made, nothing validated
 * again, and the owner can tell a repeat by identity. A new topic decodes to a copy (not a view),
 * validated, which the owner keeps as its next lastTopicBytes without copying it again.
 */
export interface TopicCache {
  lastTopicBytes: Uint8Array | null;
  /** Set by the decoder for every topic: true when it is not lastTopicBytes' (a copy, or lastTopicBytes rewritten). */
  newTopic?: boolean;
  /** Set by the decoder for a new topic: its levels, and whether it is all ASCII. */
  newTopicLevels?: number;
  newTopicAscii?: boolean;
  /**
   * False while nothing but the owner holds lastTopicBytes (no message was made with them), and
   * they are an ASCII topic of lastTopicLevels levels: a new topic of the same length may then be
   * written over them (newTopic true, the bytes returned are lastTopicBytes), which saves a copy.
   * Absent or true: never.
   */
  lastTopicKept?: boolean;
  lastTopicLevels?: number;
  /**
   * Set by the decoder when it wrote a new topic over lastTopicBytes: the level of the one stretch
   * in which the two differ, or -1 when a '/' is inside it (the levels themselves moved).
   */
  newTopicDiffLevel?: number;
  /**
   * A QoS 1 or 2 PUBLISH whose payload is at most this many bytes gets the payload as a copy (a
   * buffer of its own) rather than a view of the frame; 0 (or absent): always a view. A broker
   * keeps those messages past the frame (in flight, queued) and would copy them anyway; copying a
   * small payload costs about what making the view does, so it saves making both.
   */
  readonly copyPayloadsUpTo?: number;
  /**
   * True: a QoS 0 PUBLISH's payload is not made into a view. The packet's `payload` is then
   * DEFERRED_PAYLOAD, and the payload is the rest of the frame from `deferredAt` (set by the
   * decoder, an offset into the buffer decoded), for the caller to view only if it needs to: a
   * broker that forwards the frame as it came never does.
   */
  readonly deferPayloads?: boolean;
  deferredAt?: number;
}

/** Cursor over `buf[pos, end)`. `packet` names the packet for error messages. */
export class Reader {
  constructor(
    public buf: Uint8Array,
    public pos: number,
    public end: number,
    public packet: string,
  ) {}

  /** Bytes left to read. */
  remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.end) {
      malformed(`${this.packet} ends inside ${what}: needs ${n} byte(s), ${this.end - this.pos} left`);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const b = this.buf;
    const v = (b[this.pos]! << 8) | b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const b = this.buf;
    const p = this.pos;
    const v = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
    this.pos += 4;
    return v;
  }

  /** The two-byte length prefix of a string or binary field named `what`. */
  private fieldLength(what: string): number {
    if (this.pos + 2 > this.end) this.need(2, `the length of ${what}`); // the message is built only to throw
    const b = this.buf;
    const v = (b[this.pos]! << 8) | b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  /** Variable Byte Integer (section 1.5.5): at most four bytes, and in its shortest form [MQTT-1.5.5-1]. */
  varint(what: string): number {
    let value = 0;
    let mul = 1;
    for (let i = 0; i < 4; i++) {
      this.need(1, what);
      const b = this.buf[this.pos++]!;
      value += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        if (i > 0 && b === 0) malformed(`invalid variable byte integer in ${what}: not in its shortest form`); // [MQTT-1.5.5-1]
        return value;
      }
      mul *= 128;
    }
    return malformed(`invalid variable byte integer in ${what}: more than four bytes`);
  }

  /** UTF-8 Encoded String (section 1.5.4), decoded. */
  utf8(what: string): string {
    const len = this.fieldLength(what);
    this.need(len, what);
    const s = decodeUtf8(this.buf, this.pos, this.pos + len, what);
    this.pos += len;
    return s;
  }

  /** Binary Data (section 1.5.6) as a view of the frame. */
  binary(what: string): Uint8Array {
    const len = this.fieldLength(what);
    this.need(len, what);
    const v = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return v;
  }

  /** A topic name as a validated view of the frame; with a cache, the cache's bytes when it repeats them, else a copy. */
  topicName(what: string, cache: TopicCache | null = null): Uint8Array {
    const len = this.fieldLength(what);
    this.need(len, what);
    if (cache === null) {
      validateTopicName(this.buf, this.pos, this.pos + len, what);
      const v = this.buf.subarray(this.pos, this.pos + len);
      this.pos += len;
      return v;
    }
    const last = cache.lastTopicBytes;
    if (last !== null && last.length === len) {
      const b = this.buf;
      const p = this.pos;
      let i = 0;
      while (i < len && b[p + i] === last[i]) i++;
      if (i === len) {
        this.pos = p + len;
        cache.newTopic = false;
        return last; // validated when it was first received
      }
      if (cache.lastTopicKept === false && this.rewriteTopic(cache, last, i)) return last;
    }
    cache.newTopic = true;
    // a new topic: copied, checked and measured in one pass while it is printable ASCII without
    // wildcards (the common case), the rest by validateTopicName()
    const b = this.buf;
    const p = this.pos;
    const v = new Uint8Array(len);
    let levels = 1;
    let i = 0;
    for (; i < len; i++) {
      const c = b[p + i]!;
      if (TOPIC_BYTE_OK[c] !== 1) break;
      v[i] = c;
      if (c === 0x2f) levels++;
    }
    cache.newTopicAscii = i === len;
    if (i < len) {
      validateTopicName(b, p + i, p + len, what); // from a character's start: every byte before it was ASCII
      copyInto(v, i, b, p + i, p + len);
      for (; i < len; i++) if (v[i] === 0x2f) levels++;
    }
    cache.newTopicLevels = levels;
    this.pos = p + len;
    return v;
  }

  /**
   * Writes the topic name at `pos`, as long as lastTopicBytes (`last`, ASCII, kept by nobody but
   * the cache's owner) and equal to it before `from`, over `last` when it is printable ASCII without
   * wildcards; false (nothing written, nothing read) when it is not. One pass from `from` checks it,
   * finds where the two differ, and counts the levels; only the differing bytes are written.
   */
  private rewriteTopic(cache: TopicCache, last: Uint8Array, from: number): boolean {
    const b = this.buf;
    const p = this.pos;
    const len = last.length;
    let to = from; // the last byte that differs
    let oldSlashes = 0; // '/' from `from` on, in the old topic and in the new one
    let newSlashes = 0;
    let slash = len; // the first '/' from `from` on, in either
    for (let k = from; k < len; k++) {
      const c = b[p + k]!;
      if (TOPIC_BYTE_OK[c] !== 1) return false;
      const o = last[k]!;
      if (c !== o) to = k;
      if (o === 0x2f) oldSlashes++;
      if (c === 0x2f) newSlashes++;
      if ((c === 0x2f || o === 0x2f) && slash === len) slash = k;
    }
    for (let k = from; k <= to; k++) last[k] = b[p + k]!;
    const levels = cache.lastTopicLevels!;
    cache.newTopic = true;
    cache.newTopicAscii = true;
    cache.newTopicLevels = levels - oldSlashes + newSlashes;
    cache.newTopicDiffLevel = slash <= to ? -1 : levels - 1 - oldSlashes; // the level of `from` in both
    this.pos = p + len;
    return true;
  }

  /** The rest of the frame as a view. */
  rest(): Uint8Array {
    const v = this.buf.subarray(this.pos, this.end);
    this.pos = this.end;
    return v;
  }

  /** The rest of the frame as a copy. */
  restCopy(): Uint8Array {
    const v = copyBytes(this.buf, this.pos, this.end);
    this.pos = this.end;
    return v;
  }

  /**
   * A property block (section 2.2.2): its length, then properties each checked against the packet
   * (`context` = packet type, or WILL_CONTEXT) it appears in.
   */
  properties(context: number): Properties {
    const where = PROPERTIES_WHERE[context]!;
    const len = this.varint(PROPERTY_LENGTH_WHAT[context]!);
    if (len === 0) return NO_PROPERTIES;
    this.need(len, where);
    const end = this.pos + len;
    const outer = this.end;
    this.end = end; // a property may not run past its block
    const props: Record<string, unknown> = {};
    const bit = 1 << context;
    while (this.pos < end) {
      const id = this.varint("a property identifier");
      const spec = PROPERTY_BY_ID[id];
      if (spec === undefined) malformed(`unknown property identifier 0x${id.toString(16).padStart(2, "0")} in ${where}`); // section 2.2.2.2
      if ((spec.contexts & bit) === 0) malformed(`property ${spec.name} is not allowed in ${where}`); // section 2.2.2.2
      let value: unknown;
      switch (spec.type) {
        case PropertyType.Byte: value = this.u8(spec.name); break;
        case PropertyType.TwoByteInteger: value = this.u16(spec.name); break;
        case PropertyType.FourByteInteger: value = this.u32(spec.name); break;
        case PropertyType.VariableByteInteger: value = this.varint(spec.name); break;
        case PropertyType.Utf8String: value = this.utf8(spec.name); break;
        case PropertyType.BinaryData: value = this.binary(spec.name); break;
        default: value = [this.utf8(`${spec.name} name`), this.utf8(`${spec.name} value`)];
      }
      if (typeof value === "number") {
        if (spec.min !== undefined && value < spec.min) {
          if (id === 0x23) throw new MqttError(ReasonCode.TopicAliasInvalid, "topic alias invalid: Topic Alias 0 is not permitted"); // [MQTT-3.3.2-8]
          protocolError(`${spec.name} ${value} is below its minimum ${spec.min}`);
        }
        if (spec.max !== undefined && value > spec.max) protocolError(`${spec.name} ${value} is above its maximum ${spec.max}`);
      }
      const key = spec.key;
      if (spec.type === PropertyType.Utf8StringPair) {
        ((props[key] as unknown[] | undefined) ?? (props[key] = [])  as unknown[]).push(value);
      } else if (id === 0x0b) {
        const list = props[key] as number[] | undefined;
        if (list !== undefined && context !== PacketType.PUBLISH) protocolError(`${spec.name} appears more than once in ${where}`); // section 3.8.2.1.2
        if (list === undefined) props[key] = [value];
        else list.push(value as number);
      } else {
        if (props[key] !== undefined) protocolError(`${spec.name} appears more than once in ${where}`); // section 2.2.2.2
        props[key] = value;
      }
    }
    this.end = outer;
    return props as Properties;
  }
}
