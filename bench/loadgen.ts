/**
 * Load generator for bench/broker.ts: raw Bun sockets (Bun.connect) and packets encoded once
 * with lib/codec, then the same bytes written again and again in large batches. It runs in a
 * process of its own and prints one JSON line with its result on stdout.
 *
 *   bun bench/loadgen.ts --port P --mode throughput --pubs 1 --subs 1 --qos 0 --filter bench/0
 *                        [--inflight 100] [--warmup-ms 1000] [--duration-ms 3000]
 *   bun bench/loadgen.ts --port P --mode count --pubs 1 --subs 10 --qos 1 --count 30000
 *                        [--inflight 100] [--slow-subs 1 --slow-ack-rate 2000] [--stall-ms 10000] [--ack-each 1]
 *   bun bench/loadgen.ts --port P --mode latency --rate 2000 [--warmup-ms 1000] [--duration-ms 5000]
 *   bun bench/loadgen.ts --port P --mode memory --conns 2000 --pid BROKER_PID
 *   throughput, QoS 0: [--topics N] publish round N distinct topics dev/<k>/state (subscribe with --filter dev/+/state)
 *   common: [--host 127.0.0.1] [--version 5|4] [--payload 64]
 *           [--transport tcp|ws] [--path /mqtt]: ws connects every client with the standard WebSocket
 *           (Bun's, subprotocol mqtt) to ws://HOST:PORT/PATH; a batch is then one binary message,
 *           and a write takes nothing while the WebSocket holds WS_HIGH_WATER unsent bytes
 *   throughput, QoS 1: [--session-expiry S] subscribers connect with clean start 0 and this Session
 *   Expiry Interval (a persistent session); [--ack-latency 1] the publisher also reports p50 / p99
 *   of the time from writing each PUBLISH to its PUBACK (ackP50, ackP99, in ms)
 *
 * throughput: publisher i publishes to `bench/<i>`; every subscriber subscribes to `--filter`.
 *   QoS 0 publishers write 64 KB buffers of whole PUBLISH frames while the socket takes them and
 *   wait for `drain` when it takes less (backpressure). A QoS 1 publisher keeps `--inflight`
 *   PUBLISHes unacknowledged, refilling the window once per data event; QoS 1 subscribers PUBACK
 *   every PUBLISH they receive, one write of acks per data event. Subscribers count frames by
 *   parsing fixed headers only (QoS 1 also reads the packet identifier). Result: messages
 *   delivered per second across all subscribers, counted after the warm-up.
 * count: like throughput, but each publisher publishes exactly `--count` messages, each payload
 *   starting with performance.now() at the time of the write, and the run ends when every
 *   subscriber has all of them, or when none arrived for `--stall-ms`; it is timed from the first
 *   write to the last delivery. The first `--slow-subs` subscribers PUBACK at most
 *   `--slow-ack-rate` messages per second (a slow consumer); with `--ack-each 1` the others
 *   PUBACK each message with a write of its own as it arrives, as Paho and mosquitto_sub do
 *   (else one write per data event). A connection the broker closes is counted, not fatal.
 *   Result: delivered / expected, the rate, the latency p50 / p99 / max in ms over every
 *   delivery (from the write of its PUBLISH to the arrival of the read that brought it), and how
 *   many connections the broker closed.
 * latency: one publisher, one subscriber, QoS 0, `--rate` messages/s paced by a 1 ms timer, each
 *   payload starting with performance.now() at the time of the write (float64); the subscriber
 *   takes the difference on arrival. Result: p50 / p99 / max in ms after the warm-up.
 * memory: VmRSS of process `--pid` (read from /proc/PID/status) after 50 connections were opened
 *   and closed (warm-up), then after `--conns` connections each did CONNECT + CONNACK and stayed
 *   idle; the result is the growth divided by the number of connections.
 */
import type { Socket } from "bun";
import { encodePacket, NO_PROPERTIES, PacketType, type ProtocolVersion, type QoS } from "../lib/codec";

// ---- arguments ---------------------------------------------------------------------------------

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i]!;
  if (!k.startsWith("--") || process.argv[i + 1] === undefined) fatal(`bad argument '${k}'`);
  args.set(k.slice(2), process.argv[i + 1]!);
}
const str = (k: string, d?: string): string => args.get(k) ?? d ?? fatal(`--${k} is required`);
const num = (k: string, d?: number): number => {
  const v = args.get(k);
  if (v === undefined) return d ?? fatal(`--${k} is required`);
  const n = Number(v);
  if (!Number.isFinite(n)) fatal(`--${k} must be a number`);
  return n;
};

const HOST = str("host", "127.0.0.1");
const PORT = num("port");
const VERSION = num("version", 5) as ProtocolVersion;
const PAYLOAD = num("payload", 64);
const MODE = str("mode");
const BATCH_BYTES = 64 * 1024;
/** Batches a QoS 0 publisher writes per event-loop turn before letting the loop run. */
const BATCHES_PER_TURN = 8;
const ID_PREFIX = `lg${process.pid}-`;
/** Session Expiry Interval of the subscribers (throughput mode); 0: clean, non-persistent sessions. */
const SESSION_EXPIRY = num("session-expiry", 0);
const TRANSPORT = str("transport", "tcp");
/** Throughput, QoS 0: with N > 0 each publisher goes round N distinct topics `dev/<k>/state` instead of `bench/<i>`. */
const TOPICS = num("topics", 0);
if (TRANSPORT !== "tcp" && TRANSPORT !== "ws") fatal("--transport must be tcp or ws");
const WS_PATH = str("path", "/mqtt");
/** Unsent bytes a WebSocket may hold before writes stop taking more (its drain is then polled). */
const WS_HIGH_WATER = 1024 * 1024;

function fatal(message: string): never {
  console.log(JSON.stringify({ error: message }));
  process.exit(1);
}

// ---- a raw connection --------------------------------------------------------------------------

/** Called for every whole frame: the buffer, the frame's offset, fixed-header length, remaining length. */
type FrameHandler = (buf: Uint8Array, off: number, hdr: number, rem: number) => void;

/** What a Conn writes to: a Bun socket as it is, or a WebSocket adapted to the same two calls. */
interface Sink {
  /** Bytes taken (the rest waits for drain). */
  write(bytes: Uint8Array): number;
  end(): void;
}

/** Opens a standard WebSocket to the broker for `c`; resolves once it is open. */
function openWebSocket(c: Conn): Promise<Sink> {
  const { promise, resolve, reject } = Promise.withResolvers<Sink>();
  const ws = new WebSocket(`ws://${HOST}:${PORT}${WS_PATH}`, ["mqtt"]);
  ws.binaryType = "arraybuffer";
  let polling = false;
  const poll = () => {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > WS_HIGH_WATER) setTimeout(poll, 1);
    else {
      polling = false;
      c.drained();
    }
  };
  const sink: Sink = {
    write(bytes) {
      if (ws.bufferedAmount > WS_HIGH_WATER) {
        if (!polling) {
          polling = true;
          setTimeout(poll, 1);
        }
        return 0;
      }
      ws.send(bytes);
      return bytes.length;
    },
    end: () => ws.close(),
  };
  let opened = false;
  ws.onopen = () => {
    opened = true;
    resolve(sink);
  };
  ws.onmessage = (e: MessageEvent) => c.receive(new Uint8Array(e.data as ArrayBuffer));
  ws.onclose = () => (opened ? c.lost("closed") : reject(new Error(`WebSocket to ${HOST}:${PORT}${WS_PATH} did not open`)));
  ws.onerror = () => opened && c.lost("WebSocket error");
  return promise;
}

/**
 * One MQTT connection over a raw socket (or a WebSocket, --transport ws). Incoming bytes are split into frames by their fixed
 * headers; in counting mode (`countOnly`) PUBLISH frames are only counted and their bodies skipped
 * without being looked at, even across chunks. Outgoing bytes go out with one write each; what
 * the socket does not take is queued and written on `drain`.
 */
class Conn {
  socket!: Sink;
  /** PUBLISH frames received. */
  publishes = 0;
  /** performance.now() when the chunk being handled arrived: the arrival time of each frame in it. */
  receivedAt = 0;
  /** True once only PUBLISH counting is wanted (after the handshake, for QoS 0 subscribers). */
  countOnly = false;
  onFrame: FrameHandler = (buf, off, hdr, rem) => this.control(buf, off, hdr, rem);
  /** Called at the end of every data event (to send what the frames asked for, in one write). */
  onDataEnd: (() => void) | null = null;
  /** Called when the socket has taken all queued bytes. */
  onDrain: (() => void) | null = null;
  closedUnexpectedly = false;
  ending = false;

  private carry: Uint8Array | null = null;
  private skip = 0;
  private queue: Uint8Array[] = [];
  private waiter: { type: number; resolve: (body: Uint8Array) => void; reject: (e: Error) => void } | null = null;

  constructor(readonly clientId: string) {}

  /** Connects, sends CONNECT and waits for a successful CONNACK. */
  static async open(clientId: string, sessionExpiry = 0): Promise<Conn> {
    const c = new Conn(clientId);
    if (TRANSPORT === "ws") c.socket = await openWebSocket(c);
    else {
      const socket: Socket<undefined> = await Bun.connect({
        hostname: HOST,
        port: PORT,
        socket: {
          binaryType: "uint8array",
          data: (_s, data) => c.receive(data),
          drain: () => c.drained(),
          close: () => c.lost("closed"),
          error: (_s, e) => c.lost(e.message),
        },
      });
      socket.setNoDelay(true);
      c.socket = socket;
    }
    const connack = c.expect(PacketType.CONNACK);
    c.send(
      encodePacket(
        {
          type: PacketType.CONNECT, protocolVersion: VERSION, cleanStart: sessionExpiry === 0, keepAlive: 0, clientId, will: null, username: null, password: null,
          properties: sessionExpiry === 0 || VERSION !== 5 ? NO_PROPERTIES : { sessionExpiryInterval: sessionExpiry },
        },
        VERSION,
      ),
    );
    const body = await connack;
    if (body[1] !== 0) throw new Error(`CONNACK refused ${clientId}: 0x${body[1]!.toString(16)}`);
    return c;
  }

  /** Subscribes to one filter and waits for a granting SUBACK. */
  async subscribe(filter: string, qos: QoS): Promise<void> {
    const suback = this.expect(PacketType.SUBACK);
    this.send(
      encodePacket(
        { type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: filter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: NO_PROPERTIES },
        VERSION,
      ),
    );
    const body = await suback;
    const granted = body[body.length - 1]!;
    if (granted !== qos) throw new Error(`SUBACK for '${filter}' granted 0x${granted.toString(16)}, asked QoS ${qos}`);
  }

  private expect(type: number): Promise<Uint8Array> {
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    this.waiter = { type, resolve, reject };
    return promise;
  }

  /** Handshake and unexpected packets: answer waiters, fail on DISCONNECT. */
  private control(buf: Uint8Array, off: number, hdr: number, rem: number): void {
    const type = buf[off]! >> 4;
    if (type === PacketType.PUBLISH) {
      this.publishes++;
      return;
    }
    const w = this.waiter;
    if (w !== null && w.type === type) {
      this.waiter = null;
      w.resolve(buf.slice(off + hdr, off + hdr + rem));
    } else if (type === PacketType.DISCONNECT) {
      this.lost(`DISCONNECT 0x${(rem > 0 ? buf[off + hdr]! : 0).toString(16)} from the broker`);
    }
  }

  /**
   * Sends bytes, or queues them behind bytes the socket has not taken yet. `reused`: the caller
   * writes into the same buffer again after this returns, so what is queued is copied.
   */
  send(bytes: Uint8Array, reused = false): void {
    if (this.queue.length > 0) {
      this.queue.push(reused ? bytes.slice() : bytes);
      return;
    }
    const w = this.socket.write(bytes);
    if (w < bytes.length) this.queue.push(reused ? bytes.slice(w) : w > 0 ? bytes.subarray(w) : bytes);
  }

  /** True while bytes wait for `drain`. */
  get blocked(): boolean {
    return this.queue.length > 0;
  }

  /** The socket takes more: writes what waited. */
  drained(): void {
    const q = this.queue;
    while (q.length > 0) {
      const b = q[0]!;
      const w = this.socket.write(b);
      if (w < b.length) {
        q[0] = w > 0 ? b.subarray(w) : b;
        return;
      }
      q.shift();
    }
    this.onDrain?.();
  }

  /** The connection ended (or failed) without end(). */
  lost(why: string): void {
    if (this.ending || this.closedUnexpectedly) return;
    this.closedUnexpectedly = true;
    this.waiter?.reject(new Error(`${this.clientId}: ${why}`));
    this.waiter = null;
    if (MODE !== "count") fail(`${this.clientId}: connection lost: ${why}`);
  }

  end(): void {
    this.ending = true;
    this.socket.end();
  }

  /** Splits a chunk into frames (see the class comment). */
  receive(chunk: Uint8Array): void {
    this.receivedAt = performance.now();
    let pos = 0;
    const len = chunk.length;
    if (this.skip > 0) {
      if (this.skip >= len) {
        this.skip -= len;
        return;
      }
      pos = this.skip;
      this.skip = 0;
    } else if (this.carry !== null) {
      // the start of one frame came in the last chunk: complete just that frame
      const carry = this.carry;
      const head = concat(carry, chunk.subarray(0, 5));
      const h = header(head, 0, head.length);
      if (h < 0) {
        this.carry = concat(carry, chunk);
        return;
      }
      const total = Math.floor(h / 8); // see header(): the frame length, then the header length in the low 3 bits
      const need = total - carry.length;
      const hdr = h % 8;
      if (this.countOnly && carry[0]! >> 4 === PacketType.PUBLISH) {
        this.carry = null;
        this.publishes++;
        if (need > len) {
          this.skip = need - len;
          this.onDataEnd?.();
          return;
        }
        pos = need;
      } else {
        if (need > len) {
          this.carry = concat(carry, chunk);
          return;
        }
        this.carry = null;
        const frame = concat(carry, chunk.subarray(0, need));
        this.onFrame(frame, 0, hdr, total - hdr);
        pos = need;
      }
    }
    const countOnly = this.countOnly;
    while (pos < len) {
      // fixed header: type byte, then the remaining length (variable byte integer)
      let i = pos + 1;
      let rem = 0;
      let mul = 1;
      let b = 0x80;
      while (b & 0x80) {
        if (i >= len) break;
        b = chunk[i++]!;
        rem += (b & 0x7f) * mul;
        mul *= 128;
      }
      if (b & 0x80) break; // header incomplete
      const hdr = i - pos;
      const end = i + rem;
      if (countOnly && chunk[pos]! >> 4 === PacketType.PUBLISH) {
        this.publishes++;
        if (end > len) {
          this.skip = end - len;
          pos = len;
          break;
        }
        pos = end;
        continue;
      }
      if (end > len) break;
      this.onFrame(chunk, pos, hdr, rem);
      pos = end;
    }
    if (pos < len) this.carry = chunk.slice(pos);
    this.onDataEnd?.();
  }
}

/** Parses a fixed header at `off`: returns (frame length * 8 + header length), or -1 if incomplete. */
function header(buf: Uint8Array, off: number, end: number): number {
  let i = off + 1;
  let rem = 0;
  let mul = 1;
  for (;;) {
    if (i >= end) return -1;
    const b = buf[i++]!;
    rem += (b & 0x7f) * mul;
    mul *= 128;
    if ((b & 0x80) === 0) break;
  }
  const hdr = i - off;
  return (hdr + rem) * 8 + hdr;
}

const stampBytes = new Uint8Array(8);
const stampView = new DataView(stampBytes.buffer);

/** The float64 (little-endian) at `buf[at]`: a payload's timestamp, read without a DataView of its own. */
function stampAt(buf: Uint8Array, at: number): number {
  for (let k = 0; k < 8; k++) stampBytes[k] = buf[at + k]!;
  return stampView.getFloat64(0, true);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Where a received PUBLISH's payload starts (after topic, packet id and, in v5, properties). */
function payloadOffset(buf: Uint8Array, off: number, hdr: number, qos: number): number {
  let p = off + hdr;
  p += 2 + ((buf[p]! << 8) | buf[p + 1]!);
  if (qos > 0) p += 2;
  if (VERSION === 5) {
    let n = 0;
    let mul = 1;
    let b: number;
    do {
      b = buf[p++]!;
      n += (b & 0x7f) * mul;
      mul *= 128;
    } while (b & 0x80);
    p += n;
  }
  return p;
}

// ---- packets encoded once ----------------------------------------------------------------------

/** One PUBLISH frame for `topic`, encoded once, and where its packet id and payload sit. */
function publishTemplate(topic: string, qos: QoS): { frame: Uint8Array; idAt: number; payloadAt: number } {
  const frame = encodePacket(
    { type: PacketType.PUBLISH, dup: false, qos, retain: false, topic, packetId: qos > 0 ? 1 : 0, properties: NO_PROPERTIES, payload: new Uint8Array(PAYLOAD).fill(0x61) },
    VERSION,
  );
  const hdr = header(frame, 0, frame.length) % 8;
  const idAt = hdr + 2 + topic.length;
  return { frame, idAt, payloadAt: frame.length - PAYLOAD };
}

/** `count` copies of a frame back to back. */
/** QoS 0 PUBLISH frames to `dev/<k>/state` for k = 0 .. n-1, in batches of about BATCH_BYTES (whole frames). */
function distinctBatches(n: number): { bytes: Uint8Array; count: number }[] {
  const batches: { bytes: Uint8Array; count: number }[] = [];
  let frames: Uint8Array[] = [];
  let size = 0;
  const close = () => {
    const bytes = new Uint8Array(size);
    frames.reduce((at, f) => (bytes.set(f, at), at + f.length), 0);
    batches.push({ bytes, count: frames.length });
    frames = [];
    size = 0;
  };
  for (let k = 0; k < n; k++) {
    const f = publishTemplate(`dev/${k}/state`, 0).frame;
    if (size + f.length > BATCH_BYTES) close();
    frames.push(f);
    size += f.length;
  }
  if (frames.length > 0) close();
  return batches;
}

function repeat(frame: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(frame.length * count);
  for (let i = 0; i < count; i++) out.set(frame, i * frame.length);
  return out;
}

/** Acknowledgements of one type (first byte: PUBACK 0x40, PUBREC 0x50) for the first `n` identifiers, in one buffer. */
function acknowledgements(firstByte: number, ids: number[], n: number): Uint8Array {
  const out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    out[i * 4] = firstByte;
    out[i * 4 + 1] = 2;
    out[i * 4 + 2] = id >> 8;
    out[i * 4 + 3] = id & 0xff;
  }
  return out;
}

/**
 * Makes `p` a QoS 1/2 publisher that keeps `inflight` PUBLISHes of `t` unacknowledged, refilling
 * the window once per data event, until `limit` are sent or `stopped()`. A PUBREC is answered
 * with PUBREL; an identifier is free again at PUBACK / PUBCOMP. With `stamp` each payload starts
 * with performance.now() at the time of the write. `acked`, when given, gets each message's time
 * from its write to its PUBACK / PUBCOMP in ms. Returns how many it has sent so far.
 */
function keepWindow(p: Conn, t: ReturnType<typeof publishTemplate>, inflight: number, limit: number, stamp: boolean, stopped: () => boolean, acked: ((ms: number) => void) | null = null): () => number {
  const used = new Uint8Array(65536);
  const sentAt = acked === null ? null : new Float64Array(65536);
  let nextId = 0;
  let outstanding = 0;
  let sent = 0;
  // the window's frames, encoded once: each refill patches identifiers (and stamps) into the first n
  const window = repeat(t.frame, inflight);
  const view = new DataView(window.buffer);
  const refill = () => {
    const n = Math.min(inflight - outstanding, limit - sent);
    if (stopped() || n <= 0 || p.closedUnexpectedly) return;
    const b = window;
    const now = performance.now();
    for (let i = 0; i < n; i++) {
      do nextId = nextId === 65535 ? 1 : nextId + 1;
      while (used[nextId] === 1);
      used[nextId] = 1;
      b[i * t.frame.length + t.idAt] = nextId >> 8;
      b[i * t.frame.length + t.idAt + 1] = nextId & 0xff;
      if (stamp) view.setFloat64(i * t.frame.length + t.payloadAt, now, true);
      if (sentAt !== null) sentAt[nextId] = now;
    }
    outstanding += n;
    sent += n;
    p.send(b.subarray(0, n * t.frame.length), true);
  };
  const control = p.onFrame;
  p.onFrame = (buf, off, hdr, rem) => {
    const type = buf[off]! >> 4;
    if (type !== PacketType.PUBACK && type !== PacketType.PUBREC && type !== PacketType.PUBCOMP) return control(buf, off, hdr, rem);
    const id = (buf[off + hdr]! << 8) | buf[off + hdr + 1]!;
    if (type === PacketType.PUBREC) {
      p.send(new Uint8Array([0x62, 2, id >> 8, id & 0xff])); // PUBREL
      return;
    }
    if (used[id] === 1) {
      used[id] = 0;
      outstanding--;
      if (sentAt !== null) acked!(performance.now() - sentAt[id]!);
    }
  };
  p.onDataEnd = refill;
  refill();
  return () => sent;
}

// ---- lifecycle ---------------------------------------------------------------------------------

const conns: Conn[] = [];
let finished = false;

function fail(message: string): void {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ error: message }));
  process.exit(1);
}

function done(result: object): never {
  finished = true;
  for (const c of conns) c.end();
  console.log(JSON.stringify(result));
  process.exit(0);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function openMany(count: number, prefix: string, concurrency = 100, sessionExpiry = 0): Promise<Conn[]> {
  const out: Conn[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      out[i] = await Conn.open(`${ID_PREFIX}${prefix}${i}`, sessionExpiry);
      conns.push(out[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return out;
}

// ---- throughput --------------------------------------------------------------------------------

async function throughput(): Promise<never> {
  const pubs = num("pubs", 1);
  const subs = num("subs", 1);
  const qos = num("qos", 0) as QoS;
  const filter = str("filter", "bench/0");
  const inflight = num("inflight", 100);
  const warmupMs = num("warmup-ms", 1000);
  const durationMs = num("duration-ms", 3000);

  const subscribers = await openMany(subs, "sub", 100, SESSION_EXPIRY);
  const ackLatency = num("ack-latency", 0) === 1;
  const ackSamples: number[] = [];
  for (const s of subscribers) await s.subscribe(filter, qos);
  const publishers = await openMany(pubs, "pub");
  let stopped = false;
  let measuring = false;
  let sent = 0; // QoS 0; QoS 1 publishers count in their windows
  const windows: (() => number)[] = [];
  const published = () => windows.reduce((n, w) => n + w(), sent);

  for (const s of subscribers) {
    if (qos === 0) {
      s.countOnly = true;
      continue;
    }
    // QoS 1: PUBACK every PUBLISH, one write per data event
    let ids: number[] = [];
    const control = s.onFrame;
    s.onFrame = (buf, off, hdr, rem) => {
      if (buf[off]! >> 4 !== PacketType.PUBLISH) return control(buf, off, hdr, rem);
      s.publishes++;
      const p = off + hdr + 2 + ((buf[off + hdr]! << 8) | buf[off + hdr + 1]!);
      ids.push((buf[p]! << 8) | buf[p + 1]!);
    };
    s.onDataEnd = () => {
      if (ids.length === 0) return;
      s.send(acknowledgements(0x40, ids, ids.length));
      ids = [];
    };
  }

  publishers.forEach((p, index) => {
    const t = publishTemplate(`bench/${index}`, qos);
    if (qos === 0) {
      // one batch repeated; with --topics N, batches going round N distinct topics dev/<k>/state
      const batches = TOPICS > 0 ? distinctBatches(TOPICS) : [{ bytes: repeat(t.frame, Math.max(1, Math.floor(BATCH_BYTES / t.frame.length))), count: Math.max(1, Math.floor(BATCH_BYTES / t.frame.length)) }];
      let next = 0;
      let scheduled = false;
      const pump = () => {
        scheduled = false;
        for (let i = 0; i < BATCHES_PER_TURN && !stopped && !p.blocked; i++) {
          const batch = batches[next]!;
          next = (next + 1) % batches.length;
          p.send(batch.bytes);
          sent += batch.count;
        }
        if (!stopped && !p.blocked && !scheduled) {
          scheduled = true;
          setImmediate(pump);
        }
      };
      p.onDrain = () => {
        if (!scheduled) pump();
      };
      pump();
      return;
    }
    // QoS 1; with --ack-latency 1 each PUBLISH-to-PUBACK time is sampled while measuring
    windows.push(keepWindow(p, t, inflight, Infinity, false, () => stopped, ackLatency ? (ms) => measuring && ackSamples.push(ms) : null));
  });

  const delivered = () => subscribers.reduce((n, s) => n + s.publishes, 0);
  await sleep(warmupMs);
  measuring = true;
  const c0 = delivered();
  const s0 = published();
  const t0 = performance.now();
  await sleep(durationMs);
  const c1 = delivered();
  const s1 = published();
  const t1 = performance.now();
  stopped = true;
  measuring = false;
  const seconds = (t1 - t0) / 1000;
  const lat = Float64Array.from(ackSamples).sort();
  const pct = (q: number) => (lat.length === 0 ? NaN : lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!);
  return done({
    mode: "throughput",
    pubs,
    subs,
    qos,
    delivered: c1 - c0,
    seconds,
    rate: (c1 - c0) / seconds,
    publishedRate: (s1 - s0) / seconds,
    perSubscriber: subscribers.map((s) => s.publishes),
    ...(ackLatency ? { ackP50: pct(0.5), ackP99: pct(0.99), ackSamples: lat.length } : {}),
  });
}

// ---- count -------------------------------------------------------------------------------------

async function count(): Promise<never> {
  const pubs = num("pubs", 1);
  const subs = num("subs", 1);
  const qos = num("qos", 1) as QoS;
  const filter = str("filter", "bench/0");
  const inflight = num("inflight", 100);
  const perPublisher = num("count");
  const slowSubs = num("slow-subs", 0);
  const slowAckRate = num("slow-ack-rate", 1000);
  const stallMs = num("stall-ms", 10_000);
  const ackEach = num("ack-each", 0) === 1;
  if (PAYLOAD < 8) fatal("--payload must be at least 8 bytes for the timestamp");
  if (qos === 0) fatal("count mode is for QoS 1 and 2 (QoS 0 may be dropped by design)");

  const subscribers = await openMany(subs, "sub");
  for (const s of subscribers) await s.subscribe(filter, qos);
  const publishers = await openMany(pubs, "pub");
  const expected = perPublisher * pubs * subs;
  const latencies = new Float64Array(expected);
  let samples = 0;
  /** When the last message arrived: the run ends there, not when the 20 ms poll below notices. */
  let lastDelivery = 0;
  const timers: Timer[] = [];

  subscribers.forEach((s, index) => {
    const slow = index < slowSubs;
    let ids: number[] = [];
    const control = s.onFrame;
    s.onFrame = (buf, off, hdr, rem) => {
      if (buf[off]! >> 4 !== PacketType.PUBLISH) return control(buf, off, hdr, rem);
      const now = s.receivedAt;
      lastDelivery = now;
      s.publishes++;
      const q = (buf[off]! >> 1) & 3;
      const p = off + hdr + 2 + ((buf[off + hdr]! << 8) | buf[off + hdr + 1]!);
      if (q > 0) ids.push((buf[p]! << 8) | buf[p + 1]!);
      const at = payloadOffset(buf, off, hdr, q);
      if (samples < expected) latencies[samples++] = now - stampAt(buf, at);
      if (ackEach && !slow) ack(ids.length);
    };
    /** PUBACK (or PUBREC) for the first `n` identifiers received, in one write. */
    const ack = (n: number) => {
      if (n === 0 || s.closedUnexpectedly) return;
      s.send(acknowledgements(qos === 1 ? 0x40 : 0x50, ids, n));
      if (n === ids.length) ids.length = 0;
      else ids.splice(0, n);
    };
    if (!slow) {
      s.onDataEnd = () => ack(ids.length);
      return;
    }
    // a slow consumer: at most slowAckRate acknowledgements a second, released by a 1 ms timer
    const started = performance.now();
    let acked = 0;
    timers.push(setInterval(() => {
      const allowed = Math.floor(((performance.now() - started) * slowAckRate) / 1000) - acked;
      const n = Math.min(allowed, ids.length);
      acked += n;
      ack(n);
    }, 1));
  });

  // QoS 2 at the subscriber: PUBREL from the broker is answered with PUBCOMP
  if (qos === 2) for (const s of subscribers) {
    const control = s.onFrame;
    s.onFrame = (buf, off, hdr, rem) => {
      if (buf[off]! >> 4 !== PacketType.PUBREL) return control(buf, off, hdr, rem);
      s.send(new Uint8Array([0x70, 2, buf[off + hdr]!, buf[off + hdr + 1]!]));
    };
  }

  const t0 = performance.now();
  publishers.forEach((p, index) => keepWindow(p, publishTemplate(`bench/${index}`, qos), inflight, perPublisher, true, () => false));

  const delivered = () => subscribers.reduce((n, s) => n + s.publishes, 0);
  let last = -1;
  let lastChange = performance.now();
  while (delivered() < expected) {
    await sleep(20);
    const d = delivered();
    if (d !== last) {
      last = d;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > stallMs) break;
  }
  // to the last delivery: on a run of a few hundred ms the poll's 20 ms would be a few per cent
  const seconds = ((delivered() === 0 ? performance.now() : lastDelivery) - t0) / 1000;
  for (const t of timers) clearInterval(t);
  const lat = latencies.subarray(0, samples).sort();
  const pct = (q: number) => (samples === 0 ? NaN : lat[Math.min(samples - 1, Math.floor(q * samples))]!);
  return done({
    mode: "count",
    pubs,
    subs,
    qos,
    delivered: delivered(),
    expected,
    seconds,
    rate: delivered() / seconds,
    p50: pct(0.5),
    p99: pct(0.99),
    max: samples === 0 ? NaN : lat[samples - 1],
    disconnected: conns.filter((c) => c.closedUnexpectedly).length,
    perSubscriber: subscribers.map((s) => s.publishes),
  });
}

// ---- latency -----------------------------------------------------------------------------------

async function latency(): Promise<never> {
  const rate = num("rate", 2000);
  const warmupMs = num("warmup-ms", 1000);
  const durationMs = num("duration-ms", 5000);
  if (PAYLOAD < 8) fatal("--payload must be at least 8 bytes for the timestamp");
  const [sub] = await openMany(1, "sub");
  await sub!.subscribe("bench/0", 0);
  const [pub] = await openMany(1, "pub");

  const samples = new Float64Array(Math.ceil((rate * (warmupMs + durationMs + 2000)) / 1000));
  let n = 0;
  let measuring = false;
  const control = sub!.onFrame;
  sub!.onFrame = (buf, off, hdr, rem) => {
    if (buf[off]! >> 4 !== PacketType.PUBLISH) return control(buf, off, hdr, rem);
    const now = performance.now();
    const p = payloadOffset(buf, off, hdr, (buf[off]! >> 1) & 3);
    const sentAt = new DataView(buf.buffer, buf.byteOffset + p, 8).getFloat64(0, true);
    if (measuring && n < samples.length) samples[n++] = now - sentAt;
  };

  const t = publishTemplate("bench/0", 0);
  const start = performance.now();
  let sent = 0;
  let late = 0;
  const tick = () => {
    const now = performance.now();
    const due = Math.floor(((now - start) * rate) / 1000) - sent;
    if (due <= 0) return;
    if (pub!.blocked) {
      late++;
      return;
    }
    const b = repeat(t.frame, due);
    const view = new DataView(b.buffer);
    for (let i = 0; i < due; i++) view.setFloat64(i * t.frame.length + t.payloadAt, now, true);
    sent += due;
    pub!.send(b);
  };
  const timer = setInterval(tick, 1);
  await sleep(warmupMs);
  measuring = true;
  await sleep(durationMs);
  measuring = false;
  clearInterval(timer);
  const lat = samples.subarray(0, n).sort();
  const pct = (q: number) => (n === 0 ? NaN : lat[Math.min(n - 1, Math.floor(q * n))]!);
  return done({ mode: "latency", rate, samples: n, p50: pct(0.5), p99: pct(0.99), max: n === 0 ? NaN : lat[n - 1], publisherBlocked: late });
}

// ---- memory ------------------------------------------------------------------------------------

async function rssKb(pid: number): Promise<number> {
  const status = await Bun.file(`/proc/${pid}/status`).text();
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  if (m === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

async function memory(): Promise<never> {
  const count = num("conns", 2000);
  const pid = num("pid");
  // warm-up: a few connections opened and closed, so the broker's code paths have run once
  const warm = await openMany(50, "warm");
  for (const c of warm) c.end();
  conns.length = 0;
  await sleep(300);
  const before = await rssKb(pid);
  await openMany(count, "idle");
  const connected = await rssKb(pid);
  // let the broker settle (its garbage from the handshakes may be collected), then read again
  await sleep(1000);
  const after = await rssKb(pid);
  return done({
    mode: "memory",
    conns: count,
    rssBeforeKb: before,
    rssConnectedKb: connected,
    rssAfterKb: after,
    bytesPerConn: ((after - before) * 1024) / count,
  });
}

// ---- main --------------------------------------------------------------------------------------

const watchdog = setTimeout(() => fail("the load generator timed out"), 120_000);
watchdog.unref();
try {
  if (MODE === "throughput") await throughput();
  else if (MODE === "count") await count();
  else if (MODE === "latency") await latency();
  else if (MODE === "memory") await memory();
  else fatal(`unknown --mode '${MODE}'`);
} catch (e) {
  fail(String((e as Error)?.message ?? e));
}
