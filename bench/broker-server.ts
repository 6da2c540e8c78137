/**
 * The broker under test for bench/broker.ts, in a process of its own: starts
 * `new Broker([["127.0.0.1", 0]], options)`, prints one JSON line `{"port": N, "pid": N}` on
 * stdout, and serves until SIGTERM / SIGINT.
 *
 *   bun bench/broker-server.ts
 *   BENCH_BROKER_OPTIONS='{"maxQueuedMessages":100000}'   options (JSON) over the defaults
 *   BENCH_BROKER_LOG=info                                 the broker's log level (default error)
 *   BENCH_BROKER_THREAD=1                                 thread mode: the same broker in a BrokerThread (a Worker)
 *   BENCH_BROKER_WEBSOCKET=1                              also a WebSocket listener (path /mqtt); its port is printed as wsPort
 *   BENCH_BROKER_HTTP=1                                   also the HTTP endpoint (/metrics, the dashboard); its port is printed as httpPort
 *   BENCH_BROKER_STATS_FILE=PATH                          on shutdown, write the persistence store's counters
 *                                                         (transactions, rows) there as JSON (main thread only)
 */
import type { BrokerInit } from "../lib/broker/broker";
import { Broker } from "../lib/broker/broker";
import { BrokerThread } from "../lib/thread/broker-thread";
import type { Address } from "../lib/broker/options";

const logLevel = (process.env.BENCH_BROKER_LOG ?? "error") as "debug" | "info" | "warning" | "error";
const options = JSON.parse(process.env.BENCH_BROKER_OPTIONS ?? "{}") as BrokerInit;
if (process.env.BENCH_BROKER_HTTP === "1") options.http = { host: "127.0.0.1", port: 0 };
const listeners: Address[] = process.env.BENCH_BROKER_WEBSOCKET === "1" ? [["127.0.0.1", 0], ["127.0.0.1", 0, { websocket: true }]] : [["127.0.0.1", 0]];
const broker = process.env.BENCH_BROKER_THREAD === "1"
  ? new BrokerThread(listeners, { ...options, logLevel })
  : new Broker(listeners, { ...options, logLevel });
const [port, wsPort] = await broker.start();

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const statsFile = process.env.BENCH_BROKER_STATS_FILE;
  if (statsFile !== undefined && broker instanceof Broker) await Bun.write(statsFile, JSON.stringify(broker.store?.stats ?? null));
  await broker.stop();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

const httpPort = broker instanceof Broker ? broker.httpPort : null;
console.log(JSON.stringify({ port, wsPort, httpPort, pid: process.pid }));
await broker.serveForever();
