/**
 * Size-first encoding: the `size*` functions compute exact byte counts, then a Writer fills one
 * buffer of that size with a cursor. Every primitive of section 1.5 is written here and nowhere else.
 */
import { MAX_VARIABLE_BYTE_INTEGER } from "./constants";
import { MqttError, ReasonCode } from "./reason-codes";
import { NO_PROPERTIES, PROPERTY_TABLE, PropertyType, type Properties, type PropertySpec } from "./properties";

const encoder = new TextEncoder();
/**
 * Bun's Buffer (and Node's), when there is one: its native UTF-8 writer and byte count beat
 * TextEncoder and a JS loop on longer strings. A browser has no Buffer: there the codec falls back
 * to TextEncoder.encodeInto and the loop of utf8Length, with the same results (the dashboard's
 * Client runs on that path).
 */
const NativeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer;
const utf8Write: (this: Uint8Array, s: string, offset: number, length: number) => number =
  NativeBuffer !== undefined
    ? (NativeBuffer.prototype.utf8Write as (this: Uint8Array, s: string, offset: number, length: number) => number)
    : function (this: Uint8Array, s: string, offset: number, length: number): number {
        return encoder.encodeInto(s, this.subarray(offset, offset + length)).written;
      };
/** Buffer.byteLength (called unbound, which Bun allows), or null without a Buffer. */
const nativeByteLength: ((s: string, encoding: "utf8") => number) | null = NativeBuffer !== undefined ? NativeBuffer.byteLength : null;

function cannotEncode(message: string): never {
  throw new MqttError(ReasonCode.MalformedPacket, `cannot encode: ${message}`);
}

/**
 * The UTF-8 bytes of the last long string written twice in a row (a publisher's topic, say): the
 * next time it is only copied, and its length is known. A string seen once is not kept, so
 * alternating strings cost no allocation.
 */
let repeated = "";
let repeatedBytes: Uint8Array = new Uint8Array(0);
let lastWritten = "";

/** Bytes a JS string takes in UTF-8 (a lone surrogate becomes U+FFFD, 3 bytes, as TextEncoder writes it). */
export function utf8Length(s: string): number {
  if (s.length > 12 && nativeByteLength !== null) return s === repeated ? repeatedBytes.length : nativeByteLength(s, "utf8"); // native, and faster past a dozen chars; same count
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // the pair counts 2 chars and takes 4 bytes
      i++;
    } else n += 2;
  }
  return n;
}

/** Bytes of a Variable Byte Integer. */
export function varintSize(n: number): number {
  if (n < 128) return 1;
  if (n < 16_384) return 2;
  if (n < 2_097_152) return 3;
  if (n <= MAX_VARIABLE_BYTE_INTEGER) return 4;
  return cannotEncode(`${n} is larger than the largest variable byte integer`);
}

/** Bytes of a length-prefixed UTF-8 string or binary field (section 1.5.4 / 1.5.6). */
export function fieldSize(v: string | Uint8Array): number {
  const n = typeof v === "string" ? utf8Length(v) : v.length;
  if (n > 0xffff) cannotEncode(`a string or binary field of ${n} bytes exceeds 65535`);
  return 2 + n;
}

// Rows by property name. A null-prototype object: a keyed load is several times faster than Map.get.
const SPEC_BY_KEY: Readonly<Record<string, PropertySpec | undefined>> = Object.assign(
  Object.create(null) as Record<string, PropertySpec>,
  Object.fromEntries(PROPERTY_TABLE.map((s) => [s.key, s])),
);

function propertyValueSize(spec: PropertySpec, v: unknown): number {
  switch (spec.type) {
    case PropertyType.Byte: return 2;
    case PropertyType.TwoByteInteger: return 3;
    case PropertyType.FourByteInteger: return 5;
    case PropertyType.Utf8String:
    case PropertyType.BinaryData: return 1 + fieldSize(v as string | Uint8Array);
    default: return 0;
  }
}

/** Bytes of a property block's content, without its length prefix. */
export function propertiesSize(props: Properties): number {
  if (props === NO_PROPERTIES) return 0;
  let n = 0;
  for (const key in props) {
    const v = props[key as keyof Properties];
    if (v === undefined) continue;
    const spec = SPEC_BY_KEY[key];
    if (spec === undefined) cannotEncode(`unknown property '${key}'`);
    if (spec.type === PropertyType.Utf8StringPair) {
      for (const [k, val] of v as [string, string][]) n += 1 + fieldSize(k) + fieldSize(val);
    } else if (spec.type === PropertyType.VariableByteInteger) {
      for (const id of v as number[]) n += 1 + varintSize(id);
    } else n += propertyValueSize(spec, v);
  }
  return n;
}

/** Bytes of a property block with its length prefix. */
export function propertyBlockSize(props: Properties): number {
  const n = propertiesSize(props);
  return varintSize(n) + n;
}

/** Cursor writing into a buffer sized beforehand. */
export class Writer {
  constructor(
    public buf: Uint8Array,
    public pos = 0,
  ) {}

  u8(v: number): void {
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v;
  }

  u32(v: number): void {
    const b = this.buf;
    b[this.pos++] = v >>> 24;
    b[this.pos++] = v >>> 16;
    b[this.pos++] = v >>> 8;
    b[this.pos++] = v;
  }

  varint(n: number): void {
    do {
      let b = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) b |= 0x80;
      this.buf[this.pos++] = b;
    } while (n > 0);
  }

  /** A length-prefixed UTF-8 string or binary field. */
  field(v: string | Uint8Array): void {
    if (typeof v !== "string") {
      this.u16(v.length);
      this.buf.set(v, this.pos);
      this.pos += v.length;
      return;
    }
    const start = this.pos;
    this.pos += 2;
    let n = 0;
    if (v.length > 16) {
      if (v === repeated) {
        n = repeatedBytes.length;
        this.buf.set(repeatedBytes, this.pos);
      } else {
        // Buffer's native UTF-8 writer works on any Uint8Array and beats a JS loop on longer strings (TextEncoder without Buffer)
        n = utf8Write.call(this.buf, v, this.pos, this.buf.length - this.pos);
        if (v === lastWritten) {
          repeated = v;
          repeatedBytes = this.buf.slice(this.pos, this.pos + n);
        }
        lastWritten = v;
      }
      this.pos += n;
      this.buf[start] = n >>> 8;
      this.buf[start + 1] = n;
      return;
    }
    // short strings: an ASCII loop is cheaper than the native call
    for (; n < v.length; n++) {
      const c = v.charCodeAt(n);
      if (c >= 0x80) break;
      this.buf[this.pos + n] = c;
    }
    if (n < v.length) {
      n += encoder.encodeInto(v.slice(n), this.buf.subarray(this.pos + n)).written;
    }
    this.pos += n;
    this.buf[start] = n >>> 8;
    this.buf[start + 1] = n;
  }

  /** Raw bytes, no prefix. */
  raw(v: Uint8Array): void {
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  /** A property block with its length prefix; `size` is propertiesSize(props). */
  properties(props: Properties, size: number): void {
    this.varint(size);
    if (size === 0) return;
    for (const key in props) {
      const v = props[key as keyof Properties];
      if (v === undefined) continue;
      const spec = SPEC_BY_KEY[key]!;
      switch (spec.type) {
        case PropertyType.Byte: this.u8(spec.id); this.u8(v as number); break;
        case PropertyType.TwoByteInteger: this.u8(spec.id); this.u16(v as number); break;
        case PropertyType.FourByteInteger: this.u8(spec.id); this.u32(v as number); break;
        case PropertyType.Utf8String:
        case PropertyType.BinaryData: this.u8(spec.id); this.field(v as string | Uint8Array); break;
        case PropertyType.VariableByteInteger:
          for (const id of v as number[]) { this.u8(spec.id); this.varint(id); }
          break;
        default:
          for (const [k, val] of v as [string, string][]) { this.u8(spec.id); this.field(k); this.field(val); }
      }
    }
  }
}
