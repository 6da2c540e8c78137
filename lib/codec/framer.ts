/**
 * Splits a byte stream into whole MQTT frames.
 *
 * Feed it chunks as they arrive with push(), then call next() until it returns null ("need more
 * bytes", not an error). A frame that lies wholly inside the chunk is returned as a view of it
 * (zero-copy); only a frame split across chunks is assembled, in a buffer of exactly its size.
 * The remaining length is checked against the maximum packet size as soon as its bytes are
 * known, before anything of the body is buffered [MQTT-3.1.2-24 from the server's side].
 * Frames returned by next() are valid until the next push().
 */
import { MAX_PACKET_SIZE, type ProtocolVersion } from "./constants";
import { decodePacketAt, type Packet } from "./packet";
import type { TopicCache } from "./reader";
import { malformed, MqttError, ReasonCode } from "./reason-codes";

/** The chunk of a framer that holds nothing: shared, so an idle connection allocates none. */
const EMPTY = new Uint8Array(0);

/** Outcome of reading a fixed header from some bytes. */
const NEED_MORE = -1;

export class Framer {
  /** Largest whole packet (fixed header included) accepted; larger ones raise 0x95. */
  maxPacketSize: number;

  private chunk: Uint8Array = EMPTY;
  private pos = 0;
  /** A frame being assembled across chunks: its header bytes first, then its body once its size is known. */
  private partial: Uint8Array | null = null;
  private partialLen = 0;
  private partialTotal = 0; // 0 while the header is still incomplete

  constructor(maxPacketSize = MAX_PACKET_SIZE) {
    this.maxPacketSize = maxPacketSize;
  }

  /** Bytes held that belong to an incomplete frame. */
  get buffered(): number {
    return this.partialLen + (this.chunk.length - this.pos);
  }

  /** Adds received bytes. Frames not yet taken with next() stay queued ahead of them. */
  push(chunk: Uint8Array): void {
    if (this.pos < this.chunk.length) {
      // next() was not drained: keep the unread tail ahead of the new bytes
      const tail = this.chunk.length - this.pos;
      const joined = new Uint8Array(tail + chunk.length);
      joined.set(this.chunk.subarray(this.pos));
      joined.set(chunk, tail);
      chunk = joined;
    }
    this.chunk = chunk;
    this.pos = 0;
  }

  /** The next whole frame, or null when more bytes are needed. Throws MqttError on a bad header. */
  next(): Uint8Array | null {
    return this.advance() ? this.frameBuf.subarray(this.frameStart, this.frameEnd) : null;
  }

  /**
   * The next whole frame decoded (decodePacket without the intermediate frame view), or null
   * when more bytes are needed. Views in the packet point into the pushed chunk.
   */
  nextPacket(version: ProtocolVersion, topicCache: TopicCache | null = null): Packet | null {
    return this.advance() ? decodePacketAt(this.frameBuf, this.frameStart, this.frameEnd, version, topicCache) : null;
  }

  /**
   * When the next frame is a PUBACK of exactly its packet identifier (remaining length 2: reason
   * code 0x00, no properties, the same in 3.1.1 and 5.0), takes it and returns the identifier;
   * otherwise takes nothing and returns 0 (nextPacket() decodes it, and rejects an identifier 0).
   */
  takePuback(): number {
    const c = this.chunk;
    const p = this.pos;
    if (this.partial !== null || p + 4 > c.length || c[p] !== 0x40 || c[p + 1] !== 2) return 0;
    const id = (c[p + 2]! << 8) | c[p + 3]!;
    if (id !== 0) this.pos = p + 4;
    return id;
  }

  /** Type of the next frame's first byte, if any byte is held (to check that the first packet is CONNECT). */
  peekType(): number | undefined {
    const b = this.partial !== null && this.partialLen > 0 ? this.partial[0] : this.chunk[this.pos];
    return b === undefined ? undefined : b >> 4;
  }

  // the frame found by advance(): frameBuf[frameStart, frameEnd); read by the broker to forward a
  // PUBLISH as it came (Outbox.forward), valid until the next push()
  frameBuf: Uint8Array = EMPTY;
  frameStart = 0;
  frameEnd = 0;

  /** Finds the next whole frame; false when more bytes are needed. */
  private advance(): boolean {
    if (this.partial !== null) {
      if (!this.fillPartial()) return false;
      this.frameBuf = this.partial;
      this.frameStart = 0;
      this.frameEnd = this.partialTotal;
      this.partial = null;
      this.partialLen = 0;
      this.partialTotal = 0;
      return true;
    }
    const c = this.chunk;
    const start = this.pos;
    if (start >= c.length) {
      // all consumed: hold no reference to the caller's buffer between reads
      this.chunk = this.frameBuf = EMPTY;
      this.pos = 0;
      return false;
    }
    const total = this.frameSize(c, start, c.length);
    if (total === NEED_MORE || start + total > c.length) {
      this.stash(c, start, c.length); // the frame is incomplete: all of the rest belongs to it
      this.pos = c.length;
      return false;
    }
    this.pos = start + total;
    this.frameBuf = c;
    this.frameStart = start;
    this.frameEnd = start + total;
    return true;
  }

  /** Total frame size from a fixed header at `buf[start, end)`, or NEED_MORE. Throws on a bad length. */
  private frameSize(buf: Uint8Array, start: number, end: number): number {
    let rl = 0;
    let mul = 1;
    for (let i = 1; i <= 4; i++) {
      if (start + i >= end) return NEED_MORE;
      const b = buf[start + i]!;
      rl += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        const total = 1 + i + rl;
        if (total > this.maxPacketSize) {
          throw new MqttError(ReasonCode.PacketTooLarge, `packet too large: ${total} bytes exceeds the maximum packet size ${this.maxPacketSize}`); // [MQTT-3.2.2-15]
        }
        return total;
      }
      mul *= 128;
    }
    return malformed("invalid variable byte integer in the remaining length: more than four bytes"); // section 1.5.5
  }

  /** Starts or extends the partial frame with `buf[start, end)` (at most what it still needs). */
  private stash(buf: Uint8Array, start: number, end: number): void {
    if (this.partial === null) {
      this.partial = new Uint8Array(5);
      this.partialLen = 0;
      this.partialTotal = 0;
    }
    this.appendPartial(buf, start, end);
  }

  private appendPartial(buf: Uint8Array, start: number, end: number): number {
    let p = this.partial!;
    let taken = 0;
    // header bytes, one at a time, until the total size is known
    while (this.partialTotal === 0 && start + taken < end) {
      p[this.partialLen++] = buf[start + taken++]!;
      const total = this.frameSize(p, 0, this.partialLen);
      if (total !== NEED_MORE) {
        this.partialTotal = total;
        const full = new Uint8Array(total);
        full.set(p.subarray(0, this.partialLen));
        this.partial = p = full;
      }
    }
    if (this.partialTotal > 0) {
      const n = Math.min(this.partialTotal - this.partialLen, end - start - taken);
      p.set(buf.subarray(start + taken, start + taken + n), this.partialLen);
      this.partialLen += n;
      taken += n;
    }
    return taken;
  }

  /** Moves bytes of the current chunk into the partial frame; true when it is complete. */
  private fillPartial(): boolean {
    if (this.partialTotal === 0 || this.partialLen < this.partialTotal) {
      this.pos += this.appendPartial(this.chunk, this.pos, this.chunk.length);
    }
    return this.partialTotal > 0 && this.partialLen === this.partialTotal;
  }

  /** Forgets everything buffered (after a connection closes). */
  reset(): void {
    this.chunk = EMPTY;
    this.pos = 0;
    this.partial = null;
    this.partialLen = 0;
    this.partialTotal = 0;
  }
}
