/**
 * Cluster benchmark (issue 15): the cost of crossing nodes.
 *
 *   bun bench/cluster.ts            (or: bun run bench:cluster)
 *
 * Starts a nats-server with JetStream (Debian's, on a free port, in a temp dir), two broker nodes
 * `mqtttools broker --cluster` (A and B) and one lone broker as the baseline, each a process of its
 * own. Publisher and subscriber are our client (lib/client) in this process, MQTT 5.0, 64 B
 * payloads. Each scenario runs twice: publisher and subscriber on the lone broker, then publisher
 * on A and subscriber on B.
 *   QoS 0 rate: BENCH_COUNT (200 000) messages as fast as the publisher's output allows; delivered
 *     per second at the subscriber, from the first sent to the last received (or the deadline).
 *   QoS 1 rate: BENCH_COUNT / 4 messages, 100 unacknowledged at most (batches of 100).
 *   latency at 2000 msg/s, QoS 0 and QoS 1, for BENCH_LATENCY_MS (3000): p50 and p99 of
 *     publish-to-receipt (the timestamp is in the payload; one process, one clock).
 *   session resume (issue 16): a client with a session (expiry 3600) subscribed at QoS 1 leaves;
 *     RESUME_COUNT (10 000) QoS 1 messages are published; the time from its reconnect (on the
 *     same lone broker; in the cluster on node B, the session made on A) to the last message
 *     (every broker here keeps up to 2 x RESUME_COUNT queued messages per client, and accepts
 *     connections at any rate).
 *   connect storm: STORM_COUNT (10 000) clients connect (CONNECT to CONNACK, 500 at a time),
 *     to the lone broker, then spread over three nodes A, B and C; connects per second.
 * Every process started here is stopped at the end, and the temp dir removed.
 */
import type { Subprocess } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "../lib/client/client";
import { Message } from "../lib/client/message";

const COUNT = Number(process.env.BENCH_COUNT ?? 200_000);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 3000);
const RATE = 2000;
const RESUME_COUNT = Number(process.env.BENCH_RESUME_COUNT ?? 10_000);
const STORM_COUNT = Number(process.env.BENCH_STORM_COUNT ?? 10_000);
const PAYLOAD = 64;
const entry = new URL("../index.ts", import.meta.url).pathname;
const procs: Subprocess[] = [];
const dir = mkdtempSync(join(tmpdir(), "mqtttools-bench-cluster-"));

/** Spawns a process and resolves with the first match of `ready` in its output (stdout or stderr). */
async function start(cmd: string[], ready: RegExp, from: "stdout" | "stderr"): Promise<RegExpExecArray> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: from === "stdout" ? "pipe" : "ignore", stderr: from === "stderr" ? "pipe" : "inherit" });
  procs.push(proc);
  const stream = (from === "stdout" ? proc.stdout : proc.stderr) as ReadableStream<Uint8Array>;
  const reader = stream.getReader();
  let text = "";
  for (;;) {
    const m = ready.exec(text);
    if (m !== null) {
      reader.releaseLock();
      void stream.pipeTo(new WritableStream()).catch(() => {});
      return m;
    }
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd[0]} exited: ${text}`);
    text += new TextDecoder().decode(value);
  }
}

/** A broker process; with `nats`, a cluster node. Resolves with its port. */
async function broker(nats: string | null): Promise<number> {
  const args = [process.execPath, entry, "broker", "--host", "127.0.0.1", "-p", "0", "--sys-interval", "0", "--max-output-bytes", String(64 * 1024 * 1024), "--max-queued-messages", String(2 * RESUME_COUNT), "--max-connection-rate", "0"];
  if (nats !== null) args.push("--cluster", nats);
  const m = await start(args, /Listening on [^:]+:(\d+)/, "stdout");
  return Number(m[1]);
}

async function client(port: number, id: string): Promise<Client> {
  const c = new Client("127.0.0.1", port, { clientId: id, connectDelays: [], reconnectDelays: [] });
  await c.start();
  return c;
}

function payload(): Uint8Array {
  const p = new Uint8Array(PAYLOAD);
  new DataView(p.buffer).setFloat64(0, performance.now());
  return p;
}

/** Messages delivered per second, `qos`, publisher on `pubPort`, subscriber on `subPort`. */
async function rate(pubPort: number, subPort: number, qos: 0 | 1, n: number): Promise<number> {
  const topic = `bench/rate/${qos}`;
  const sub = await client(subPort, `sub-${qos}-${subPort}`);
  const pub = await client(pubPort, `pub-${qos}-${pubPort}`);
  let got = 0;
  let last = 0;
  const done = Promise.withResolvers<void>();
  sub.onMessage = (m) => {
    if (m === null) return;
    last = performance.now();
    if (++got === n) done.resolve();
  };
  await sub.subscribe(topic, { qos });
  const body = new Uint8Array(PAYLOAD);
  const began = performance.now();
  if (qos === 0) {
    for (let i = 0; i < n; i++) await pub.publish(new Message(topic, body));
  } else {
    for (let i = 0; i < n; i += 100) {
      const batch: Promise<void>[] = [];
      for (let k = 0; k < 100 && i + k < n; k++) batch.push(pub.publish(new Message(topic, body, { qos: 1 })));
      await Promise.all(batch);
    }
  }
  await Promise.race([done.promise, Bun.sleep(10_000)]);
  await Promise.all([pub.stop(), sub.stop()]);
  return got / ((last - began) / 1000);
}

/** p50 and p99 of publish-to-receipt in ms at RATE msg/s. */
async function latency(pubPort: number, subPort: number, qos: 0 | 1): Promise<[number, number]> {
  const topic = `bench/latency/${qos}`;
  const sub = await client(subPort, `lsub-${qos}-${subPort}`);
  const pub = await client(pubPort, `lpub-${qos}-${pubPort}`);
  const samples: number[] = [];
  sub.onMessage = (m) => {
    if (m !== null) samples.push(performance.now() - new DataView(m.payload.buffer, m.payload.byteOffset).getFloat64(0));
  };
  await sub.subscribe(topic, { qos });
  const began = performance.now();
  let sent = 0;
  while (performance.now() - began < LATENCY_MS) {
    const due = Math.floor(((performance.now() - began) / 1000) * RATE);
    while (sent < due) {
      void pub.publish(new Message(topic, payload(), { qos }));
      sent++;
    }
    await Bun.sleep(1); // about 2 messages a millisecond, not bursts
  }
  const deadline = performance.now() + 5000;
  while (samples.length < sent && performance.now() < deadline) await Bun.sleep(10);
  await Promise.all([pub.stop(), sub.stop()]);
  samples.sort((x, y) => x - y);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!;
  return [at(0.5), at(0.99)];
}

/** Milliseconds from reconnecting (to `resumePort`) a session made on `madePort` to receiving the RESUME_COUNT messages queued for it. */
async function resume(madePort: number, resumePort: number): Promise<number> {
  const id = `resume-${madePort}-${resumePort}`;
  const topic = `bench/resume/${madePort}`;
  const first = new Client("127.0.0.1", madePort, { clientId: id, connectDelays: [], reconnectDelays: [], sessionExpiryInterval: 3600 });
  await first.start();
  await first.subscribe(topic, { qos: 1 });
  await first.stop();
  const pub = await client(madePort, `rpub-${madePort}`);
  const body = new Uint8Array(PAYLOAD);
  for (let i = 0; i < RESUME_COUNT; i += 100) {
    const batch: Promise<void>[] = [];
    for (let k = 0; k < 100 && i + k < RESUME_COUNT; k++) batch.push(pub.publish(new Message(topic, body, { qos: 1 })));
    await Promise.all(batch);
  }
  await pub.stop();
  const again = new Client("127.0.0.1", resumePort, { clientId: id, connectDelays: [], reconnectDelays: [], sessionExpiryInterval: 3600 });
  let got = 0;
  const done = Promise.withResolvers<void>();
  again.onMessage = (m) => {
    if (m !== null && ++got === RESUME_COUNT) done.resolve();
  };
  const began = performance.now();
  await again.start({ resumeSession: true });
  await Promise.race([done.promise, Bun.sleep(60_000)]);
  const ms = performance.now() - began;
  await again.stop();
  if (got < RESUME_COUNT) throw new Error(`the resumed session got ${got} of ${RESUME_COUNT} messages`);
  return ms;
}

/** Connects per second: STORM_COUNT raw clients, spread over `ports`, 500 at a time, CONNECT (v5, clean) to CONNACK. */
async function storm(ports: number[], tag: string): Promise<number> {
  const { encodePacket } = await import("../lib/codec/packet");
  const { PacketType } = await import("../lib/codec/constants");
  const sockets: { end(): void }[] = [];
  const began = performance.now();
  let next = 0;
  const one = async (i: number) => {
    const acked = Promise.withResolvers<void>();
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: ports[i % ports.length]!,
      socket: {
        data: () => acked.resolve(), // CONNACK is the first thing back
        close: () => acked.reject(new Error("closed before CONNACK")),
        error: (_s, e) => acked.reject(e),
      },
    });
    sockets.push(socket);
    socket.write(encodePacket({ type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 0, clientId: `storm-${tag}-${i}`, will: null, username: null, password: null, properties: {} }, 5));
    await acked.promise;
  };
  await Promise.all(
    Array.from({ length: 500 }, async () => {
      while (next < STORM_COUNT) await one(next++);
    }),
  );
  const perSecond = STORM_COUNT / ((performance.now() - began) / 1000);
  for (const s of sockets) s.end();
  return perSecond;
}

async function main(): Promise<void> {
  const nats = await start(["nats-server", "-js", "-sd", dir, "-a", "127.0.0.1", "-p", "-1"], /Listening for client connections on [^\s]+:(\d+)/, "stderr");
  const url = `nats://127.0.0.1:${nats[1]}`;
  const [single, a, b, c] = await Promise.all([broker(null), broker(url), broker(url), broker(url)]);
  console.log(`cluster bench: bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, MQTT 5.0, ${PAYLOAD} B payloads; nats-server at ${url}`);
  const rows: string[][] = [["scenario", "one node", "A -> B", "cross / one"]];
  const r0 = [await rate(single, single, 0, COUNT), await rate(a, b, 0, COUNT)];
  rows.push(["QoS 0 msg/s", r0[0]!.toFixed(0), r0[1]!.toFixed(0), `${((r0[1]! / r0[0]!) * 100).toFixed(0)} %`]);
  const r1 = [await rate(single, single, 1, COUNT / 4), await rate(a, b, 1, COUNT / 4)];
  rows.push(["QoS 1 msg/s (100 in flight)", r1[0]!.toFixed(0), r1[1]!.toFixed(0), `${((r1[1]! / r1[0]!) * 100).toFixed(0)} %`]);
  for (const qos of [0, 1] as const) {
    const l = [await latency(single, single, qos), await latency(a, b, qos)];
    rows.push([`QoS ${qos} latency p50 at ${RATE} msg/s (ms)`, l[0]![0].toFixed(2), l[1]![0].toFixed(2), `+${(l[1]![0] - l[0]![0]).toFixed(2)} ms`]);
    rows.push([`QoS ${qos} latency p99 at ${RATE} msg/s (ms)`, l[0]![1].toFixed(2), l[1]![1].toFixed(2), `+${(l[1]![1] - l[0]![1]).toFixed(2)} ms`]);
  }
  const rs = [await resume(single, single), await resume(a, b)];
  rows.push([`resume a session with ${RESUME_COUNT} queued (ms)`, rs[0]!.toFixed(0), rs[1]!.toFixed(0), `${(rs[1]! / rs[0]!).toFixed(1)}x the time`]);
  const st = [await storm([single], "one"), await storm([a, b, c], "three")];
  rows.push([`connect storm, ${STORM_COUNT} clients (connects/s)`, st[0]!.toFixed(0), `${st[1]!.toFixed(0)} (A, B, C)`, `${((st[1]! / st[0]!) * 100).toFixed(0)} %`]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
}

try {
  await main();
} finally {
  for (const p of procs) p.kill();
  await Promise.all(procs.map((p) => p.exited));
  rmSync(dir, { recursive: true, force: true });
}
