/**
 * `mqtttools bench pub|sub|conn`: the MQTTX CLI bench model. N clients (-c) connect (--interval
 * apart for conn); pub clients publish at an interval or rate each, sub clients count what
 * arrives, conn clients only connect. A line each second shows connected clients, sent/s,
 * received/s, latency p50/p99 and errors; a summary closes (--json: as JSON on stdout).
 *
 * The payloads and latencies are those of the test kit (lib/testing.ts: stampedPayload,
 * stampLatency, quantile), which `publish --count` measures through measurePublishes(): the
 * three compute their figures in one place. A stamp is the send time since the epoch, so a
 * `bench sub` in one process measures the latency of a `bench pub` in another.
 */
import { parseArgs } from "node:util";
import pc from "picocolors";
import { Client, type ClientOptions } from "../lib/client/client";
import { Message } from "../lib/client/message";
import type { QoS } from "../lib/codec/constants";
import { quantile, stampedPayload, stampLatency, STAMP } from "../lib/testing";
import { CONNECTION_HELP, CONNECTION_OPTIONS, clientArguments, describeBroker, preparePasswordPrompt, qosFlag } from "./connection";
import { secondsFlag } from "./subscribe";
import { integerFlag, UsageError } from "./usage";

/** Help text of the bench command. */
export const BENCH_HELP = `${pc.bold("Usage:")} mqtttools bench pub|sub|conn [options]

Benchmarks a broker with many clients, as MQTTX CLI's bench:
  bench conn   N clients connect (--interval ms apart) and stay connected
  bench pub    N clients publish, each every --interval ms (or --rate a second); in-process
               subscribers (--subscribers) count what arrives and measure the latency
  bench sub    N clients subscribe and count what arrives (the latency of stamped payloads,
               such as a 'bench pub' in another process sends)
A line each second, then a summary:
  [   1s] connected 10/10  sent 100/s  received 100/s  latency p50 0.31 ms p99 1.20 ms  errors 0
It runs until --duration, --count, or Ctrl-C.

Options:
  -c, --clients N             clients (default 10)
  -t, --topic TOPIC           topic (filter for sub); %i is the client's index (1..N), %c its
                              client id (default mqtttools/bench/%i)
  -I, --client-id-prefix P    client ids are P followed by the index (default mqtttools_bench_PID_)
  --interval MS               pub: ms between a client's messages (default 1000; 0: as fast as
                              it can); conn, pub and sub: also ms between connection starts
                              (conn default 10, pub and sub 0)
  --rate N                    pub: messages a second per client (instead of --interval)
  -q, --qos 0|1|2             QoS of the messages and subscriptions (default 0)
  --size BYTES                pub: payload size (default 64; latency needs at least ${STAMP})
  -m, --message TEXT          pub: this payload instead (no latency)
  -L, --count N               pub: messages per client, then stop; sub: messages in all, then stop
  -d, --duration SECONDS      stop after SECONDS
  --subscribers N             pub: in-process subscriber clients counting deliveries (default 1;
                              0: none, received stays 0)
  --json                      the summary as one JSON object on stdout (the lines go to stderr)
  -h, --help                  show this help

Exit status: 0 done, 1 no client could connect (or a run-time error), 2 a usage error.

${CONNECTION_HELP}`;

/** The summary (the --json object). */
export interface BenchSummary {
  command: "pub" | "sub" | "conn";
  broker: string;
  clients: number;
  connected: number;
  errors: number;
  seconds: number;
  sent: number;
  received: number;
  sentPerSecond: number;
  receivedPerSecond: number;
  /** Publish-to-delivery latency in ms (null when not measured). */
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
  /** CONNECT-to-CONNACK time in ms. */
  connectP50Ms: number | null;
  connectP99Ms: number | null;
}

/** A topic of client `index` (1-based) with id `id`: %i and %c replaced. */
export function expandTopic(topic: string, index: number, id: string): string {
  return topic.replace(/%([ic%])/g, (_, c: string) => (c === "i" ? String(index) : c === "c" ? id : "%"));
}

const fixed = (n: number | null, digits = 2) => (n === null || Number.isNaN(n) ? "-" : n.toFixed(digits));
const nullIfNaN = (n: number) => (Number.isNaN(n) ? null : Math.round(n * 1000) / 1000);
/** A number of milliseconds (may have a fraction), at least 0. */
function millisecondsFlag(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) throw new UsageError(`--${flag} must be a number of milliseconds of at least 0, not '${value}'`);
  return n;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Runs the bench command; resolves with the exit code. */
export async function benchCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: preparePasswordPrompt(argv),
    options: {
      ...CONNECTION_OPTIONS,
      clients: { type: "string", short: "c" },
      topic: { type: "string", short: "t" },
      "client-id-prefix": { type: "string", short: "I" },
      interval: { type: "string" },
      rate: { type: "string" },
      qos: { type: "string", short: "q" },
      size: { type: "string" },
      message: { type: "string", short: "m" },
      count: { type: "string", short: "L" },
      duration: { type: "string", short: "d" },
      subscribers: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(BENCH_HELP);
    return 0;
  }
  const [command, ...extra] = positionals;
  if (command === undefined) throw new UsageError("missing pub, sub or conn");
  if (command !== "pub" && command !== "sub" && command !== "conn") throw new UsageError(`the bench is pub, sub or conn, not '${command}'`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  if (values["client-id"] !== undefined) throw new UsageError("--client-id names one client: give --client-id-prefix");
  const only = (flag: string, ...commands: string[]) => {
    if ((values as Record<string, unknown>)[flag] !== undefined && !commands.includes(command)) throw new UsageError(`--${flag} is for bench ${commands.join(" and ")}`);
  };
  only("rate", "pub");
  only("size", "pub");
  only("message", "pub");
  only("subscribers", "pub");
  only("count", "pub", "sub");
  if (values.rate !== undefined && values.interval !== undefined) throw new UsageError("--rate and --interval do not go together");
  if (values.size !== undefined && values.message !== undefined) throw new UsageError("--size and --message do not go together");
  const clients = integerFlag("clients", values.clients ?? "10", 1, 1_000_000);
  const topic = values.topic ?? "mqtttools/bench/%i";
  const prefix = values["client-id-prefix"] ?? `mqtttools_bench_${process.pid}_`;
  const qos: QoS = qosFlag("qos", values.qos);
  let intervalMs = values.interval === undefined ? (command === "pub" ? 1000 : command === "conn" ? 10 : 0) : millisecondsFlag("interval", values.interval);
  if (values.rate !== undefined) {
    const rate = Number(values.rate);
    if (!Number.isFinite(rate) || rate <= 0) throw new UsageError(`--rate must be a number above 0, not '${values.rate}'`);
    intervalMs = 1000 / rate;
  }
  const connectGapMs = command === "pub" ? 0 : intervalMs; // a pub bench's --interval is between messages
  const size = integerFlag("size", values.size ?? "64", 0, 268_435_455);
  const count = values.count === undefined ? Infinity : integerFlag("count", values.count, 1);
  const durationS = values.duration === undefined ? null : secondsFlag("duration", values.duration);
  const subscribers = command === "pub" ? integerFlag("subscribers", values.subscribers ?? "1", 0, 1000) : 0;
  const json = values.json === true;
  const [host, port, base] = await clientArguments(values);
  const broker = describeBroker(host, port);
  const line = json ? (l: string) => console.error(l) : (l: string) => void process.stdout.write(l + "\n");

  // ---- the figures, in all and in the current second ----
  let connected = 0;
  let errors = 0;
  let sent = 0;
  let received = 0;
  let windowSent = 0;
  let windowReceived = 0;
  let windowLatencies: number[] = [];
  const latencies: number[] = [];
  const connectTimes: number[] = [];
  let windowConnectTimes: number[] = [];
  const lastErrors: string[] = [];
  const error = (e: unknown) => {
    errors++;
    if (lastErrors.length < 3) lastErrors.push((e as Error).message ?? String(e));
  };
  const arrived = (m: Message) => {
    received++;
    windowReceived++;
    const l = stampLatency(m.payload);
    if (!Number.isNaN(l)) {
      latencies.push(l);
      windowLatencies.push(l);
    }
  };

  let stopping = false;
  const stopped = Promise.withResolvers<void>();
  const stop = () => {
    stopping = true;
    stopped.resolve();
  };
  const all: Client[] = [];
  const options = (id: string): ClientOptions => ({ ...base, clientId: id, connectDelays: [], reconnectDelays: [] });

  /** A client that connects, counts itself connected, and counts a lost connection as an error. */
  const connect = async (id: string, onMessage?: (m: Message) => void): Promise<Client | null> => {
    const client = new Client(host, port, options(id));
    all.push(client);
    let up = false;
    client.onMessage = (m) => {
      if (m !== null) onMessage?.(m);
      else if (up && !stopping) {
        up = false;
        connected--;
        error(new Error(`${id}: connection lost (${client.lastError?.message ?? "closed"})`));
      }
    };
    const t0 = performance.now();
    try {
      await client.start();
    } catch (e) {
      error(e);
      return null;
    }
    const ms = performance.now() - t0;
    connectTimes.push(ms);
    windowConnectTimes.push(ms);
    up = true;
    connected++;
    return client;
  };

  const started = performance.now();
  let lastTick = started;
  const tick = () => {
    const now = performance.now();
    const dt = (now - lastTick) / 1000;
    lastTick = now;
    const sortedLatencies = windowLatencies.sort((a, b) => a - b);
    const sortedConnects = windowConnectTimes.sort((a, b) => a - b);
    const [label, p50, p99] = command === "conn"
      ? ["connect", quantile(sortedConnects, 0.5), quantile(sortedConnects, 0.99)]
      : ["latency", quantile(sortedLatencies, 0.5), quantile(sortedLatencies, 0.99)];
    const secs = String(Math.round((now - started) / 1000)).padStart(4);
    line(`[${secs}s] connected ${connected}/${clients}  sent ${Math.round(windowSent / dt)}/s  received ${Math.round(windowReceived / dt)}/s  ` +
      `${label} p50 ${fixed(p50)} ms p99 ${fixed(p99)} ms  errors ${errors}`);
    windowSent = 0;
    windowReceived = 0;
    windowLatencies = [];
    windowConnectTimes = [];
  };
  const ticker = setInterval(tick, 1000);
  const timer = durationS === null ? undefined : setTimeout(stop, durationS * 1000);
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  line(`Connecting ${clients} client(s) to '${broker}' (bench ${command}).`);

  try {
    const ids = Array.from({ length: clients }, (_, i) => `${prefix}${i + 1}`);
    const topicOf = (i: number) => expandTopic(topic, i + 1, ids[i]!);

    // in-process subscribers of a pub bench, subscribed before anything is published
    const observers: Client[] = [];
    const distinctTopics = [...new Set(ids.map((_, i) => topicOf(i)))];
    for (let s = 0; s < subscribers && !stopping; s++) {
      const o = new Client(host, port, { ...base, clientId: `${prefix}observer_${s + 1}`, connectDelays: [], reconnectDelays: [] });
      o.onMessage = (m) => {
        if (m !== null) arrived(m);
      };
      await o.start();
      observers.push(o);
      all.push(o);
      for (const t of distinctTopics) await o.subscribe(t, { qos });
    }

    const publishing = async (client: Client, t: string) => {
      const begin = performance.now();
      for (let seq = 0; seq < count && !stopping; seq++) {
        const due = begin + seq * intervalMs;
        const wait = due - performance.now();
        if (wait > 0) await Promise.race([Bun.sleep(wait), stopped.promise]);
        else if (seq % 64 === 63) await nextTurn(); // as fast as it can, yet the ticker and the sockets get their turn
        if (stopping) break;
        if (!client.isConnected) return;
        const payload = values.message !== undefined ? values.message : stampedPayload(size, seq);
        try {
          await client.publish(new Message(t, payload, { qos }));
          sent++;
          windowSent++;
        } catch (e) {
          error(e);
        }
      }
    };

    const running: Promise<void>[] = [];
    const startedAll = performance.now();
    for (let i = 0; i < clients && !stopping; i++) {
      const wait = startedAll + i * connectGapMs - performance.now();
      if (wait > 0) await Promise.race([Bun.sleep(wait), stopped.promise]);
      if (stopping) break;
      const id = ids[i]!;
      const t = topicOf(i);
      running.push((async () => {
        const client = await connect(id, command === "sub" ? (m) => {
          arrived(m);
          if (received >= count) stop();
        } : undefined);
        if (client === null || stopping) return;
        if (command === "sub") {
          try {
            await client.subscribe(t, { qos });
          } catch (e) {
            error(e);
          }
        } else if (command === "pub") await publishing(client, t);
      })());
    }
    await Promise.all(running);
    if (command === "pub" && !stopping) {
      // every client has published its --count: wait for the deliveries (until none came for 2 s)
      for (const c of all) while (c.pending > 0 && c.isConnected) await Bun.sleep(1);
      const expected = sent * subscribers;
      let seen = received;
      let since = performance.now();
      while (received < expected && !stopping) {
        await Promise.race([Bun.sleep(20), stopped.promise]);
        if (received !== seen) {
          seen = received;
          since = performance.now();
        } else if (performance.now() - since > 2000) break;
      }
      stop();
    }
    if (connected === 0 && all.length > 0 && !stopping) stop();
    await stopped.promise;
  } finally {
    stopping = true;
    clearInterval(ticker);
    clearTimeout(timer);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  const seconds = (performance.now() - started) / 1000;
  const maxConnected = connectTimes.length;
  await Promise.all(all.map((c) => c.stop().catch(() => undefined)));

  latencies.sort((a, b) => a - b);
  connectTimes.sort((a, b) => a - b);
  const summary: BenchSummary = {
    command,
    broker,
    clients,
    connected: maxConnected,
    errors,
    seconds: Math.round(seconds * 1000) / 1000,
    sent,
    received,
    sentPerSecond: Math.round(sent / seconds),
    receivedPerSecond: Math.round(received / seconds),
    latencyP50Ms: nullIfNaN(quantile(latencies, 0.5)),
    latencyP99Ms: nullIfNaN(quantile(latencies, 0.99)),
    connectP50Ms: nullIfNaN(quantile(connectTimes, 0.5)),
    connectP99Ms: nullIfNaN(quantile(connectTimes, 0.99)),
  };
  if (json) console.log(JSON.stringify(summary));
  else {
    line(`Summary: bench ${command}, ${clients} client(s), ${maxConnected} connected, ${errors} error(s), ${seconds.toFixed(2)} seconds.`);
    line(`  sent ${sent} (${summary.sentPerSecond}/s), received ${received} (${summary.receivedPerSecond}/s)`);
    line(`  latency p50 ${fixed(summary.latencyP50Ms)} ms, p99 ${fixed(summary.latencyP99Ms)} ms; connect p50 ${fixed(summary.connectP50Ms)} ms, p99 ${fixed(summary.connectP99Ms)} ms`);
  }
  for (const e of lastErrors) console.error(`error: ${e}`);
  if (maxConnected === 0) {
    console.error(`mqtttools bench: no client could connect to '${broker}'`);
    return 1;
  }
  return 0;
}
