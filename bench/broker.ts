/**
 * Broker benchmark: our Broker, on the main thread and in thread mode (BrokerThread, a Worker),
 * against Mosquitto: same scenarios, same load generator, one run.
 *
 *   bun bench/broker.ts            (or: bun run bench:broker)
 *   bun bench/broker.ts --json     also print every raw result as JSON at the end
 *
 * Every scenario starts a fresh broker process, then runs bench/loadgen.ts in a process of its own
 * against it (raw Bun sockets, packets encoded once and written in 64 KB batches, fixed-header
 * counting at the subscribers; see that file). Our broker is bench/broker-server.ts
 * (`new Broker([["127.0.0.1", 0]], OUR_OPTIONS)`: the defaults but the connection rate). Mosquitto is /usr/sbin/mosquitto with a
 * generated config in a temp dir, listening on a free port; for the QoS 0 scenarios see
 * MOSQUITTO_CONFIG for the limits raised so it is not throttled by its defaults, the QoS 1
 * scenarios run it at its defaults (MOSQUITTO_DEFAULTS). Payloads are 64 B, MQTT 5.0 by default.
 *
 * Scenarios (throughput: messages delivered per second at the subscribers, counted for
 * BENCH_DURATION_MS after BENCH_WARMUP_MS):
 *   QoS 0, 1 publisher -> 1 subscriber
 *   QoS 0, 1 publisher -> 10 subscribers (deliveries counted across all)
 *   QoS 0, 10 publishers (bench/0..9) -> 1 subscriber on 'bench/#'
 *   QoS 1, 1 -> 1 and 1 -> 10, both brokers at their defaults: the publisher keeps 100 PUBLISHes
 *     unacknowledged until it has sent BENCH_QOS1_COUNT (300 000; 1 -> 10: a tenth), each
 *     subscriber PUBACKs each message with a write of its own as it arrives (as Paho and
 *     mosquitto_sub do); delivered / expected, the rate, latency p50 / p99 under that load
 *   latency p50 / p99 at 2000 msg/s, QoS 0 (timestamp in the payload, measured at the subscriber)
 *   broker RSS growth per idle connection over BENCH_CONNS connections (CONNECT + CONNACK each)
 *
 * Durable QoS 1 (issue 12; `--durable` runs only this part): QoS 1 1 -> 1, 100 in flight, to a
 * subscriber with a persistent session (Session Expiry 3600): our broker without persistence, with
 * --persistence and durability process, and with durability power; Mosquitto with `persistence
 * true` (it saves on its autosave interval, not per message). Reported: delivery rate, p50 / p99 of
 * PUBLISH-to-PUBACK at the publisher, and for ours the mean rows per committed transaction.
 *
 * WebSocket (issue 14; `--ws` runs only this part): QoS 0 1 -> 1 and 1 -> 10 with every client on
 * the standard WebSocket (loadgen --transport ws): our broker's WebSocket listener, against our
 * own TCP listener (same broker process, same load generator over TCP) and Mosquitto's websockets
 * listener (MOSQUITTO_WS_CONFIG: MOSQUITTO_CONFIG's limits; 2.0.11 needs a plain listener beside
 * it and no bind address on it). Goals: >= 10x Mosquitto over WebSocket, >= 0.5x our TCP.
 *
 * HTTP endpoint cost (issue 17; `--http` runs only this part): the QoS 0 throughput scenarios and
 * QoS 1 1 -> 1 against our broker (main thread) without the HTTP endpoint, with it and a scrape of
 * /metrics every BENCH_HTTP_SCRAPE_MS (1000), and with that plus an open dashboard's poll of
 * /api/state as often; BENCH_HTTP_ROUNDS (3) rounds, the three variants alternating within each, so
 * that the spread of the runs without it (the noise) can be read beside the difference. Reported:
 * the median rate of each and its ratio to the median without.
 *
 * Environment: BENCH_WARMUP_MS (1000), BENCH_DURATION_MS (3000), BENCH_LATENCY_WARMUP_MS (2000),
 * BENCH_LATENCY_MS (5000), BENCH_CONNS (2000), BENCH_QOS1_COUNT (300000), BENCH_ONLY (run only the
 * scenarios whose name contains it, e.g. "qos1"), BENCH_MQTT_VERSION (5 or 4), MOSQUITTO (/usr/sbin/mosquitto).
 * Every process started here is killed at the end, also on error or Ctrl-C.
 */
import type { Subprocess } from "bun";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { firstLine, killAll, runBench, stopProcess, track } from "./processes";

const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 5000);
/** Longer than the throughput warm-up: at 2000 msg/s the JIT needs a while to reach steady state. */
const LATENCY_WARMUP_MS = Number(process.env.BENCH_LATENCY_WARMUP_MS ?? 2000);
const CONNS = Number(process.env.BENCH_CONNS ?? 2000);
const QOS1_COUNT = Number(process.env.BENCH_QOS1_COUNT ?? 300_000);
/** 1: QoS 1 subscribers write each PUBACK on its own as the message arrives; 0: one write of PUBACKs per data event. */
const ACK_EACH = Number(process.env.BENCH_QOS1_ACK_EACH ?? 0);
const VERSION = process.env.BENCH_MQTT_VERSION ?? "5";
const MOSQUITTO = process.env.MOSQUITTO ?? "/usr/sbin/mosquitto";
const LATENCY_RATE = 2000;
const JSON_OUT = process.argv.includes("--json");
const DURABLE_ONLY = process.argv.includes("--durable");
const WS_ONLY = process.argv.includes("--ws");
const HTTP_ONLY = process.argv.includes("--http");
const HTTP_SCRAPE_MS = Number(process.env.BENCH_HTTP_SCRAPE_MS ?? 1000);
const HTTP_ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 3);
const BUN = process.execPath;
const LOADGEN = join(import.meta.dir, "loadgen.ts");
const SERVER = join(import.meta.dir, "broker-server.ts");
/** Open files wanted in every child: 2000 client sockets in the load generator, 2000 in the broker. */
const NOFILE = 65536;

/**
 * Mosquitto's config. Raised from the defaults so it is not throttled artificially:
 * - max_queued_messages 100000 (default 1000): in 2.0 this also bounds a connected client's
 *   outgoing QoS 0 packet queue, past which QoS 0 messages are dropped;
 * - max_inflight_messages 100 (default 20): the same window as our broker's maxInflight;
 * - set_tcp_nodelay true (default false): no Nagle delay, as Bun's sockets;
 * - sys_interval 0, persistence false: no $SYS publishing, no store on disk.
 */
const MOSQUITTO_CONFIG = (port: number) =>
  [
    `listener ${port} 127.0.0.1`,
    "allow_anonymous true",
    "max_queued_messages 100000",
    "max_inflight_messages 100",
    "set_tcp_nodelay true",
    "sys_interval 0",
    "persistence false",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "connection_messages false",
    "",
  ].join("\n");

/**
 * Mosquitto's websockets listener with MOSQUITTO_CONFIG's limits. Debian's 2.0.11 does not start a
 * websockets listener given a bind address, nor with no plain listener at all: a TCP one on
 * another port comes first.
 */
const MOSQUITTO_WS_CONFIG = (port: number, tcpPort: number) =>
  [`listener ${tcpPort} 127.0.0.1`, `listener ${port}`, "protocol websockets", ...MOSQUITTO_CONFIG(0).split("\n").slice(1)].join("\n");

/**
 * Mosquitto at its defaults, for the QoS 1 scenarios: only the listener, anonymous clients (2.0
 * refuses them by default) and the log. Its defaults: max_queued_messages 1000,
 * max_inflight_messages 20, no TCP_NODELAY, sys_interval 10, no persistence.
 */
const MOSQUITTO_DEFAULTS = (port: number) =>
  [`listener ${port} 127.0.0.1`, "allow_anonymous true", "log_dest stderr", "log_type error", "log_type warning", "connection_messages false", ""].join("\n");

/**
 * Our broker's options: the defaults but maxConnectionRate, off (0) as Mosquitto has none: the
 * memory scenario opens its connections faster than the default 1000 a second.
 */
const OUR_OPTIONS = { maxConnectionRate: 0 };

// ---- processes ---------------------------------------------------------------------------------

let tempDir: string | null = null;

const RAISE_NOFILE = `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)"`;

/** Spawns a command with its open-files limit raised (exec keeps the pid). */
function spawn(cmd: string[], stdout: "pipe" | "ignore" = "pipe", env: Record<string, string> = {}): Subprocess<"ignore", "pipe" | "ignore", "inherit"> {
  const proc = Bun.spawn(["sh", "-c", `${RAISE_NOFILE}; exec "$@"`, "sh", ...cmd], {
    stdin: "ignore",
    stdout,
    stderr: "inherit",
    env: { ...process.env, ...env },
  });
  return track(proc);
}

function cleanupNow(): void {
  killAll();
  if (tempDir !== null) rmSync(tempDir, { recursive: true, force: true });
  tempDir = null;
}

/** A free TCP port on 127.0.0.1 (bound, read, released). */
function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/** Waits until something accepts connections on the port. */
async function waitListening(port: number, proc: Subprocess, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with code ${proc.exitCode}`);
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${what} is not listening on ${port}`);
      await Bun.sleep(20);
    }
  }
}

interface Running {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** The brokers measured, in table order: ours on the main thread, ours in a Worker, Mosquitto. */
const BROKERS = ["mqtttools", "thread", "mosquitto"] as const;
type BrokerName = (typeof BROKERS)[number];

async function startBroker(name: BrokerName, mosquittoDefaults: boolean): Promise<Running> {
  if (name !== "mosquitto") {
    const env = { BENCH_BROKER_OPTIONS: JSON.stringify(OUR_OPTIONS), BENCH_BROKER_THREAD: name === "thread" ? "1" : "0" };
    const proc = spawn([BUN, SERVER], "pipe", env);
    const { port } = JSON.parse(await firstLine(proc, "bench/broker-server.ts")) as { port: number };
    // the pid is the spawned one: `sh -c 'exec ...'` became the broker
    return { port, pid: proc.pid, stop: () => stopProcess(proc) };
  }
  const port = freePort();
  const conf = join(tempDir!, `mosquitto-${port}.conf`);
  writeFileSync(conf, (mosquittoDefaults ? MOSQUITTO_DEFAULTS : MOSQUITTO_CONFIG)(port));
  const proc = spawn([MOSQUITTO, "-c", conf], "ignore");
  await waitListening(port, proc, "mosquitto");
  return { port, pid: proc.pid, stop: () => stopProcess(proc) };
}

// ---- HTTP endpoint cost --------------------------------------------------------------------------

/** The variants of the HTTP cost comparison: the endpoint off; on and scraped; on, scraped and polled by a dashboard. */
const HTTP_VARIANTS = [
  { label: "no HTTP endpoint", http: false, paths: [] as string[] },
  { label: "/metrics scraped", http: true, paths: ["/metrics"] },
  { label: "/metrics + /api/state", http: true, paths: ["/metrics", "/api/state"] },
] as const;

/** Runs a load against our broker with each HTTP variant, BENCH_HTTP_ROUNDS times alternating; one table row per scenario. */
async function httpCost(): Promise<string[][]> {
  const rows: string[][] = [["scenario", ...HTTP_VARIANTS.map((v) => v.label), "off runs (spread)", "scraped / off", "+ state / off", "scrapes"]];
  const scenarios = SCENARIOS.filter((s) => ["qos0 1->1", "qos0 1->10", "qos0 10->1 wildcard", "qos1 1->1 defaults"].includes(s.name) && s.name.includes(process.env.BENCH_ONLY ?? ""));
  for (const s of scenarios) {
    const rates: number[][] = HTTP_VARIANTS.map(() => []);
    let scrapes = 0;
    for (let round = 0; round < HTTP_ROUNDS; round++) {
      for (const [i, v] of HTTP_VARIANTS.entries()) {
        const env = { BENCH_BROKER_OPTIONS: JSON.stringify(OUR_OPTIONS), BENCH_BROKER_THREAD: "0", BENCH_BROKER_HTTP: v.http ? "1" : "0" };
        const proc = spawn([BUN, SERVER], "pipe", env);
        let timer: Timer | null = null;
        try {
          const { port, httpPort, pid } = JSON.parse(await firstLine(proc, "bench/broker-server.ts")) as { port: number; httpPort: number | null; pid: number };
          if (v.http) {
            // what Prometheus (and an open dashboard) does: one request each, every interval
            const scrape = async () => {
              for (const path of v.paths) {
                const res = await fetch(`http://127.0.0.1:${httpPort}${path}`);
                if (!res.ok) throw new Error(`${path}: ${res.status}`);
                await res.arrayBuffer();
                scrapes++;
              }
            };
            timer = setInterval(() => void scrape().catch((e) => process.stderr.write(`  scrape failed: ${(e as Error).message}\n`)), HTTP_SCRAPE_MS);
          }
          const r = await loadgen(port, s.args(pid));
          rates[i]!.push(r.rate!);
          process.stderr.write(`  http ${s.name} / ${v.label} / round ${round + 1}: ${JSON.stringify({ ...r, perSubscriber: undefined })}\n`);
        } finally {
          if (timer !== null) clearInterval(timer);
          await stopProcess(proc);
        }
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const [off, scraped, state] = rates.map(median) as [number, number, number];
    const spread = (Math.max(...rates[0]!) - Math.min(...rates[0]!)) / off;
    rows.push([
      s.name, format(off, "msg/s"), format(scraped, "msg/s"), format(state, "msg/s"),
      `${rates[0]!.map((x) => format(x, "msg/s")).join(", ")} (${(spread * 100).toFixed(0)} %)`,
      `${(scraped / off).toFixed(2)}x`, `${(state / off).toFixed(2)}x`, String(scrapes),
    ]);
  }
  return rows;
}

// ---- WebSocket ---------------------------------------------------------------------------------

/** Runs the WebSocket scenarios: ours over ws and over TCP (one broker process), Mosquitto over ws; one table row each. */
async function websocket(): Promise<string[][]> {
  const rows: string[][] = [["QoS 0 over WebSocket", "mqtttools ws", "mqtttools tcp", "mosquitto ws", "vs mosquitto ws", "ws / tcp", "goal", "met"]];
  for (const subs of [1, 10]) {
    const args = ["--mode", "throughput", "--pubs", 1, "--subs", subs, "--qos", 0, "--filter", "bench/0", ...timing];
    const ours = spawn([BUN, SERVER], "pipe", { BENCH_BROKER_OPTIONS: JSON.stringify(OUR_OPTIONS), BENCH_BROKER_WEBSOCKET: "1" });
    let ws: Record<string, number>;
    let tcp: Record<string, number>;
    try {
      const { port, wsPort } = JSON.parse(await firstLine(ours, "bench/broker-server.ts")) as { port: number; wsPort: number };
      ws = await loadgen(wsPort, [...args, "--transport", "ws"]);
      tcp = await loadgen(port, args);
    } finally {
      await stopProcess(ours);
    }
    const port = freePort();
    const conf = join(tempDir!, `mosquitto-ws-${port}.conf`);
    writeFileSync(conf, MOSQUITTO_WS_CONFIG(port, freePort()));
    const mosquitto = spawn([MOSQUITTO, "-c", conf], "ignore");
    let theirs: Record<string, number>;
    try {
      await waitListening(port, mosquitto, "mosquitto (websockets)");
      theirs = await loadgen(port, [...args, "--transport", "ws"]);
    } finally {
      await stopProcess(mosquitto);
    }
    for (const [name, r] of [["mqtttools ws", ws], ["mqtttools tcp", tcp], ["mosquitto ws", theirs]] as const) process.stderr.write(`  ws qos0 1->${subs} / ${name}: ${JSON.stringify({ ...r, perSubscriber: undefined })}\n`);
    const vsMosquitto = ws.rate! / theirs.rate!;
    const vsTcp = ws.rate! / tcp.rate!;
    rows.push([
      `QoS 0, 1 pub -> ${subs} sub${subs > 1 ? "s" : ""}`, format(ws.rate!, "msg/s"), format(tcp.rate!, "msg/s"), format(theirs.rate!, "msg/s"),
      `${vsMosquitto.toFixed(2)}x`, `${vsTcp.toFixed(2)}x`, ">= 10x mosquitto ws, >= 0.5x tcp", vsMosquitto >= 10 && vsTcp >= 0.5 ? "met" : "MISSED",
    ]);
  }
  return rows;
}

/** Runs the load generator against a port; resolves with its JSON result. */
async function loadgen(port: number, args: (string | number)[]): Promise<Record<string, number>> {
  const proc = spawn([BUN, LOADGEN, "--port", String(port), "--version", VERSION, ...args.map(String)]);
  const timeout = setTimeout(() => proc.kill("SIGKILL"), 150_000);
  const out = await new Response(proc.stdout as ReadableStream<Uint8Array>).text();
  await proc.exited;
  clearTimeout(timeout);
  const line = out.trim().split("\n").at(-1) ?? "";
  let result: Record<string, number> & { error?: string };
  try {
    result = JSON.parse(line);
  } catch {
    throw new Error(`the load generator printed no result (exit ${proc.exitCode}): ${out.slice(0, 500)}`);
  }
  if (result.error !== undefined) throw new Error(`load generator: ${result.error}`);
  return result;
}

// ---- scenarios ---------------------------------------------------------------------------------

interface Scenario {
  name: string;
  /** Load generator arguments; the broker's pid is given to the memory scenario. */
  args: (pid: number) => (string | number)[];
  /** Rows it reports: label, how to read the value, higher or lower is better, the goal. */
  rows: Row[];
  /** Mosquitto at its defaults (MOSQUITTO_DEFAULTS) rather than with raised limits. */
  mosquittoDefaults?: boolean;
}

interface Row {
  label: string;
  value: (r: Record<string, number>) => number;
  unit: "msg/s" | "ms" | "KB" | "%";
  better: "higher" | "lower";
  goal: { text: string; met: (ours: number, ratio: number) => boolean } | null;
}

const throughputRow = (label: string, minRatio: number): Row => ({
  label,
  value: (r) => r.rate!,
  unit: "msg/s",
  better: "higher",
  goal: { text: `>= ${minRatio}x`, met: (_ours, ratio) => ratio >= minRatio },
});

const timing = ["--warmup-ms", WARMUP_MS, "--duration-ms", DURATION_MS];

const SCENARIOS: Scenario[] = [
  {
    name: "qos0 1->1",
    args: () => ["--mode", "throughput", "--pubs", 1, "--subs", 1, "--qos", 0, "--filter", "bench/0", ...timing],
    rows: [throughputRow("QoS 0, 1 pub -> 1 sub", 10)],
  },
  {
    name: "qos0 1->10",
    args: () => ["--mode", "throughput", "--pubs", 1, "--subs", 10, "--qos", 0, "--filter", "bench/0", ...timing],
    rows: [throughputRow("QoS 0, 1 pub -> 10 subs", 10)],
  },
  {
    name: "qos0 10->1 wildcard",
    args: () => ["--mode", "throughput", "--pubs", 10, "--subs", 1, "--qos", 0, "--filter", "bench/#", ...timing],
    rows: [throughputRow("QoS 0, 10 pubs -> 1 sub (bench/#)", 10)],
  },
  ...([1, 10] as const).map((subs): Scenario => ({
    name: `qos1 1->${subs} defaults`,
    args: () => ["--mode", "count", "--pubs", 1, "--subs", subs, "--qos", 1, "--inflight", 100, "--count", QOS1_COUNT / subs, "--ack-each", ACK_EACH, "--stall-ms", 5000],
    mosquittoDefaults: true,
    rows: [
      {
        label: `QoS 1, 1 -> ${subs}, defaults: delivered`,
        value: (r) => (100 * r.delivered!) / r.expected!,
        unit: "%",
        better: "higher",
        goal: { text: "100 %", met: (ours) => ours >= 100 },
      },
      throughputRow(`QoS 1, 1 -> ${subs}, defaults: rate`, 5),
      { label: `QoS 1, 1 -> ${subs}, defaults: p50`, value: (r) => r.p50!, unit: "ms", better: "lower", goal: { text: "<= mosquitto", met: (_ours, ratio) => ratio >= 1 } },
      { label: `QoS 1, 1 -> ${subs}, defaults: p99`, value: (r) => r.p99!, unit: "ms", better: "lower", goal: null },
    ],
  })),
  {
    name: "latency",
    args: () => ["--mode", "latency", "--rate", LATENCY_RATE, "--warmup-ms", LATENCY_WARMUP_MS, "--duration-ms", LATENCY_MS],
    rows: [
      { label: `latency p50 @ ${LATENCY_RATE} msg/s`, value: (r) => r.p50!, unit: "ms", better: "lower", goal: null },
      { label: `latency p99 @ ${LATENCY_RATE} msg/s`, value: (r) => r.p99!, unit: "ms", better: "lower", goal: { text: "<= 1 ms", met: (ours) => ours <= 1 } },
    ],
  },
  {
    name: "memory",
    args: (pid) => ["--mode", "memory", "--conns", CONNS, "--pid", pid],
    rows: [
      {
        label: `memory per idle conn (${CONNS})`,
        value: (r) => r.bytesPerConn! / 1024,
        unit: "KB",
        better: "lower",
        goal: { text: "<= 3 KB/conn", met: (ours) => ours <= 3 },
      },
    ],
  },
];

// ---- report ------------------------------------------------------------------------------------

function format(v: number, unit: Row["unit"]): string {
  if (!Number.isFinite(v)) return "n/a";
  if (unit === "msg/s") return `${Math.round(v).toLocaleString("en-US")} msg/s`;
  if (unit === "ms") return `${v.toFixed(3)} ms`;
  if (unit === "%") return `${v.toFixed(2)} %`;
  return `${v.toFixed(2)} KB`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  return [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

// ---- durable QoS 1 ------------------------------------------------------------------------------

/** One way of running the durable scenario: our broker with these options, or Mosquitto with persistence. */
interface DurableRun {
  label: string;
  options: Record<string, unknown> | null;
}

const DURABLE_RUNS: DurableRun[] = [
  { label: "mqtttools, no persistence", options: {} },
  { label: "mqtttools, durability=process", options: { persistenceFile: "durable-process.db", durability: "process" } },
  { label: "mqtttools, durability=power", options: { persistenceFile: "durable-power.db", durability: "power" } },
  { label: "mosquitto, persistence true", options: null },
];

const DURABLE_ARGS = ["--mode", "throughput", "--pubs", 1, "--subs", 1, "--qos", 1, "--inflight", 100, "--filter", "bench/0", "--session-expiry", 3600, "--ack-latency", 1, ...timing];

/** Runs the durable scenario every way; returns one table row each. */
async function durable(): Promise<string[][]> {
  const rows: string[][] = [["durable QoS 1, 1 -> 1, persistent subscriber", "rate", "PUBACK p50", "PUBACK p99", "rows / transaction", "transactions/s", "vs mosquitto"]];
  const measured: { run: DurableRun; r: Record<string, number>; stats: { transactions: number; rows: number } | null; seconds: number }[] = [];
  for (const run of DURABLE_RUNS) {
    let port: number;
    let stop: () => Promise<void>;
    const statsFile = join(tempDir!, `stats-${measured.length}.json`);
    const began = performance.now();
    if (run.options === null) {
      port = freePort();
      const conf = join(tempDir!, `mosquitto-durable-${port}.conf`);
      // its own directory, writable by the user Mosquitto drops to when started as root
      const where = join(tempDir!, `mosquitto-db-${port}`);
      mkdirSync(where, { mode: 0o777 });
      chmodSync(where, 0o777);
      writeFileSync(conf, MOSQUITTO_CONFIG(port).replace("persistence false", `persistence true\npersistence_location ${where}/`));
      const proc = spawn([MOSQUITTO, "-c", conf], "ignore");
      await waitListening(port, proc, "mosquitto");
      stop = () => stopProcess(proc);
    } else {
      const options: Record<string, unknown> = { ...OUR_OPTIONS, ...run.options };
      if (typeof options.persistenceFile === "string") options.persistenceFile = join(tempDir!, options.persistenceFile);
      const proc = spawn([BUN, SERVER], "pipe", { BENCH_BROKER_OPTIONS: JSON.stringify(options), BENCH_BROKER_THREAD: "0", BENCH_BROKER_STATS_FILE: statsFile });
      port = (JSON.parse(await firstLine(proc, "bench/broker-server.ts")) as { port: number }).port;
      stop = () => stopProcess(proc);
    }
    let r: Record<string, number>;
    try {
      r = await loadgen(port, DURABLE_ARGS);
    } finally {
      await stop();
    }
    const seconds = (performance.now() - began) / 1000;
    const stats = run.options === null ? null : ((await Bun.file(statsFile).json().catch(() => null)) as { transactions: number; rows: number } | null);
    measured.push({ run, r, stats, seconds });
    process.stderr.write(`  durable / ${run.label}: ${JSON.stringify({ ...r, perSubscriber: undefined, stats })}\n`);
  }
  const mosquitto = measured.at(-1)!.r.rate!;
  for (const { run, r, stats, seconds } of measured) {
    const tx = stats === null || stats.transactions === 0 ? null : stats;
    rows.push([
      run.label, format(r.rate!, "msg/s"), format(r.ackP50!, "ms"), format(r.ackP99!, "ms"),
      tx === null ? "-" : (tx.rows / tx.transactions).toFixed(1), tx === null ? "-" : Math.round(tx.transactions / seconds).toLocaleString("en-US"),
      run.options === null ? "" : `${(r.rate! / mosquitto).toFixed(2)}x`,
    ]);
  }
  return rows;
}

async function main(): Promise<void> {
  tempDir = mkdtempSync(join(tmpdir(), "mqtttools-bench-"));
  const mosquittoVersion = (await new Response(Bun.spawn([MOSQUITTO, "-h"], { stdout: "pipe", stderr: "ignore" }).stdout).text()).split("\n")[0];
  console.log(`broker bench: bun ${Bun.version}, ${mosquittoVersion}, MQTT ${VERSION === "4" ? "3.1.1" : "5.0"}, 64 B payloads, ${navigator.hardwareConcurrency} cores`);
  const nofile = (await new Response(Bun.spawn(["sh", "-c", `${RAISE_NOFILE}; ulimit -n`], { stdout: "pipe" }).stdout).text()).trim();
  console.log(
    `throughput: ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms measured; latency: ${LATENCY_WARMUP_MS} ms warm-up + ${LATENCY_MS} ms at ${LATENCY_RATE} msg/s; ` +
      `memory: ${CONNS} idle connections; open files per process: ${nofile}`,
  );
  console.log(`mosquitto config: ${MOSQUITTO_CONFIG(0).split("\n").slice(1, 6).join(", ")} (QoS 0, latency, memory); its defaults (QoS 1)`);
  console.log(`mqtttools options: defaults + ${JSON.stringify(OUR_OPTIONS)}\n`);

  const results: { scenario: string; broker: BrokerName; result: Record<string, number> }[] = [];
  const rows: string[][] = [["scenario", "mqtttools", "thread mode", "mosquitto", "ratio", "thread ratio", "goal", "met (main / thread)"]];
  const started = performance.now();
  if (HTTP_ONLY) {
    console.log(table(await httpCost()));
    console.log(`\nmedians of ${HTTP_ROUNDS} runs each (variants alternating); /metrics (and /api/state) fetched every ${HTTP_SCRAPE_MS} ms during the load. ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return;
  }
  if (WS_ONLY) {
    console.log(table(await websocket()));
    console.log(`\nws / tcp: our WebSocket rate over our TCP rate, same broker process. ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return;
  }
  if (DURABLE_ONLY) {
    console.log(table(await durable()));
    console.log(`\ntransactions/s: over the broker process's whole life (start to stop). ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return;
  }
  for (const s of SCENARIOS.filter((x) => x.name.includes(process.env.BENCH_ONLY ?? ""))) {
    const measured = {} as Record<BrokerName, Record<string, number>>;
    for (const name of BROKERS) {
      const broker = await startBroker(name, s.mosquittoDefaults === true);
      try {
        measured[name] = await loadgen(broker.port, s.args(broker.pid));
      } finally {
        await broker.stop();
      }
      results.push({ scenario: s.name, broker: name, result: measured[name] });
      process.stderr.write(`  ${s.name} / ${name}: ${JSON.stringify(measured[name])}\n`);
    }
    for (const row of s.rows) {
      const theirs = row.value(measured.mosquitto);
      // ratio > 1 means mqtttools is better: more messages, less time, less memory
      const ratioOf = (ours: number) => (row.better === "higher" ? ours / theirs : theirs / ours);
      const shown = (ratio: number) => (Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : "n/a");
      const met = (ours: number) => (row.goal === null ? "" : row.goal.met(ours, ratioOf(ours)) ? "met" : "MISSED");
      const [main, thread] = [row.value(measured.mqtttools), row.value(measured.thread)];
      rows.push([
        row.label, format(main, row.unit), format(thread, row.unit), format(theirs, row.unit),
        shown(ratioOf(main)), shown(ratioOf(thread)), row.goal?.text ?? "-", row.goal === null ? "" : `${met(main)} / ${met(thread)}`,
      ]);
    }
  }
  console.log(table(rows));
  console.log(`\n${table(await websocket())}`);
  console.log(`\n${table(await durable())}`);
  console.log(`\nratio > 1: mqtttools better than mosquitto (msg/s: ours / theirs; ms and KB: theirs / ours); thread mode: the same broker in a BrokerThread. ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (JSON_OUT) console.log(JSON.stringify(results, null, 2));
}

await runBench(main, cleanupNow);
