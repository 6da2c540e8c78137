/**
 * Codec benchmark: decode and encode rates of our codec and of mqtt-packet (npm), in one run.
 *
 *   bun bench/codec.ts            (or: bun run bench:codec)
 *   BENCH_MS=1000 bun bench/codec.ts   for longer runs per measurement (default 450 ms; ~37 s in all)
 *
 * Cases: PUBLISH QoS 0 with 64 B (3.1.1), PUBLISH QoS 1 with 1 KB (v5, bare and with two
 * properties), CONNECT (v5 with a will, user name and password). For each:
 *  - decode stream: a ~1 MB stream of back-to-back frames delivered in 64 KB chunks, as a socket
 *    delivers them (frames straddle chunk boundaries). Ours: Framer.nextPacket; mqtt-packet:
 *    one long-lived parser, counting its 'packet' events.
 *  - decode frame: one whole frame at a time. Ours: decodePacket(frame); mqtt-packet: parse(frame)
 *    on one long-lived parser.
 *  - encode: ours encodePacket(p, version), a new buffer each time; mqtt-packet generate(obj, { protocolVersion }).
 *  - encode into: ours encodePacketInto(p, version, buf, 0) into a reused buffer, as the broker and
 *    client write into their output buffers; mqtt-packet generate() again (it has no such form).
 * Each measurement is warmed up, then run for a fixed time three times, ours and mqtt-packet's runs
 * alternating; the median of each is reported.
 * Every result feeds a checksum that is printed, so nothing can be optimized away.
 */
import { generate, parser, type Packet as MqttPacket } from "mqtt-packet";
import { decodePacket, encodePacket, encodePacketInto, Framer, NO_PROPERTIES, PacketType, type Packet, type ProtocolVersion } from "../lib/codec";

const RUN_MS = Number(process.env.BENCH_MS ?? 450);
const WARMUP_MS = Math.min(150, RUN_MS);
const REPEATS = 3;
const CHUNK = 64 * 1024;
const STREAM_BYTES = 1024 * 1024;
const GOAL = 5;

/** Everything measured adds into this; printed at the end. */
let sink = 0;

/** One packet to measure: ours and mqtt-packet's object for the same bytes. */
interface Case {
  name: string;
  publish: boolean;
  version: ProtocolVersion;
  ours: Packet;
  theirs: MqttPacket;
}

function bytesOf(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

const p64 = bytesOf(64, 1);
const p1k = bytesOf(1024, 2);
const TOPIC = "sensors/building-7/floor-3/room-12/temperature";

const CASES: Case[] = [
  {
    name: "PUBLISH QoS 0, 64 B (3.1.1)",
    publish: true,
    version: 4,
    ours: { type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic: TOPIC, packetId: 0, properties: NO_PROPERTIES, payload: p64 },
    theirs: { cmd: "publish", qos: 0, dup: false, retain: false, topic: TOPIC, payload: Buffer.from(p64) },
  },
  {
    name: "PUBLISH QoS 1, 1 KB (v5)",
    publish: true,
    version: 5,
    ours: { type: PacketType.PUBLISH, dup: false, qos: 1, retain: false, topic: TOPIC, packetId: 4242, properties: NO_PROPERTIES, payload: p1k },
    theirs: { cmd: "publish", qos: 1, dup: false, retain: false, topic: TOPIC, messageId: 4242, payload: Buffer.from(p1k) },
  },
  {
    name: "PUBLISH QoS 1, 1 KB (v5, 2 props)",
    publish: true,
    version: 5,
    ours: {
      type: PacketType.PUBLISH, dup: false, qos: 1, retain: false, topic: TOPIC, packetId: 4242,
      properties: { messageExpiryInterval: 3600, contentType: "application/octet-stream" }, payload: p1k,
    },
    theirs: {
      cmd: "publish", qos: 1, dup: false, retain: false, topic: TOPIC, messageId: 4242,
      properties: { messageExpiryInterval: 3600, contentType: "application/octet-stream" }, payload: Buffer.from(p1k),
    },
  },
  {
    name: "CONNECT (v5, will, user, pass)",
    publish: false,
    version: 5,
    ours: {
      type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 60, clientId: "bench-client-0001",
      will: { topic: "clients/bench-client-0001/status", payload: new TextEncoder().encode("offline"), qos: 1, retain: true, properties: { willDelayInterval: 10 } },
      username: "bench-user", password: new TextEncoder().encode("s3cret-passw0rd"), properties: { sessionExpiryInterval: 300, receiveMaximum: 100 },
    },
    theirs: {
      cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clean: true, keepalive: 60, clientId: "bench-client-0001",
      will: { topic: "clients/bench-client-0001/status", payload: Buffer.from("offline"), qos: 1, retain: true, properties: { willDelayInterval: 10 } },
      username: "bench-user", password: Buffer.from("s3cret-passw0rd"), properties: { sessionExpiryInterval: 300, receiveMaximum: 100 },
    },
  },
];

/**
 * Runs `batch` (which does `ops` operations) repeatedly for `ms` and returns operations per second.
 */
function rate(batch: () => void, ops: number, ms: number): number {
  const budget = ms * 1e6;
  let n = 0;
  const t0 = Bun.nanoseconds();
  let t = t0;
  do {
    batch();
    n++;
    t = Bun.nanoseconds();
  } while (t - t0 < budget);
  return (n * ops) / ((t - t0) / 1e9);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Warms both up, then alternates REPEATS fixed-time runs of ours and theirs (so that a burst of
 * load elsewhere on the machine hits both alike) and returns the median rate of each.
 */
function measure(ours: () => void, theirs: () => void, ops: number): { ours: number; theirs: number } {
  rate(ours, ops, WARMUP_MS);
  rate(theirs, ops, WARMUP_MS);
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    a.push(rate(ours, ops, RUN_MS));
    b.push(rate(theirs, ops, RUN_MS));
  }
  return { ours: median(a), theirs: median(b) };
}

interface Row {
  name: string;
  kind: "decode stream" | "decode frame" | "encode" | "encode into";
  publish: boolean;
  ours: number;
  theirs: number;
}

function benchCase(c: Case): Row[] {
  const frame = encodePacket(c.ours, c.version);
  const theirFrame = generate(c.theirs, { protocolVersion: c.version });
  if (Buffer.compare(Buffer.from(frame), theirFrame) !== 0) throw new Error(`${c.name}: the two codecs encode different bytes`);

  // A stream of back-to-back frames, cut into 64 KB chunks regardless of frame boundaries.
  const count = Math.max(1, Math.floor(STREAM_BYTES / frame.length));
  const stream = new Uint8Array(count * frame.length);
  for (let i = 0; i < count; i++) stream.set(frame, i * frame.length);
  const chunks: Uint8Array[] = [];
  for (let off = 0; off < stream.length; off += CHUNK) chunks.push(stream.subarray(off, Math.min(off + CHUNK, stream.length)));
  const bufChunks = chunks.map((ch) => Buffer.from(ch.buffer, ch.byteOffset, ch.length));

  // ours: Framer + decodePacket over the chunks
  const framer = new Framer();
  const oursStream = () => {
    let got = 0;
    for (const ch of chunks) {
      framer.push(ch);
      for (let p = framer.nextPacket(c.version); p !== null; p = framer.nextPacket(c.version)) {
        got++;
        sink += p.type;
      }
    }
    if (got !== count) throw new Error(`ours decoded ${got} of ${count} frames`);
  };

  // mqtt-packet: one long-lived parser, counting 'packet' events
  let theirGot = 0;
  const pp = parser({ protocolVersion: c.version });
  pp.on("packet", (p: MqttPacket) => {
    theirGot++;
    sink += p.cmd.length;
  });
  pp.on("error", (e: Error) => {
    throw e;
  });
  const theirsStream = () => {
    theirGot = 0;
    for (const ch of bufChunks) pp.parse(ch);
    if (theirGot !== count) throw new Error(`mqtt-packet decoded ${theirGot} of ${count} frames`);
  };

  // single frames
  const FRAMES = 1000;
  const oursFrame = () => {
    for (let i = 0; i < FRAMES; i++) sink += decodePacket(frame, c.version).type;
  };
  const theirsFrame = () => {
    theirGot = 0;
    for (let i = 0; i < FRAMES; i++) pp.parse(theirFrame);
    if (theirGot !== FRAMES) throw new Error(`mqtt-packet decoded ${theirGot} of ${FRAMES} frames`);
  };

  // encode
  const ENCODES = 1000;
  const opts = { protocolVersion: c.version };
  const oursEncode = () => {
    for (let i = 0; i < ENCODES; i++) sink += encodePacket(c.ours, c.version).length;
  };
  const scratch = new Uint8Array(frame.length);
  const oursEncodeInto = () => {
    for (let i = 0; i < ENCODES; i++) sink += encodePacketInto(c.ours, c.version, scratch, 0);
  };
  const theirsEncode = () => {
    for (let i = 0; i < ENCODES; i++) sink += generate(c.theirs, opts).length;
  };

  return [
    { name: c.name, kind: "decode stream", publish: c.publish, ...measure(oursStream, theirsStream, count) },
    { name: c.name, kind: "decode frame", publish: c.publish, ...measure(oursFrame, theirsFrame, FRAMES) },
    { name: c.name, kind: "encode", publish: c.publish, ...measure(oursEncode, theirsEncode, ENCODES) },
    { name: c.name, kind: "encode into", publish: c.publish, ...measure(oursEncodeInto, theirsEncode, ENCODES) },
  ];
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

const started = performance.now();
console.log(`codec benchmark: ours (lib/codec) vs mqtt-packet ${require("mqtt-packet/package.json").version}, Bun ${Bun.version}`);
console.log(`each figure: median of ${REPEATS} runs of ${RUN_MS} ms (ours and theirs alternating) after a ${WARMUP_MS} ms warm-up; stream = ${STREAM_BYTES / 1024} KB in ${CHUNK / 1024} KB chunks\n`);

const rows: Row[] = [];
for (const c of CASES) rows.push(...benchCase(c));

const head = ["case", "op", "ours ops/s", "mqtt-packet ops/s", "ratio"];
const table = rows.map((r) => [r.name, r.kind, fmt(r.ours), fmt(r.theirs), `${(r.ours / r.theirs).toFixed(2)}x`]);
const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
const line = (cells: string[]) => cells.map((s, i) => (i >= 2 ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join("  ");
console.log(line(head));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const t of table) console.log(line(t));
console.log("");

/** PUBLISH ratios of one kind of row, one per PUBLISH case. */
const ratios = (kind: Row["kind"]) => rows.filter((r) => r.publish && r.kind === kind).map((r) => r.ours / r.theirs);
const list = (xs: number[]) => xs.map((x) => `${x.toFixed(2)}x`).join(", ");

/** One line per goal: the worst PUBLISH case decides. */
function goal(label: string, kind: Row["kind"], note = ""): void {
  const xs = ratios(kind);
  const worst = Math.min(...xs);
  console.log(`goal: PUBLISH ${label} >= ${GOAL}x mqtt-packet: ${list(xs)} (worst ${worst.toFixed(2)}x) -> ${worst >= GOAL ? "met" : "NOT met"}${note}`);
}
goal("decode", "decode stream", `   [stream; single frames: ${list(ratios("decode frame"))}]`);
goal("encode", "encode", "   [into a new buffer each time]");
goal("encode", "encode into", "   [into a reused output buffer, as the broker and client write]");
console.log(`\n(checksum ${sink}; ${((performance.now() - started) / 1000).toFixed(1)} s)`);
