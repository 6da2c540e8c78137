/**
 * Scale benchmark (issue 19): our broker against Mosquitto in the same run, with state at the
 * sizes an IoT fleet makes.
 *
 *   bun bench/scale.ts            (or: bun run bench:scale)
 *
 * - QoS 0 rate, 1 publisher -> 1 subscriber (bench/loadgen.ts throughput): to one topic, and round
 *   300 000 distinct topics `dev/<k>/state` (loadgen --topics) to a subscriber on `dev/+/state`;
 *   the two back to back, BENCH_SCALE_ROUNDS times (3): medians, and the distinct/one ratio as the
 *   median of each round's.
 * - Retained lookup: N retained messages (1-byte payloads) on `r/<g>/<i>`, 1000 per group; a
 *   subscription to `r/7/+` (1000 matches) is timed from its SUBSCRIBE to its 1000th PUBLISH, at
 *   N = 10 000, 100 000 and 1 000 000 (loaded in that order into one broker process).
 * - Bytes per retained message: RSS growth of the broker from none to 1 000 000 retained.
 * - Bytes per subscription: RSS growth over 100 000 subscriptions (`s/<i>/+`) of one client.
 * Every broker is a fresh process on a free port; everything started here is stopped at the end.
 * Environment: BENCH_WARMUP_MS (1000), BENCH_DURATION_MS (3000), BENCH_SCALE_TOPICS (300000), BENCH_SCALE_ROUNDS (3),
 * BENCH_SCALE_RETAINED ("10000,100000,1000000"), MOSQUITTO (/usr/sbin/mosquitto).
 */
import type { Socket, Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodePacket, PacketType, type Packet } from "../lib/codec";
import { firstLine, killAll, runBench, stopProcess, track } from "./processes";

const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const TOPICS = Number(process.env.BENCH_SCALE_TOPICS ?? 300_000);
const ROUNDS = Number(process.env.BENCH_SCALE_ROUNDS ?? 3);
const RETAINED = (process.env.BENCH_SCALE_RETAINED ?? "10000,100000,1000000").split(",").map(Number);
const SUBSCRIPTIONS = 100_000;
const MOSQUITTO = process.env.MOSQUITTO ?? "/usr/sbin/mosquitto";
const BUN = process.execPath;
const LOADGEN = join(import.meta.dir, "loadgen.ts");
const SERVER = join(import.meta.dir, "broker-server.ts");
/** Our broker: defaults but the connection rate (as bench/broker.ts) and room for the subscription count measured. */
const OUR_OPTIONS = { maxConnectionRate: 0, maxSubscriptionsPerClient: SUBSCRIPTIONS + 10, sysIntervalMs: 0 };
/** Mosquitto raised as in bench/broker.ts so it is not throttled by its defaults. */
const MOSQUITTO_CONFIG = (port: number) =>
  [`listener ${port} 127.0.0.1`, "allow_anonymous true", "max_queued_messages 100000", "max_inflight_messages 100", "set_tcp_nodelay true", "sys_interval 0", "persistence false", "log_dest stderr", "log_type error", ""].join("\n");

let tempDir: string | null = null;
type Name = "mqtttools" | "mosquitto";
interface Running {
  port: number;
  pid: number;
  proc: Subprocess;
}

function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

async function start(name: Name): Promise<Running> {
  if (name === "mqtttools") {
    const proc = track(Bun.spawn([BUN, SERVER], { stdout: "pipe", stderr: "inherit", env: { ...process.env, BENCH_BROKER_OPTIONS: JSON.stringify(OUR_OPTIONS) } }));
    const { port, pid } = JSON.parse(await firstLine(proc, "bench/broker-server.ts")) as { port: number; pid: number };
    return { port, pid, proc };
  }
  const port = freePort();
  const conf = join(tempDir!, `mosquitto-${port}.conf`);
  writeFileSync(conf, MOSQUITTO_CONFIG(port));
  const proc = track(Bun.spawn([MOSQUITTO, "-c", conf], { stdout: "ignore", stderr: "inherit" }));
  for (const deadline = Date.now() + 10_000; ; ) {
    try {
      (await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } })).end();
      break;
    } catch {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error("mosquitto did not start");
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return { port, pid: proc.pid, proc };
}

/** VmRSS of a process, in bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

/** A raw client that counts the frames it receives by type (fixed headers only) and can wait for counts. */
class Counter {
  counts = new Map<number, number>();
  private pending = new Uint8Array(0);
  private waiters: { type: number; n: number; resolve: () => void }[] = [];
  private socket!: Socket<undefined>;
  drained: (() => void) | null = null;

  static async connect(port: number, clientId: string): Promise<Counter> {
    const c = new Counter();
    c.socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data: (_s, d) => c.data(d), drain: () => c.drained?.() } });
    c.send({ type: PacketType.CONNECT, protocolVersion: 5, clientId, cleanStart: true, keepAlive: 0, username: null, password: null, will: null, properties: {} });
    await c.until(PacketType.CONNACK, 1);
    return c;
  }

  count(type: number): number {
    return this.counts.get(type) ?? 0;
  }

  send(p: Packet | Uint8Array): Promise<void> {
    const bytes = p instanceof Uint8Array ? p : encodePacket(p, 5);
    return this.write(bytes);
  }

  private async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      const n = this.socket.write(bytes.subarray(off));
      off += n;
      if (off < bytes.length) await new Promise<void>((r) => (this.drained = r));
    }
  }

  until(type: number, n: number): Promise<void> {
    if (this.count(type) >= n) return Promise.resolve();
    const w = Promise.withResolvers<void>();
    this.waiters.push({ type, n, resolve: w.resolve });
    return w.promise;
  }

  private data(d: Uint8Array): void {
    let buf = this.pending.length === 0 ? d : concat(this.pending, d);
    let i = 0;
    for (;;) {
      let j = i + 1;
      let rl = 0;
      let mul = 1;
      for (; j < buf.length; j++) {
        rl += (buf[j]! & 0x7f) * mul;
        mul *= 128;
        if ((buf[j]! & 0x80) === 0) break;
      }
      if (j >= buf.length || j + 1 + rl > buf.length) break;
      const type = buf[i]! >> 4;
      this.counts.set(type, this.count(type) + 1);
      i = j + 1 + rl;
    }
    this.pending = buf.slice(i);
    this.waiters = this.waiters.filter((w) => (this.count(w.type) >= w.n ? (w.resolve(), false) : true));
  }

  end(): void {
    this.socket.end();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Publishes retained messages (QoS 0, payload 1 byte) on r/<g>/<i> for i in [from, to), then a QoS 1 one, and waits for its PUBACK: all are in. */
async function loadRetained(c: Counter, from: number, to: number): Promise<void> {
  const chunk: Uint8Array[] = [];
  let size = 0;
  const flush = async () => {
    await c.send(concat2(chunk, size));
    chunk.length = 0;
    size = 0;
  };
  for (let i = from; i < to; i++) {
    const f = encodePacket({ type: PacketType.PUBLISH, dup: false, qos: 0, retain: true, topic: `r/${Math.floor(i / 1000)}/${i % 1000}`, packetId: 0, properties: {}, payload: new Uint8Array([0x31]) }, 5);
    chunk.push(f);
    size += f.length;
    if (size > 256 * 1024) await flush();
  }
  await flush();
  const acks = c.count(PacketType.PUBACK);
  await c.send({ type: PacketType.PUBLISH, dup: false, qos: 1, retain: false, topic: "loaded", packetId: 1, properties: {}, payload: new Uint8Array([1]) });
  await c.until(PacketType.PUBACK, acks + 1);
}

function concat2(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

/** Milliseconds from a SUBSCRIBE to `r/7/+` to its 1000th retained PUBLISH (the median of 5, each a fresh client). */
async function lookup(port: number, round: number): Promise<number> {
  const times: number[] = [];
  for (let k = 0; k < 5; k++) {
    const c = await Counter.connect(port, `lookup-${round}-${k}`);
    const t0 = performance.now();
    await c.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: "r/7/+", qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} });
    await c.until(PacketType.PUBLISH, 1000);
    times.push(performance.now() - t0);
    c.end();
  }
  return times.sort((a, b) => a - b)[2]!;
}

/** Retained lookups at each size, and bytes per retained message (RSS growth up to the largest). */
async function retained(name: Name): Promise<{ lookups: number[]; bytesPerRetained: number }> {
  const b = await start(name);
  try {
    const pub = await Counter.connect(b.port, "loader");
    Bun.gc(true);
    const before = rss(b.pid);
    const lookups: number[] = [];
    let loaded = 0;
    for (const n of RETAINED) {
      await loadRetained(pub, loaded, n);
      loaded = n;
      lookups.push(await lookup(b.port, n));
    }
    const bytesPerRetained = (rss(b.pid) - before) / loaded;
    pub.end();
    return { lookups, bytesPerRetained };
  } finally {
    await stopProcess(b.proc);
  }
}

/** Bytes per subscription: RSS growth over SUBSCRIPTIONS filters of one client, 1000 per SUBSCRIBE. */
async function subscriptions(name: Name): Promise<number> {
  const b = await start(name);
  try {
    const c = await Counter.connect(b.port, "subscriber");
    const before = rss(b.pid);
    for (let p = 0; p < SUBSCRIPTIONS / 1000; p++) {
      await c.send({ type: PacketType.SUBSCRIBE, packetId: p + 1, subscriptions: Array.from({ length: 1000 }, (_, i) => ({ topicFilter: `s/${p * 1000 + i}/+`, qos: 0 as const, noLocal: false, retainAsPublished: false, retainHandling: 0 as const })), properties: {} });
    }
    await c.until(PacketType.SUBACK, SUBSCRIPTIONS / 1000);
    return (rss(b.pid) - before) / SUBSCRIPTIONS;
  } finally {
    await stopProcess(b.proc);
  }
}

/** QoS 0 1 -> 1: to one topic, or round `topics` distinct topics. */
async function rate(name: Name, topics: number): Promise<number> {
  const b = await start(name);
  try {
    const args = ["--port", b.port, "--mode", "throughput", "--pubs", 1, "--subs", 1, "--qos", 0, "--payload", 64, "--warmup-ms", WARMUP_MS, "--duration-ms", DURATION_MS, ...(topics > 0 ? ["--topics", topics, "--filter", "dev/+/state"] : ["--filter", "bench/0"])];
    const lg = track(Bun.spawn([BUN, LOADGEN, ...args.map(String)], { stdout: "pipe", stderr: "inherit" }));
    const [text] = await Promise.all([Bun.readableStreamToText(lg.stdout), lg.exited]);
    const out = JSON.parse(text.trim().split("\n").at(-1) ?? "{}") as { rate?: number; error?: string };
    if (out.rate === undefined) throw new Error(`loadgen: ${out.error ?? "no rate"}`);
    return out.rate;
  } finally {
    await stopProcess(b.proc);
  }
}

const k = (n: number) => `${Math.round(n / 1000)}k`;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  tempDir = mkdtempSync(join(tmpdir(), "mqtttools-scale-"));
  const rows: string[] = [];
  const r: Record<Name, { one: number; many: number; ratios: number[]; lookups: number[]; perRetained: number; perSub: number }> = {} as never;
  for (const name of ["mqtttools", "mosquitto"] as const) {
    // one topic and distinct topics measured back to back, ROUNDS times: the ratio is taken within
    // each round (the machine's load drifts between minutes) and the medians reported
    const ones: number[] = [];
    const manys: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      ones.push(await rate(name, 0));
      manys.push(await rate(name, TOPICS));
    }
    const { lookups, bytesPerRetained } = await retained(name);
    const perSub = await subscriptions(name);
    r[name] = { one: median(ones), many: median(manys), ratios: manys.map((m, i) => m / ones[i]!), lookups, perRetained: bytesPerRetained, perSub };
    console.error(`${name}: ${JSON.stringify({ ...r[name], ones, manys })}`);
  }
  const o = r.mqtttools;
  const m = r.mosquitto;
  const ratio = median(o.ratios);
  const pct = (x: number) => `${Math.round(100 * x)} %`;
  rows.push("| measure | mqtttools | mosquitto | goal | met |", "|---|---|---|---|---|");
  rows.push(`| QoS 0 msg/s, one topic (median of ${ROUNDS}) | ${k(o.one)} | ${k(m.one)} | | |`);
  rows.push(`| QoS 0 msg/s, ${k(TOPICS)} distinct topics (median of ${ROUNDS}) | ${k(o.many)} (${pct(ratio)} of one topic: median of the rounds' ratios, ${pct(Math.min(...o.ratios))}-${pct(Math.max(...o.ratios))}; ${(o.many / m.many).toFixed(1)}x mosquitto) | ${k(m.many)} | >= 70 % and >= 7x | ${ratio >= 0.7 && o.many >= 7 * m.many ? "yes" : "no"} |`);
  RETAINED.forEach((n, i) =>
    rows.push(`| ms for 1000 retained of ${n.toLocaleString("en")} (r/7/+) | ${o.lookups[i]!.toFixed(1)} | ${m.lookups[i]!.toFixed(1)} | flat, <= mosquitto | ${i === RETAINED.length - 1 ? (o.lookups[i]! <= m.lookups[i]! ? "yes" : "no") : ""} |`),
  );
  rows.push(`| bytes per retained message (1-byte payload) | ${Math.round(o.perRetained)} | ${Math.round(m.perRetained)} | <= mosquitto | ${o.perRetained <= m.perRetained ? "yes" : "no"} |`);
  rows.push(`| bytes per subscription | ${Math.round(o.perSub)} | ${Math.round(m.perSub)} | | |`);
  console.log(rows.join("\n"));
}

await runBench(main, () => {
  killAll();
  if (tempDir !== null) rmSync(tempDir, { recursive: true, force: true });
  tempDir = null;
});
