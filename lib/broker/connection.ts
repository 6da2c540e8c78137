/**
 * One client connection: the transport shell around a Session. It frames and decodes what arrives,
 * hands packets to the handlers, and owns the connection's output buffer.
 *
 * Output is coalesced: everything sent to a connection is appended to its buffer, and the broker
 * flushes each touched connection once when the current event handler is done, with one write.
 * `socket.write` returns how much the kernel took; the rest stays buffered and goes out on
 * `drain`. The buffer is borrowed from a pool while it holds data, so an idle connection holds none.
 */
import { Framer } from "../codec/framer";
import { copyInto } from "../codec/bytes";
import { decodePacket, encodePacket, encodePacketInto, fixedHeaderLength, remainingLength, type Packet } from "../codec/packet";
import { varintSize, Writer } from "../codec/writer";
import { PacketType } from "../codec/constants";
import { NO_PROPERTIES } from "../codec/properties";
import { MqttError, ReasonCode, reasonName } from "../codec/reason-codes";
import { decodeValidated } from "../codec/reader";
import type { PublishPacket } from "../codec/packets/publish";
import type { Broker } from "./broker";
import type { Message } from "./message";
import type { Session } from "./session";
import type { Matches } from "./router";
import { levelBit, sameMatch } from "../topic/trie";
import { dispatch } from "./handlers/dispatch";
import { completeQos1 } from "./handlers/acks";
import { READ_SLICE_MS } from "./slices";
import { countDisconnect, reasonLabel } from "./observe/counters";
import type { Transport } from "./transport/transport";

/** Writes a fixed header into an output buffer (appendAsQos0); pointed at the buffer each time. */
const headerWriter = new Writer(new Uint8Array(0));
const POOL_BUFFER_SIZE = 64 * 1024;
const pool: Uint8Array[] = [];
const POOL_MAX = 256;
/**
 * Output buffers grown past POOL_BUFFER_SIZE (a turn's output to a busy subscriber often is: what
 * one 64 KB read forwards, and a little more), by size: powers of two up to BIG_BUFFER_MAX, at
 * most BIG_POOL_MAX of each. Without them such a connection allocated (and zeroed) one every turn.
 */
const bigPools = new Map<number, Uint8Array[]>();
const BIG_BUFFER_MAX = 1024 * 1024;
const BIG_POOL_MAX = 4;

/** See Connection.copyPayloadsUpTo. */
export const COPY_PAYLOADS_UP_TO = 4096;

/** The will of a connection, published if it ends without DISCONNECT 0x00. */
export interface PendingWill {
  message: Message;
  delayMs: number;
}

/** What can hold a publisher back: a session whose queue it filled, the broker's memory pressure, or its own packet being handled in slices. */
export type HoldReason = Session | "memory" | "slices" | "turn" | "claim";

/** The v5 reason code each 3.1.1 CONNACK return code stands for (section 3.2.2.3 of 3.1.1). */
const V5_OF_RETURN_CODE: Record<number, number> = { 1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87 };

/** Connection states. */
export const ConnState = { AwaitingConnect: 0, Connected: 1, Closed: 2 } as const;

export class Connection {
  state: number = ConnState.AwaitingConnect;
  /** Protocol level; 5 until CONNECT says otherwise. */
  version: 4 | 5 = 5;
  session: Session | null = null;
  /** Held only while it holds bytes of an incomplete frame: an idle connection keeps none. */
  framer: Framer | null = null;
  /** Date.now() of the last packet received. */
  lastReceived: number;
  readonly openedAt: number;
  /** Keep alive granted, in ms (0 = none). */
  keepAliveMs = 0;
  /** The client's Receive Maximum and our own in-flight bound, whichever is lower. */
  sendWindow = 65535;
  /** Largest packet the client accepts. */
  clientMaxPacketSize = Number.MAX_SAFE_INTEGER;
  /** Topic aliases the client has set towards us (section 3.3.2.3.4). */
  inboundAliases: Map<number, string> | null = null;
  /**
   * QoS 1/2 payloads up to this size are decoded as copies (see TopicCache): the broker keeps those
   * messages in flight or queued and would copy them at once (persist()). Larger ones stay views
   * until then, so one with no subscriber at QoS 1/2 is never copied.
   */
  get copyPayloadsUpTo(): number {
    return COPY_PAYLOADS_UP_TO; // on the prototype: no field in each connection
  }
  /** QoS 0 payloads are deferred (see TopicCache): handlePublish views them only if it needs to. Not while packets are logged (the log shows them). */
  get deferPayloads(): boolean {
    return this.broker.packetLog === 0;
  }
  /** Where the deferred payload of the PUBLISH being handled starts in the framer's frameBuf (see TopicCache). */
  deferredAt = 0;
  /** The deferred payload of the PUBLISH being handled, as a view of its frame. */
  deferredPayload(): Uint8Array {
    const framer = this.framer!;
    return framer.frameBuf.subarray(this.deferredAt, framer.frameEnd);
  }
  /** The topic of the last PUBLISH received, as bytes (a copy; see TopicCache), and the string made from them when one was needed. */
  lastTopicBytes: Uint8Array | null = null;
  private lastTopic: string | null = null;
  /** Levels of the last topic (checked against maxTopicLevels), and whether it is ASCII (Router.matchAscii takes it as bytes). */
  lastTopicLevels = 1;
  private lastTopicAscii = true;
  /** Set by the decoder (see TopicCache). */
  newTopic = false;
  newTopicLevels = 1;
  newTopicAscii = true;
  newTopicDiffLevel = -1;
  /**
   * True once lastTopicBytes are held by more than this connection (a message made with them), or
   * are not ASCII: the decoder may then not write the next topic over them (see TopicCache).
   */
  lastTopicKept = true;
  /** Counts the topics taken: a new one, copied or written over the last one's bytes, is the next. */
  private topicCount = 0;
  /**
   * What topic number `matchedCount` (then in `matchedBytes`) matched, while the router's trie
   * generation and invalidations are still those kept with it, and the levels its match read
   * (TopicTrie.read; every level, -1, when it was matched as a string).
   */
  private lastMatches: Matches | null = null;
  private matchedBytes: Uint8Array | null = null;
  private matchedCount = 0;
  private matchedLevelsRead = 0;
  private lastMatchesGeneration = 0;
  private lastMatchesInvalidations = 0;
  /** The last topic mayWrite() checked, and its answer. */
  private writeChecked: string | null = null;
  private writeAllowed = true;
  /** Topic Alias Maximum the client gave in CONNECT: how many aliases we may assign it. */
  clientTopicAliasMax = 0;
  /** Aliases we assigned towards the client, by topic; forgotten with the connection. */
  outboundAliases: Map<string, number> | null = null;
  will: PendingWill | null = null;
  /** How the client reached the broker: tcp, tls, ws or wss (a label of /metrics). */
  kind = "tcp";
  /** Messages dropped for this client because its output was full (QoS 0). */
  dropped = 0;
  /** What holds this publisher back: sessions whose full queues it filled (Outbox.overflow), or memory pressure (Outbox.holdForMemory). Its socket is not read while anything does. */
  private holds: Set<HoldReason> | null = null;

  private out: Uint8Array | null = null;
  private outLen = 0;
  private dirty = false;
  /** True while the connection lingers after an error DISCONNECT (see linger()), until its socket closes. */
  private lingering = false;
  private lingerTimer: Timer | null = null;
  /** True once our side is shut down (FIN sent) while lingering. */
  private finSent = false;
  /**
   * With persistence: where the first packet that must wait for the store's commit starts in the
   * output buffer (an acknowledgement, or anything but a PUBLISH whose repetition the protocol
   * allows); -1 when there is none. What comes before it may be written while a transaction is open.
   */
  private heldFrom = -1;

  constructor(
    readonly broker: Broker,
    /** The connection's transport (TCP, TLS or WebSocket): all the socket it knows. */
    readonly socket: Transport,
  ) {
    this.lastReceived = this.openedAt = Date.now();
  }

  /** Bytes waiting to be written. */
  get pending(): number {
    return this.outLen;
  }

  /** True when the output buffer is at its bound. */
  get outputFull(): boolean {
    return this.outLen >= this.broker.options.maxOutputBytes;
  }

  /** Handles bytes from the socket: frames, decodes and dispatches every whole packet. */
  receive(data: Uint8Array): void {
    if (this.state === ConnState.Closed) return;
    this.lastReceived = Date.now();
    this.broker.counters.bytesReceived += data.length;
    (this.framer ??= new Framer(this.broker.options.maxPacketSize)).push(data);
    if (this.holds === null) this.process();
  }

  /** Dispatches the whole packets the framer holds, until it has none or the connection is held back. */
  private process(): void {
    const framer = this.framer;
    if (framer === null) return;
    let refill = false; // PUBACKs freed room in the window: pump the queue
    try {
      while (this.state === ConnState.AwaitingConnect) {
        if (framer.peekType() === undefined) return;
        if (framer.peekType() !== PacketType.CONNECT) {
          this.close(null, "the first packet was not CONNECT"); // [MQTT-3.1.0-1]
          return;
        }
        const frame = framer.next();
        if (frame === null) return;
        let packet: Packet;
        try {
          packet = decodePacket(frame, 5);
        } catch (e) {
          this.refuseConnect(e, frame);
          return;
        }
        if (this.broker.packetLog !== 0) this.broker.logPacket(this, "Received", packet);
        dispatch(this, packet);
        if (this.holds !== null) return; // a cluster claims the session first (handleConnect)
      }
      const deadline = performance.now() + READ_SLICE_MS;
      this.broker.readDeadline = deadline; // work a packet starts in slices shares it (Broker.inSlices)
      let n = 0;
      for (;;) {
        let type: number;
        // a PUBACK of only its packet identifier, what a subscriber at QoS 1 sends for each message:
        // handled without decoding it into a packet; the window it frees is refilled once, after the
        // run of them (finally, below), rather than after each
        const acked = framer.takePuback();
        if (acked !== 0) {
          if (this.state === ConnState.Closed) return;
          if (this.broker.packetLog !== 0) this.broker.logPacket(this, "Received", { type: PacketType.PUBACK, packetId: acked, reasonCode: 0, properties: NO_PROPERTIES });
          if (completeQos1(this, acked, false)) refill = true;
          type = PacketType.PUBACK;
        } else {
          if (refill) {
            refill = false; // the packets that follow see the window refilled, as they would have
            this.refillWindow();
          }
          const packet = framer.nextPacket(this.version, this);
          if (packet === null) break;
          if (this.state === ConnState.Closed) return;
          if (this.broker.packetLog !== 0) this.broker.logPacket(this, "Received", packet);
          dispatch(this, packet);
          type = packet.type;
        }
        if (this.holds !== null) return; // the rest waits until the queues that hold it back have room
        // the clock is read after every packet but PUBLISH and PUBACK (the hot path: after every 64th)
        if (((type !== PacketType.PUBLISH && type !== PacketType.PUBACK) || (++n & 63) === 0) && performance.now() > deadline) {
          // a long read (many packets, or costly ones): the rest waits for the next turn of the loop
          this.holdBack("turn");
          setImmediate(() => {
            if (this.releaseHold("turn")) this.resume();
          });
          return;
        }
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.broker.readDeadline = 0;
      if (framer.buffered === 0) this.framer = null;
      if (refill) this.refillWindow();
    }
  }

  /** After PUBACKs freed room in the window: queued messages go out (a closed connection's stay queued). */
  private refillWindow(): void {
    if (this.state === ConnState.Connected) this.broker.outbox.pump(this.session!);
  }

  /** True once CONNECT was accepted, until the connection ends. */
  get connected(): boolean {
    return this.state === ConnState.Connected;
  }

  /** True while full queues hold this publisher back. */
  get heldBack(): boolean {
    return this.holds !== null;
  }

  /** A session's full queue, or memory pressure, holds this publisher back: stop reading its socket (TCP pushes back on the client). */
  holdBack(reason: HoldReason): void {
    if (this.holds === null) {
      this.holds = new Set();
      this.socket.pause();
    }
    this.holds.add(reason);
  }

  /** Something no longer holds this publisher back; true when nothing does any more (call resume() then). */
  releaseHold(reason: HoldReason): boolean {
    const holds = this.holds;
    if (holds === null || !holds.delete(reason) || holds.size > 0) return false;
    this.holds = null;
    return true;
  }

  /** Calls `fn` for each thing holding this publisher back. */
  forEachHold(fn: (reason: HoldReason) => void): void {
    if (this.holds !== null) for (const r of this.holds) fn(r);
  }

  /** Goes on after being held back: the packets that waited are handled, then the socket is read again. */
  resume(): void {
    if (this.state === ConnState.Closed || this.holds !== null) return;
    this.lastReceived = Date.now(); // its keep alive counts from now: we were the ones not reading
    this.process();
    if (this.holds === null) this.socket.resume();
    this.broker.flushAll();
  }

  /**
   * Ends the connection because of an error: v5 clients get DISCONNECT with the reason code and
   * a reason string [MQTT-4.13.1-1]; 3.1.1 clients are just closed.
   */
  fail(e: unknown): void {
    if (e instanceof MqttError) this.close(e.reasonCode, e.message);
    else {
      this.broker.log("error", `internal error on ${this.describe()}: ${(e as Error)?.stack ?? e}`);
      this.close(ReasonCode.ImplementationSpecificError, "internal error");
    }
  }

  /** Whether this client may publish to `topic` (access rules); the last answer is kept for a repeated topic. */
  mayWrite(topic: string): boolean {
    if (!this.broker.checksAccess) return true;
    if (topic !== this.writeChecked) {
      this.writeChecked = topic;
      this.writeAllowed = this.broker.mayWrite(this.session!.username, this.session!.clientId, topic);
    }
    return this.writeAllowed;
  }

  /**
   * Takes the topic name of a received PUBLISH as the decoder gave it. A publisher usually repeats
   * its topic: the decoder then hands back lastTopicBytes itself (this connection is its
   * TopicCache), and what was made for it before (the string, the matches) is used again. A new
   * topic, which the decoder validated and copied (or wrote over lastTopicBytes), is only measured
   * here: its string is made when something asks for it (topic()), which a QoS 0 message forwarded
   * as it came never does.
   */
  takeTopic(bytes: Uint8Array): void {
    if (!this.newTopic) return;
    this.topicCount++;
    this.lastTopicLevels = this.newTopicLevels; // the decoder measured it (TopicCache)
    this.lastTopicAscii = this.newTopicAscii;
    this.lastTopic = null;
    if (bytes !== this.lastTopicBytes) {
      this.lastTopicBytes = bytes; // a copy of its own
      this.lastTopicKept = !this.newTopicAscii;
    } else if (this.matchedBytes === bytes && this.lastMatches !== null) {
      // written over the bytes of the topic last matched: its matches hold for this one too when the
      // decoder found them different in one stretch, within a level the match did not read
      const level = this.newTopicDiffLevel;
      const read = this.matchedLevelsRead;
      if (this.matchedCount === this.topicCount - 1 && level >= 0 && read !== -1 && (read & levelBit(level)) === 0) this.matchedCount = this.topicCount;
      else this.lastMatches = null;
    }
  }

  /** The last topic taken (takeTopic), as a string: made once, the first time it is asked for. A publisher that repeats its topic repeats the very string, which the match cache finds with its hash already known. */
  topic(): string {
    return (this.lastTopic ??= decodeValidated(this.lastTopicBytes!));
  }

  /**
   * The subscriptions the last topic taken matches (Router.match). Kept while they cannot have
   * changed, for the same topic and for one that differs only within levels the match did not read
   * (sameMatch(): a publisher for many devices on `dev/<id>/state`, subscribed to as `dev/+/state`).
   */
  matches(): Matches {
    const router = this.broker.router;
    const m = this.lastMatches;
    const bytes = this.lastTopicBytes!;
    if (m !== null && this.lastMatchesGeneration === router.trie.generation && this.lastMatchesInvalidations === router.invalidations) {
      if (this.matchedCount === this.topicCount) return m;
      // matchedBytes still hold the topic matched: written over, the memo was updated or dropped (takeTopic)
      if (this.matchedLevelsRead !== -1 && this.lastTopicAscii && sameMatch(this.matchedBytes!, bytes, this.matchedLevelsRead)) {
        this.matchedBytes = bytes;
        this.matchedCount = this.topicCount;
        return m;
      }
    }
    let matches: Matches;
    if (this.lastTopicAscii && router.matchesBytes) {
      matches = router.matchAscii(bytes);
      this.matchedLevelsRead = router.trie.read;
    } else {
      matches = router.match(this.topic());
      this.matchedLevelsRead = -1;
    }
    this.matchedBytes = bytes;
    this.matchedCount = this.topicCount;
    this.lastMatches = matches;
    this.lastMatchesGeneration = router.trie.generation;
    this.lastMatchesInvalidations = router.invalidations;
    return matches;
  }

  /** Answers a CONNECT that could not be decoded, in the form its protocol level expects. */
  private refuseConnect(e: unknown, frame: Uint8Array): void {
    if (!(e instanceof MqttError)) return this.fail(e);
    // the protocol level sits after the fixed header and the protocol name
    let i = 1;
    while (i < 5 && frame[i]! & 0x80) i++;
    const nameLen = ((frame[i + 1] ?? 0) << 8) | (frame[i + 2] ?? 0);
    const level = frame[i + 3 + nameLen];
    if (e.reasonCode === ReasonCode.UnsupportedProtocolVersion && level !== undefined && level < 5) {
      this.version = 4;
      this.writePacket({ type: PacketType.CONNACK, sessionPresent: false, reasonCode: 0x01, properties: {} }); // [MQTT-3.1.2-2] 3.1.1 return code 0x01
    } else if (level === 5 || e.reasonCode === ReasonCode.UnsupportedProtocolVersion) {
      this.version = 5;
      this.writePacket({ type: PacketType.CONNACK, sessionPresent: false, reasonCode: e.reasonCode, properties: { reasonString: e.message } }); // [MQTT-3.2.2-8]
    }
    this.close(null, e.message);
  }

  /** Encodes a packet straight into the output buffer. */
  writePacket(p: Packet): void {
    if (this.broker.packetLog !== 0) this.broker.logPacket(this, "Sent", p);
    if (p.type === PacketType.CONNACK) this.countConnack(p.reasonCode);
    const rl = remainingLength(p, this.version);
    const at = this.reserve(1 + varintSize(rl) + rl);
    encodePacketInto(p, this.version, this.out!, at, rl);
  }

  /** Encodes a PUBLISH of remaining length `rl` straight into the output buffer; `free` as append()'s. The caller logs it. */
  writePublish(p: PublishPacket, rl: number, free: boolean): void {
    const at = this.reserve(1 + varintSize(rl) + rl, free);
    encodePacketInto(p, this.version, this.out!, at, rl);
  }

  /**
   * Appends a PUBACK, PUBREC, PUBREL or PUBCOMP with reason code 0 and no properties: four bytes,
   * the same in 3.1.1 and 5.0 (section 3.4.2.1: the reason code 0x00 may be left out), written
   * without building a packet.
   */
  writeAck(type: typeof PacketType.PUBACK | typeof PacketType.PUBREC | typeof PacketType.PUBREL | typeof PacketType.PUBCOMP, packetId: number): void {
    if (this.broker.packetLog !== 0) {
      this.writePacket({ type, packetId, reasonCode: 0, properties: NO_PROPERTIES });
      return;
    }
    const at = this.reserve(4);
    const out = this.out!;
    out[at] = (type << 4) | (type === PacketType.PUBREL ? 0x02 : 0); // PUBREL's reserved flags are 0010 [MQTT-3.6.1-1]
    out[at + 1] = 2;
    out[at + 2] = packetId >>> 8;
    out[at + 3] = packetId & 0xff;
  }

  /**
   * Encodes a CONNACK or DISCONNECT into the output buffer, without its Reason String when that would
   * take it past the client's Maximum Packet Size [MQTT-3.2.2-19] [MQTT-3.14.2-3].
   */
  writeWithReason(p: Extract<Packet, { type: typeof PacketType.CONNACK | typeof PacketType.DISCONNECT }>): void {
    let bytes = encodePacket(p, this.version);
    if (bytes.length > this.clientMaxPacketSize && p.properties.reasonString !== undefined) {
      const { reasonString: _dropped, ...properties } = p.properties;
      bytes = encodePacket({ ...p, properties }, this.version);
      p = { ...p, properties };
    }
    if (this.broker.packetLog !== 0) this.broker.logPacket(this, "Sent", p);
    if (p.type === PacketType.CONNACK) this.countConnack(p.reasonCode);
    this.append(bytes);
  }

  /** Counts a CONNACK sent, by reason code (3.1.1 return codes as the v5 codes they stand for). */
  private countConnack(code: number): void {
    if (this.version === 4 && code !== 0) code = V5_OF_RETURN_CODE[code] ?? code;
    const connacks = this.broker.counters.connacks;
    connacks.set(code, (connacks.get(code) ?? 0) + 1);
  }

  /**
   * Appends bytes to the output buffer and marks the connection for the next flush. `free`: they
   * promise nothing the store has to hold first, and a repetition after a crash is allowed (a QoS 0
   * or 1 PUBLISH of a message published at QoS 0 or 1), so they need not wait for its commit.
   */
  append(bytes: Uint8Array, free = false): number {
    const at = this.reserve(bytes.length, free);
    this.out!.set(bytes, at);
    return at;
  }

  /**
   * A copy into the output that appendRange() put off: `copySrc[copyFrom, copyFrom + copyLen)` to
   * `out[copyAt, copyAt + copyLen)`. An appendRange() that continues it on both sides (the next
   * frame of the same read, forwarded to the same subscriber) only lengthens it, so a read
   * forwarded to one subscriber is one native copy rather than one per packet. Everything else
   * that touches the output makes it first (settle()); the source stays alive while it is held.
   */
  private copySrc: Uint8Array | null = null;
  private copyFrom = 0;
  private copyAt = 0;
  private copyLen = 0;

  /** append() of `buf[start, end)`; the copy itself may come later (see copySrc). */
  appendRange(buf: Uint8Array, start: number, end: number, free: boolean): number {
    const n = end - start;
    let at = this.outLen;
    if (this.copySrc === buf && this.copyFrom + this.copyLen === start && this.copyAt + this.copyLen === at && at + n <= this.out!.length) {
      this.outLen = at + n;
      this.copyLen += n;
      if (!free && this.heldFrom < 0) this.heldFrom = at;
      return at;
    }
    at = this.reserve(n, free); // makes the copy put off before, if any
    this.copySrc = buf;
    this.copyFrom = start;
    this.copyAt = at;
    this.copyLen = n;
    return at;
  }

  /**
   * Appends the QoS 0 form of the v5 QoS 1 or 2 PUBLISH `bytes` (a stored retained message): the
   * same frame without its packet identifier, QoS 0 and DUP 0, the RETAIN flag kept.
   */
  appendAsQos0(bytes: Uint8Array): void {
    const h = fixedHeaderLength(bytes);
    const topicEnd = h + 2 + ((bytes[h]! << 8) | bytes[h + 1]!);
    const rl = bytes.length - h - 2;
    const at = this.reserve(1 + varintSize(rl) + rl, true);
    const out = this.out!;
    const w = headerWriter;
    w.buf = out;
    w.pos = at;
    w.u8(bytes[0]! & 0xf1); // PUBLISH and RETAIN
    w.varint(rl);
    const i = w.pos;
    copyInto(out, i, bytes, h, topicEnd);
    copyInto(out, i + topicEnd - h, bytes, topicEnd + 2, bytes.length);
  }

  /** Makes the copy appendRange() put off, if any. */
  private settle(): void {
    const src = this.copySrc;
    if (src === null) return;
    this.copySrc = null;
    copyInto(this.out!, this.copyAt, src, this.copyFrom, this.copyFrom + this.copyLen);
  }

  /** Makes room for `n` bytes at the end of the output buffer, marks the connection for the next flush, and returns where they go. */
  private reserve(n: number, free = false): number {
    this.settle();
    let out = this.out;
    if (out === null) {
      out = this.out = n <= POOL_BUFFER_SIZE ? (pool.pop() ?? new Uint8Array(POOL_BUFFER_SIZE)) : new Uint8Array(n);
    } else if (this.outLen + n > out.length) {
      let size = out.length * 2;
      while (size < this.outLen + n) size *= 2;
      const grown = bigPools.get(size)?.pop() ?? new Uint8Array(size);
      grown.set(out.subarray(0, this.outLen));
      this.release(out);
      out = this.out = grown;
    }
    const at = this.outLen;
    this.outLen = at + n;
    if (!free && this.heldFrom < 0) this.heldFrom = at;
    if (!this.dirty) {
      this.dirty = true;
      this.broker.markDirty(this);
    }
    return at;
  }

  /** Sets two bytes of the output buffer (a packet identifier patched in place). */
  patchU16(at: number, v: number): void {
    this.settle();
    this.out![at] = v >>> 8;
    this.out![at + 1] = v & 0xff;
  }

  /** Sets bits in one byte of the output buffer (the DUP flag). */
  patchOr(at: number, bits: number): void {
    this.settle();
    this.out![at]! |= bits;
  }

  /** Writes what is buffered with one call; keeps what the kernel did not take. */
  flush(): void {
    this.dirty = false;
    const out = this.out;
    if (out === null || this.outLen === 0) return;
    if (this.broker.store !== null && !this.broker.store.commit()) return; // write-ahead: what the output acknowledges is committed first
    this.heldFrom = -1;
    if (this.write(out, this.outLen) < 0) return;
    // messages queued while the output was full go out once it has room, and work waiting for room
    // goes on (Outbox.whenRoom): a write the kernel takes whole is followed by no drain event
    const session = this.session;
    if (session !== null && (session.queued > 0 || session.roomWaiters !== null) && this.state === ConnState.Connected && !this.outputFull) this.broker.outbox.pump(session);
  }

  /**
   * While the store's transaction is open: writes the output up to the first packet that waits for
   * its commit. True when something stays buffered for the flush after the commit.
   */
  flushUnheld(): boolean {
    const out = this.out;
    if (out === null || this.outLen === 0) {
      this.dirty = false;
      return false;
    }
    const end = this.heldFrom < 0 ? this.outLen : this.heldFrom;
    const written = end > 0 ? this.write(out, end) : 0;
    if (written < 0 || this.outLen === 0) {
      this.dirty = false;
      return false;
    }
    if (this.heldFrom >= 0) this.heldFrom -= written;
    return true;
  }

  /** Writes the first `n` bytes of the output; returns how many the kernel took (-1: the socket is gone, the output dropped). */
  private write(out: Uint8Array, n: number): number {
    this.settle();
    if (this.state === ConnState.Closed && this.socket.readyState !== 1) {
      this.outLen = 0;
      this.heldFrom = -1;
      return -1;
    }
    const written = this.socket.write(out, 0, n);
    if (written > 0) this.broker.counters.bytesSent += written;
    if (written >= this.outLen) {
      this.outLen = 0;
      this.release(out);
      this.out = null;
    } else if (written > 0) {
      out.copyWithin(0, written, this.outLen);
      this.outLen -= written;
    }
    return written;
  }

  private release(buf: Uint8Array): void {
    const size = buf.length;
    if (size === POOL_BUFFER_SIZE) {
      if (pool.length < POOL_MAX) pool.push(buf);
      return;
    }
    if (size > BIG_BUFFER_MAX || (size & (size - 1)) !== 0) return; // not a power of two: an exact size for one large packet
    let big = bigPools.get(size);
    if (big === undefined) bigPools.set(size, (big = []));
    if (big.length < BIG_POOL_MAX) big.push(buf);
  }

  /** The socket can take more: write the rest, then refill the window from the queue. */
  drained(): void {
    this.flush();
    if (this.lingering) this.shutdownWhenFlushed();
    if (this.state === ConnState.Connected && this.session !== null) this.broker.outbox.pump(this.session);
  }

  /**
   * Ends the connection. With a reason code a v5 client that completed CONNECT first gets
   * DISCONNECT carrying it and `reason` [MQTT-4.13.1-1]; the socket is then ended, after a
   * linger when the reason is an error (see linger()).
   */
  close(reasonCode: number | null, reason: string, clientReason?: number): void {
    if (this.state === ConnState.Closed) return;
    const wasConnected = this.state === ConnState.Connected;
    if (wasConnected) {
      // `clientReason`: the client ended it with DISCONNECT carrying that code
      if (clientReason !== undefined) countDisconnect(this.broker.counters, reasonLabel(clientReason), "client");
      else countDisconnect(this.broker.counters, reasonCode === null ? "closed" : reasonLabel(reasonCode), "server");
    }
    const disconnect = reasonCode !== null && wasConnected && this.version === 5;
    if (disconnect) this.writeWithReason({ type: PacketType.DISCONNECT, reasonCode, properties: { reasonString: reason } });
    if (this.broker.logs("info")) this.broker.log("info", `closing ${this.describe()}: ${reasonCode === null ? "" : `${reasonName(reasonCode)}: `}${reason}`);
    this.state = ConnState.Closed;
    this.flush();
    if (disconnect && reasonCode >= 0x80 && this.broker.startLinger()) this.linger();
    else this.socket.end();
    this.broker.connectionClosed(this, wasConnected);
  }

  /**
   * A graceful close after an error DISCONNECT. A client that is still writing (a pipeline of
   * PUBLISHes, say) when the broker closes would get a reset, since closing a socket with bytes
   * unread sends RST, and a reset can discard the DISCONNECT before the client reads it. So: once
   * the DISCONNECT has left, shut our side down (FIN), and keep reading and discarding what
   * arrives, the socket resumed even if flow control had paused it, until the client closes its
   * side or lingerMs pass; then close. The broker bounds how many connections linger at once.
   */
  private linger(): void {
    this.lingering = true;
    this.framer = null;
    this.socket.resume(); // a publisher held back (heldBack) was paused: what it sends must be read now
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      this.socket.end();
    }, this.broker.options.lingerMs);
    this.lingerTimer.unref();
    this.shutdownWhenFlushed();
  }

  /** While lingering: sends FIN once the output (the DISCONNECT) has all been written. */
  private shutdownWhenFlushed(): void {
    if (this.finSent || this.outLen > 0 || this.socket.readyState !== 1) return;
    this.finSent = true;
    this.socket.shutdown();
  }

  /** Called by the socket's close handler (the peer went away, or we ended it). */
  closed(): void {
    if (this.lingering) {
      this.lingering = false;
      if (this.lingerTimer !== null) clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
      this.broker.stopLinger();
    }
    if (this.state !== ConnState.Closed) {
      const wasConnected = this.state === ConnState.Connected;
      this.state = ConnState.Closed;
      if (wasConnected) countDisconnect(this.broker.counters, "connection_lost", "client"); // without DISCONNECT
      this.broker.connectionClosed(this, wasConnected);
    }
    if (this.out !== null) {
      this.release(this.out);
      this.out = null;
      this.outLen = 0;
      this.heldFrom = -1;
      this.copySrc = null;
    }
  }

  /** For logs: the client identifier and peer address. */
  describe(): string {
    return `client '${this.session?.clientId ?? "?"}' (${this.socket.remoteAddress})`;
  }
}
