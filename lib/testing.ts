/**
 * A test kit for `bun test` suites (`import { testBroker, testClient, measurePublishes } from
 * "mqtttools/testing"`): a broker on a free port that stops with its scope, a started client that
 * does too, and benchmark-style publish counts.
 *
 *   await using broker = await testBroker();
 *   await using client = await testClient(broker);
 *   const r = await measurePublishes({ url: broker.url, topic: "load/t", count: 100_000, qos: 1 });
 *   expect(r.received).toBe(100_000);
 *
 * measurePublishes() is what `mqtttools publish --count` runs, so a test and the CLI compute the
 * same figure. Every message carries its send time (performance.now(), float64) and sequence
 * number in the first 12 payload bytes: subscribers in this process count what actually arrived
 * and take each message's latency from it.
 */
import { Broker, type BrokerInit } from "./broker/broker";
import { BrokerThread } from "./thread/broker-thread";
import { Client, type ClientOptions } from "./client/client";
import { Message } from "./client/message";
import type { QoS } from "./codec/constants";

/** A broker for one test: on 127.0.0.1 and a free port; `await using` stops it. */
export interface TestBroker extends AsyncDisposable {
  /** The broker itself (a BrokerThread with `{ thread: true }`). */
  readonly broker: Broker | BrokerThread;
  /** mqtt://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** Stops the broker (what the end of the `await using` scope does). */
  stop(): Promise<void>;
}

/** Starts a broker on 127.0.0.1 and a free port, in-process, or in a Worker with `{ thread: true }`. */
export async function testBroker(options: BrokerInit & { thread?: boolean } = {}): Promise<TestBroker> {
  const { thread = false, ...init } = options;
  const broker = thread ? new BrokerThread([["127.0.0.1", 0]], init) : new Broker([["127.0.0.1", 0]], init);
  const [port] = await broker.start();
  const stop = () => broker.stop();
  return { broker, port: port!, url: `mqtt://127.0.0.1:${port}`, stop, [Symbol.asyncDispose]: stop };
}

/** Host and port of a broker given as a TestBroker or an mqtt:// URL. */
function address(target: TestBroker | string): [string, number] {
  if (typeof target !== "string") return ["127.0.0.1", target.port];
  const u = new URL(target);
  if (u.protocol !== "mqtt:") throw new Error(`testClient and measurePublishes take mqtt:// URLs, not '${target}'`);
  return [u.hostname, u.port === "" ? 1883 : Number(u.port)];
}

/** A started Client connected to `target` (one connection attempt); `await using` stops it. */
export async function testClient(target: TestBroker | string, options: ClientOptions = {}): Promise<Client> {
  const [host, port] = address(target);
  const client = new Client(host, port, { connectDelays: [], ...options });
  await client.start();
  return client;
}

/** What measurePublishes() is asked to do. */
export interface PublishLoad {
  /** The publishing client (started); else one is made for `url` and stopped afterwards. */
  client?: Client;
  /** The broker, when no client is given, and for the subscribers. */
  url?: string | TestBroker;
  topic: string;
  count: number;
  /** Default 0. */
  qos?: QoS;
  /** Payload bytes (default 12: the send time and the sequence number; smaller sizes measure no latency). */
  size?: number;
  /** Publishes in flight at once (default 10). */
  concurrency?: number;
  /** Clients in this process subscribed to `topic` at `qos` that count what arrives (default 1; 0: count what was sent only). */
  subscribers?: number;
  /** Builds the seq-th message (0-based) instead of the kit's stamped one: no latency is measured then. */
  message?: (seq: number) => Message;
  /** Called with the number sent so far, at most every 100 ms. */
  onProgress?: (sent: number) => void;
  /** Give up waiting for deliveries after this long without one (default 5000 ms). */
  stallMs?: number;
}

/** What measurePublishes() measured. */
export interface PublishMeasurement {
  /** Messages published (each acknowledged, for QoS 1/2). */
  sent: number;
  /** Messages received across all subscribers (sent × subscribers when nothing was lost). */
  received: number;
  /** From the first publish to the last delivery (to the last publish without subscribers). */
  seconds: number;
  /** received / seconds (sent / seconds without subscribers). */
  rate: number;
  /** Latency from publish to delivery, median and 99th percentile, in ms (NaN without subscribers or with size < 12). */
  p50Ms: number;
  p99Ms: number;
}

/** Bytes of the stamp at the start of a measured payload: the send time (float64) and the sequence number (uint32). */
export const STAMP = 12;

/** Milliseconds since the Unix epoch, with the sub-millisecond precision of performance.now() (comparable across processes on one machine). */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * A payload of `size` bytes stamped with the send time (preciseNow()) and `seq`, as
 * measurePublishes() and `mqtttools bench` send (unstamped zeros when smaller than STAMP).
 */
export function stampedPayload(size: number, seq: number): Uint8Array {
  const payload = new Uint8Array(size);
  if (size >= STAMP) {
    const view = new DataView(payload.buffer);
    view.setFloat64(0, preciseNow(), true);
    view.setUint32(8, seq, true);
  }
  return payload;
}

/**
 * Milliseconds from a stamped payload's send time to `now` (preciseNow()); NaN when the payload
 * is too short to carry a stamp, or carries none (a time more than an hour away).
 */
export function stampLatency(payload: Uint8Array, now = preciseNow()): number {
  if (payload.length < STAMP) return NaN;
  const latency = now - new DataView(payload.buffer, payload.byteOffset, 8).getFloat64(0, true);
  return latency > -1 && latency < 3_600_000 ? Math.max(0, latency) : NaN;
}

/** The q-quantile (0..1) of ascending `sorted` values, NaN when there are none. */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Publishes `count` messages as `publish --count` does, and counts what `subscribers` received. */
export async function measurePublishes(load: PublishLoad): Promise<PublishMeasurement> {
  const { topic, count, qos = 0, size = STAMP, concurrency = 10, subscribers = 1, onProgress, stallMs = 5000 } = load;
  const target = load.url ?? (load.client === undefined ? undefined : `mqtt://${load.client.host}:${load.client.port}`);
  if (target === undefined) throw new Error("measurePublishes needs a client or a url");
  const own = load.client === undefined ? await testClient(target) : null;
  const publisher = load.client ?? own!;
  const subs: Client[] = [];
  const latencies: number[] = [];
  let received = 0;
  let lastReceived = 0;
  let expected = Infinity;
  const all = Promise.withResolvers<void>();
  const stamped = load.message === undefined && size >= STAMP;
  const make = load.message ?? ((seq: number) => new Message(topic, stampedPayload(size, seq), { qos }));
  try {
    for (let i = 0; i < subscribers; i++) {
      const s = await testClient(target);
      subs.push(s);
      s.onMessage = (m) => {
        if (m === null) return;
        received++;
        lastReceived = performance.now();
        if (stamped && m.payload.length >= STAMP) latencies.push(stampLatency(m.payload));
        if (received >= expected) all.resolve();
      };
      await s.subscribe(topic, { qos });
    }
    let sent = 0;
    let next = 0;
    const started = performance.now();
    const progress = onProgress === undefined ? null : setInterval(() => onProgress(sent), 100);
    const task = async () => {
      while (next < count) {
        await publisher.publish(make(next++));
        sent++;
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, count) }, task));
      // publish() of QoS 0 resolves before the bytes left: sent means the kernel took them all
      while (publisher.pending > 0 && publisher.isConnected) await Bun.sleep(1);
    } finally {
      if (progress !== null) clearInterval(progress);
      onProgress?.(sent);
    }
    const published = performance.now();
    expected = sent * subscribers;
    if (received >= expected) all.resolve();
    // wait for every delivery, or until none came for stallMs
    let seen = received;
    let since = published;
    const stall = setInterval(() => {
      if (received !== seen) {
        seen = received;
        since = performance.now();
      } else if (performance.now() - since > stallMs) all.resolve();
    }, Math.min(100, stallMs));
    await all.promise;
    clearInterval(stall);
    const seconds = ((subscribers === 0 ? published : Math.max(published, lastReceived)) - started) / 1000;
    latencies.sort((a, b) => a - b);
    return { sent, received, seconds, rate: (subscribers === 0 ? sent : received) / seconds, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99) };
  } finally {
    for (const s of subs) await s.stop();
    await own?.stop();
  }
}
