/**
 * Client benchmark: our Client against MQTT.js, publishing to our Broker, one run.
 *
 *   bun bench/client.ts            (or: bun run bench:client)
 *   bun bench/client.ts --json     also print every raw result as JSON at the end
 *
 * Every scenario starts a fresh broker (bench/broker-server.ts, in a process of its own, as
 * bench/broker.ts does), then runs one publisher client in another process of its own (this file
 * with `--child`), so neither library inherits the other's heap or JIT state. The publisher
 * connects (MQTT 5.0, clean start), publishes, and counts completion at the publisher: the rate
 * is messages / (time from the first publish until every publish has completed). Nobody
 * subscribes; the broker reads, decodes and acknowledges everything.
 *
 * Scenarios, 64 B payloads on one topic, written as a user of each library would:
 *   QoS 0, BENCH_QOS0_COUNT (1,000,000) messages
 *     mqtttools: `await client.publish(message)` in a loop (resolves at once while the output
 *                buffer is below its high-water mark, else once it has drained);
 *     MQTT.js, two ways, the faster one counting for the ratio:
 *       callbacks: `client.publish(topic, payload, { qos: 0 }, callback)`, the next publish once
 *                  the callback has run (MQTT.js calls it at once while its stream takes the
 *                  write, else on the stream's drain): the same back-pressure as ours;
 *       async:     `await client.publishAsync(topic, payload, { qos: 0 })` in a loop.
 *     Each ends with one QoS 1 publish, awaited: its PUBACK comes after the broker has read every
 *     QoS 0 message before it, so the QoS 0 count is of messages that reached the broker.
 *   QoS 1, BENCH_QOS1_COUNT (100,000) messages, BENCH_INFLIGHT (100) in flight
 *     mqtttools: batches of 100 `client.publish(message)` promises, `await Promise.all(batch)`;
 *     MQTT.js:   batches of 100 `client.publishAsync(topic, payload, { qos: 1 })`, the same way.
 *     A publish completes on its PUBACK.
 *
 * Each measurement runs BENCH_RUNS (3) times, each time with a fresh broker and publisher
 * process; the best run counts, for every library alike.
 *
 * Goal: mqtttools >= 5x MQTT.js on each scenario. Takes well under two minutes (about 25 s).
 * Every process started here is killed at the end, also on error or Ctrl-C.
 */
import type { Subprocess } from "bun";
import { join } from "node:path";
import { firstLine, runBench, stopProcess, track } from "./processes";

const QOS0_COUNT = Number(process.env.BENCH_QOS0_COUNT ?? 1_000_000);
const QOS1_COUNT = Number(process.env.BENCH_QOS1_COUNT ?? 100_000);
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 100);
/** Runs of each measurement; the best counts (the same for every library). */
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PAYLOAD_SIZE = 64;
const TOPIC = "bench/client";
const GOAL = 5;
const JSON_OUT = process.argv.includes("--json");
const BUN = process.execPath;
const SELF = import.meta.path;
const SERVER = join(import.meta.dir, "broker-server.ts");
/**
 * The broker's options: the defaults. The QoS 1 scenario needs no larger queue (nobody
 * subscribes), and the broker's Receive Maximum (65535) does not hold the publisher back.
 */
const BROKER_OPTIONS = {};

/** A library, and for MQTT.js at QoS 0 the way of publishing (see the top of the file). */
type Library = "mqtttools" | "mqttjs" | "mqttjs-async";
type Qos = 0 | 1;

/** What one child run reports. */
interface Result {
  library: Library;
  qos: Qos;
  count: number;
  ms: number;
  rate: number;
}

// ---- the child: one library, one scenario ------------------------------------------------------

const payload = new Uint8Array(PAYLOAD_SIZE).fill(0x61);

async function runMqtttools(port: number, qos: Qos, count: number): Promise<number> {
  const { Client, Message } = await import("../index");
  const client = new Client("127.0.0.1", port, { clientId: `bench-mqtttools-${process.pid}`, connectDelays: [] });
  await client.start();
  try {
    const started = performance.now();
    if (qos === 0) {
      const m = new Message(TOPIC, payload);
      for (let i = 0; i < count; i++) await client.publish(m);
      await client.publish(new Message(TOPIC, payload, { qos: 1 }));
    } else {
      const m = new Message(TOPIC, payload, { qos: 1 });
      const batch: Promise<unknown>[] = [];
      for (let i = 0; i < count; i += INFLIGHT) {
        batch.length = 0;
        for (let j = i; j < Math.min(i + INFLIGHT, count); j++) batch.push(client.publish(m));
        await Promise.all(batch);
      }
    }
    return performance.now() - started;
  } finally {
    await client.stop();
  }
}

async function runMqttjs(port: number, qos: Qos, count: number, variant: "callbacks" | "async"): Promise<number> {
  const mqtt = await import("mqtt");
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: `bench-mqttjs-${process.pid}`,
    protocolVersion: 5,
    reconnectPeriod: 0,
    clean: true,
  });
  const buf = Buffer.from(payload);
  try {
    const started = performance.now();
    if (qos === 0 && variant === "async") {
      for (let i = 0; i < count; i++) await client.publishAsync(TOPIC, buf, { qos: 0 });
      await client.publishAsync(TOPIC, buf, { qos: 1 });
    } else if (qos === 0) {
      let called = false;
      let failed: Error | null = null;
      let wake: (() => void) | null = null;
      const callback = (err?: Error) => {
        if (err) failed = err;
        called = true;
        wake?.();
      };
      for (let i = 0; i < count; i++) {
        called = false;
        client.publish(TOPIC, buf, { qos: 0 }, callback);
        if (!called) await new Promise<void>((resolve) => (wake = resolve)); // the stream is full: wait for its drain
        wake = null;
        if (failed !== null) throw failed;
      }
      await client.publishAsync(TOPIC, buf, { qos: 1 });
    } else {
      const batch: Promise<unknown>[] = [];
      for (let i = 0; i < count; i += INFLIGHT) {
        batch.length = 0;
        for (let j = i; j < Math.min(i + INFLIGHT, count); j++) batch.push(client.publishAsync(TOPIC, buf, { qos: 1 }));
        await Promise.all(batch);
      }
    }
    return performance.now() - started;
  } finally {
    await client.endAsync();
  }
}

async function child(args: string[]): Promise<void> {
  const get = (name: string) => args[args.indexOf(name) + 1]!;
  const library = get("--library") as Library;
  const qos = Number(get("--qos")) as Qos;
  const count = Number(get("--count"));
  const port = Number(get("--port"));
  const ms = library === "mqtttools" ? await runMqtttools(port, qos, count) : await runMqttjs(port, qos, count, library === "mqttjs-async" ? "async" : "callbacks");
  const result: Result = { library, qos, count, ms, rate: (count * 1000) / ms };
  console.log(JSON.stringify(result));
}

// ---- the parent: brokers, children, report -----------------------------------------------------


function spawn(cmd: string[], env: Record<string, string> = {}): Subprocess<"ignore", "pipe", "inherit"> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "inherit", env: { ...process.env, ...env } });
  return track(proc);
}

/** The best of RUNS runs of `library` (each one a fresh broker and publisher). */
async function measure(library: Library, qos: Qos, count: number): Promise<Result> {
  let best: Result | null = null;
  for (let i = 0; i < RUNS; i++) {
    const r = await measureOnce(library, qos, count);
    process.stderr.write(`  ${library} QoS ${qos} run ${i + 1}: ${Math.round(r.rate).toLocaleString("en-US")} msg/s\n`);
    if (best === null || r.rate > best.rate) best = r;
  }
  return best!;
}

/** Starts a fresh broker process, runs one publisher child against it, stops the broker. */
async function measureOnce(library: Library, qos: Qos, count: number): Promise<Result> {
  const broker = spawn([BUN, SERVER], { BENCH_BROKER_OPTIONS: JSON.stringify(BROKER_OPTIONS) });
  try {
    const { port } = JSON.parse(await firstLine(broker, "bench/broker-server.ts")) as { port: number };
    const proc = spawn([BUN, SELF, "--child", "--library", library, "--qos", String(qos), "--count", String(count), "--port", String(port)]);
    const timeout = setTimeout(() => proc.kill("SIGKILL"), 90_000);
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    clearTimeout(timeout);
    const line = out.trim().split("\n").at(-1) ?? "";
    try {
      return JSON.parse(line) as Result;
    } catch {
      throw new Error(`${library} QoS ${qos} printed no result (exit ${proc.exitCode}): ${out.slice(0, 500)}`);
    }
  } finally {
    await stopProcess(broker);
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  return [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

const rate = (r: Result) => `${Math.round(r.rate).toLocaleString("en-US")} msg/s`;

async function main(): Promise<void> {
  const mqttjsVersion = ((await import("mqtt/package.json", { with: { type: "json" } })) as { default: { version: string } }).default.version;
  console.log(`client bench: bun ${Bun.version}, MQTT.js ${mqttjsVersion}, MQTT 5.0, ${PAYLOAD_SIZE} B payloads, publishing to mqtttools' broker, ${navigator.hardwareConcurrency} cores`);
  console.log(`QoS 0: ${QOS0_COUNT.toLocaleString("en-US")} messages; QoS 1: ${QOS1_COUNT.toLocaleString("en-US")} messages, ${INFLIGHT} in flight (batches); best of ${RUNS} runs, each with a fresh broker process\n`);
  const started = performance.now();
  const scenarios: { label: string; qos: Qos; count: number; theirs: Library[] }[] = [
    { label: `QoS 0, ${QOS0_COUNT.toLocaleString("en-US")} x await publish`, qos: 0, count: QOS0_COUNT, theirs: ["mqttjs", "mqttjs-async"] },
    { label: `QoS 1, ${QOS1_COUNT.toLocaleString("en-US")}, ${INFLIGHT} in flight`, qos: 1, count: QOS1_COUNT, theirs: ["mqttjs"] },
  ];
  const results: Result[] = [];
  const rows: string[][] = [["scenario", "mqtttools", "MQTT.js", "ratio", "goal", ""]];
  const notes: string[] = [];
  for (const s of scenarios) {
    const ours = await measure("mqtttools", s.qos, s.count);
    results.push(ours);
    let best: Result | null = null;
    for (const library of s.theirs) {
      const theirs = await measure(library, s.qos, s.count);
      results.push(theirs);
      if (best === null || theirs.rate > best.rate) best = theirs;
    }
    if (s.theirs.length > 1) notes.push(`${s.label}: MQTT.js ${results.slice(-s.theirs.length).map((r) => `${r.library === "mqttjs" ? "callbacks" : "await publishAsync"} ${rate(r)}`).join(", ")}; the faster counts`);
    const ratio = ours.rate / best!.rate;
    rows.push([s.label, rate(ours), rate(best!), `${ratio.toFixed(2)}x`, `>= ${GOAL}x`, ratio >= GOAL ? "met" : "MISSED"]);
  }
  console.log(table(rows));
  for (const n of notes) console.log(n);
  console.log(`\nratio: mqtttools msg/s / MQTT.js msg/s, counted at the publisher. ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (JSON_OUT) console.log(JSON.stringify(results, null, 2));
}

if (process.argv.includes("--child")) {
  await child(process.argv);
} else {
  await runBench(main);
}
