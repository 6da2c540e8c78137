/**
 * No operation holds the event loop for long (issue 19): a stall monitor, a 1 ms timer, runs while
 * the broker does its large pieces of work, and measures between its ticks both the time that
 * passed and the CPU time this process's main thread (the event loop's) used:
 * - a subscription matching 100 000 retained messages;
 * - a client with 100 000 subscriptions unsubscribing them in one UNSUBSCRIBE, and another one
 *   disconnecting (its session ends);
 * - a session expiring with 100 000 queued messages;
 * - a /metrics scrape and `$SYS` updates with 100 000 sessions.
 * The state is made through the broker's API before the monitor starts; the work itself is set off
 * by a client, as in production.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { dlopen, ptr } from "bun:ffi";
import { encodePacket, PacketType } from "../../lib/codec";
import type { Message } from "../../lib/broker/message";
import { Session, type SubscriptionEntry } from "../../lib/broker/session";
import { rawSubscribe, receivePublishes, settle, useHarness, waitUntil } from "./helpers";

/**
 * The bound on the work between two ticks of the loop: the main thread's CPU time between them,
 * less what the test's own clients used. The broker's slices run SLICE_MS (1 ms) each, and a read
 * READ_SLICE_MS (2 ms), work a packet starts in slices ending with its read; what else runs in the
 * same turn (the flush, Bun's own I/O) and the garbage collector's pauses on this thread add to it
 * (BUN_JSC_logGC=1 shows pauses of 1-5 ms with the 100 000 retained messages in the heap): the
 * worst interval measured 3-5.5 ms in most runs, up to 10 ms now and then. Done in one go, each of
 * these operations holds the loop for 30 to 170 ms.
 */
const STALL_BOUND_MS = 10;
/**
 * The bound on the time between two ticks. On a shared 2-core machine an idle process's 1 ms timer
 * is itself late by up to about 12 ms at times, its thread not running (measured: a process holding
 * 100 000 retained messages and doing nothing saw 2-12 ms within 300 ms), so this one is 20 ms.
 */
const LATENESS_BOUND_MS = 20;

/**
 * A test of this file, tried up to three times: a garbage collection or another process on this
 * shared machine can hold one run past a bound now and then (seen at 20.5 and 32 ms of lateness),
 * while work done in one go holds the loop past it every time, so the retries do not hide it.
 */
function stallTest(name: string, fn: () => Promise<void>): void {
  test(name, fn, { retry: 2 });
}

/** CPU time of the calling thread in ms: clock_gettime(CLOCK_THREAD_CPUTIME_ID), through libc. */
const threadCpuMs = (() => {
  const libc = dlopen("libc.so.6", { clock_gettime: { args: ["i32", "ptr"], returns: "i32" } });
  const CLOCK_THREAD_CPUTIME_ID = 3;
  const ts = new BigInt64Array(2); // struct timespec: seconds, nanoseconds
  const at = ptr(ts);
  return (): number => {
    if (libc.symbols.clock_gettime(CLOCK_THREAD_CPUTIME_ID, at) !== 0) throw new Error("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    return Number(ts[0]) * 1000 + Number(ts[1]) / 1e6;
  };
})();

const N = 100_000;

const utf8 = new TextEncoder();
const message = (topic: string, payload = "v"): Message => ({ topic, topicBytes: utf8.encode(topic), payload: utf8.encode(payload), qos: 1, retain: true, properties: {}, expiresAt: 0, persisted: true, ownTopic: true, forms: null, formsShared: true });

/** CPU time the test's own clients used in this process (counted by asClient()), which is not the broker's work. */
let clientCpuMs = 0;

/** Runs a test client's handler, counting its CPU time in clientCpuMs. */
function asClient(handler: () => void): void {
  const began = threadCpuMs();
  try {
    handler();
  } finally {
    clientCpuMs += threadCpuMs() - began;
  }
}

/**
 * A 1 ms timer that records, between two of its ticks, the most CPU time the event loop's thread
 * used for the broker (the longest run of its work, what a client waits behind; the test's own
 * clients in this process are not counted) and the most time that passed (which also counts the
 * time the machine did not run this process at all).
 */
class StallMonitor {
  worstCpu = 0;
  worstLate = 0;
  private last = performance.now();
  private lastCpu = threadCpuMs() - clientCpuMs;
  private timer: Timer;
  constructor() {
    this.timer = setInterval(() => {
      const now = performance.now();
      const cpu = threadCpuMs() - clientCpuMs;
      this.worstLate = Math.max(this.worstLate, now - this.last - 1);
      this.worstCpu = Math.max(this.worstCpu, cpu - this.lastCpu);
      this.last = now;
      this.lastCpu = cpu;
    }, 1);
  }
  /** Stops it; returns the worst run of work and the worst lateness, in ms. */
  stop(): { cpu: number; late: number } {
    clearInterval(this.timer);
    return { cpu: this.worstCpu, late: this.worstLate };
  }
}

/**
 * A subscriber that only counts the frames it receives (fixed headers, no decoding): a decoding
 * client in this process would hold the event loop itself while 100 000 messages arrive.
 */
class CountingClient {
  frames = 0;
  private need = 0; // bytes left of the frame being skipped
  // the fixed header being read, without allocating (garbage made here is collected during the broker's work)
  private headerBytes = 0; // bytes of it read so far
  private length = 0; // its remaining length so far
  private multiplier = 1;
  private constructor(private socket: Socket<undefined>) {}

  static async connect(port: number): Promise<CountingClient> {
    let c!: CountingClient;
    const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data: (_s, d) => asClient(() => c.count(d)) } });
    c = new CountingClient(socket);
    socket.write(encodePacket({ type: PacketType.CONNECT, protocolVersion: 5, clientId: "counting", cleanStart: true, keepAlive: 0, username: null, password: null, will: null, properties: {} }, 5));
    await waitUntil(() => c.frames === 1, "the CONNACK");
    return c;
  }

  subscribe(filter: string): void {
    this.socket.write(encodePacket({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} }, 5));
  }

  private count(d: Uint8Array): void {
    let i = 0;
    while (i < d.length) {
      if (this.need > 0) {
        const take = Math.min(this.need, d.length - i);
        this.need -= take;
        i += take;
        if (this.need === 0) this.frames++;
        continue;
      }
      const b = d[i++]!;
      if (this.headerBytes++ === 0) continue; // the first byte: type and flags
      this.length += (b & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      if ((b & 0x80) === 0) {
        const rl = this.length;
        this.headerBytes = this.length = 0;
        this.multiplier = 1;
        if (rl === 0) this.frames++;
        else this.need = rl;
      }
    }
  }

  end(): void {
    this.socket.end();
  }
}

const { start } = useHarness();
let monitor: StallMonitor | null = null;
afterEach(() => {
  monitor?.stop();
  monitor = null;
});

/** Starts the monitor after a collection and a turn of the loop (the setup's own work is not measured). */
async function monitored(): Promise<StallMonitor> {
  Bun.gc(true);
  await new Promise((r) => setImmediate(r));
  return (monitor = new StallMonitor());
}

/** Asserts the bounds on the longest run of work and the worst lateness while the work went on. */
function expectBounded(m: StallMonitor): void {
  const { cpu, late } = m.stop();
  expect(cpu).toBeLessThan(STALL_BOUND_MS);
  expect(late).toBeLessThan(LATENESS_BOUND_MS);
}

/** Subscribes `session` to `n` filters through the broker's API. */
function subscribeMany(broker: import("../../lib/broker/broker").Broker, session: Session, n: number): void {
  for (let i = 0; i < n; i++) {
    const filter = `many/${i}/+`;
    const entry: SubscriptionEntry = { session, filter, qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined, shareName: null };
    broker.subscribe(session, filter, entry);
  }
}

describe(`the event loop is never held more than ${STALL_BOUND_MS} ms (the broker: SLICE_MS at a time)`, () => {
  stallTest(`a subscription matching ${N} retained messages: they are all sent, in slices`, async () => {
    const h = await start({ sysIntervalMs: 0, maxOutputBytes: 64 * 1024 * 1024, maxQueuedMessages: 2 * N });
    for (let i = 0; i < N; i++) h.broker.retain(message(`big/${i}`));
    h.broker.retain(message("other/1"));
    const sub = await CountingClient.connect(h.port);
    const m = await monitored();
    sub.subscribe("big/+");
    await waitUntil(() => sub.frames === N + 2 && h.broker.pendingSlices === 0, `the ${N} retained messages`); // CONNACK, SUBACK, the PUBLISHes
    expectBounded(m);
  });

  stallTest(`a client unsubscribing its ${N} filters, 1000 to an UNSUBSCRIBE, written at once`, async () => {
    const h = await start({ sysIntervalMs: 0 });
    const c = await h.connect({ clientId: "heavy" });
    subscribeMany(h.broker, h.broker.sessions.get("heavy")!, N);
    const packets = Array.from({ length: N / 1000 }, (_, p) =>
      encodePacket({ type: PacketType.UNSUBSCRIBE, packetId: p + 1, topicFilters: Array.from({ length: 1000 }, (_, i) => `many/${p * 1000 + i}/+`), properties: {} }, 5),
    );
    const all = new Uint8Array(packets.reduce((n, b) => n + b.length, 0));
    packets.reduce((at, b) => (all.set(b, at), at + b.length), 0);
    const m = await monitored();
    c.send(all);
    await c.next(PacketType.UNSUBACK, (p) => p.type === PacketType.UNSUBACK && p.packetId === N / 1000);
    expectBounded(m);
    expect(h.broker.router.normalCount).toBe(0);
  });

  stallTest("an UNSUBSCRIBE of 20 000 filters is done in slices, and the client's next packet waits for its UNSUBACK", async () => {
    const h = await start({ sysIntervalMs: 0 });
    const c = await h.connect({ clientId: "heavy" });
    subscribeMany(h.broker, h.broker.sessions.get("heavy")!, 20_000);
    c.send({ type: PacketType.UNSUBSCRIBE, packetId: 7, topicFilters: Array.from({ length: 20_000 }, (_, i) => `many/${i}/+`), properties: {} });
    c.send({ type: PacketType.SUBSCRIBE, packetId: 8, subscriptions: [{ topicFilter: "many/0/+", qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} });
    await waitUntil(() => h.broker.pendingSlices > 0 || h.broker.router.normalCount === 0, "the UNSUBSCRIBE begun");
    expect(h.broker.pendingSlices).toBe(1); // not all in one go
    const unsuback = await c.next(PacketType.UNSUBACK);
    expect(unsuback.type === PacketType.UNSUBACK && unsuback.reasonCodes.every((r) => r === 0) && unsuback.reasonCodes.length).toBe(20_000);
    await c.next(PacketType.SUBACK);
    expect([...h.broker.sessions.get("heavy")!.subscriptions.keys()]).toEqual(["many/0/+"]); // handled after the UNSUBSCRIBE, in order
    expect(h.broker.router.normalCount).toBe(1);
  });

  stallTest(`a client with ${N} subscriptions disconnecting: its session ends, the subscriptions go in slices and match nothing meanwhile`, async () => {
    const h = await start({ sysIntervalMs: 0 });
    const c = await h.connect({ clientId: "heavy" });
    const pub = await h.connect({ clientId: "pub" });
    subscribeMany(h.broker, h.broker.sessions.get("heavy")!, N);
    const m = await monitored();
    c.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    await waitUntil(() => !h.broker.sessions.has("heavy"), "the session ended");
    expect(h.broker.match("many/5/x").deliveries).toEqual([]);
    await waitUntil(() => h.broker.router.normalCount === 0 && h.broker.pendingSlices === 0, "its subscriptions are gone");
    await settle(pub);
    expectBounded(m);
    expect(h.broker.trie.size).toBe(0);
  });

  stallTest(`a session expiring with ${N} queued messages`, async () => {
    const h = await start({ sysIntervalMs: 0 });
    const c = await h.connect({ clientId: "queued", cleanStart: true, properties: { sessionExpiryInterval: 1 } });
    const session = h.broker.sessions.get("queued")!;
    c.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
    await waitUntil(() => !session.connected, "offline");
    for (let i = 0; i < N; i++) session.enqueue({ message: message(`q/${i}`), qos: 1, retain: false, subscriptionIds: null }, Infinity, Infinity);
    expect(session.queued).toBe(N);
    const m = await monitored();
    await waitUntil(() => !h.broker.sessions.has("queued"), "the session expired", 5000);
    expectBounded(m);
    expect(session.queued).toBe(0);
  });

  stallTest(`a /metrics scrape and $SYS updates with ${N} sessions`, async () => {
    const h = await start({ sysIntervalMs: 20, http: { host: "127.0.0.1", port: 0 } });
    for (let i = 0; i < N; i++) {
      const s = new Session(`s${i}`);
      s.expiryInterval = 0xffffffff;
      h.broker.sessions.set(s.clientId, s);
    }
    const sub = await h.connect({ clientId: "sys" });
    const m = await monitored();
    const body = await (await fetch(`http://127.0.0.1:${h.broker.httpPort}/metrics`)).text();
    expect(body).toContain(`mqtttools_sessions{state="offline"} ${N}`);
    expect(await rawSubscribe(sub, "$SYS/broker/clients/total", 0)).toBe(0);
    const [first] = await receivePublishes(sub, 1);
    expect(new TextDecoder().decode(first!.payload)).toBe(String(N + 1));
    expectBounded(m);
  });
});
