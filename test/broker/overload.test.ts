/**
 * Overload protection, black-box against broker processes spawned with a low descriptor limit
 * (`ulimit -n 256` in a child shell): connections over the descriptor limit, descriptors taken by
 * something else in the broker's process, a connection storm against maxConnectionRate, and a
 * publisher flood against maxMemoryBytes. CPU is read from /proc/PID/stat, memory from
 * /proc/PID/status.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { encodePacket, PacketType, ReasonCode, type ProtocolVersion } from "../../lib/codec";
import { startBrokerProcess, entry, type BrokerProcess } from "../cli/broker-process";
import { connectPacket, nextPublish, publishPacket, rawSubscribe, RawClient, text, waitUntil, writeAll } from "./helpers";

const SCRIPT = new URL("./overload-broker.ts", import.meta.url).pathname;
const CLK_TCK = 100;

const running: BrokerProcess[] = [];
const sockets: Socket<unknown>[] = [];
const raws: RawClient[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  for (const c of raws.splice(0)) if (!c.isClosed) c.end();
  for (const b of running.splice(0)) if (b.proc.exitCode === null) await b.stop();
});

/** Runs the CLI broker (or, with `script`, test/broker/overload-broker.ts) under `ulimit -n nofile`. */
async function limited(nofile: number, args: string[], env: Record<string, string> = {}, script = false): Promise<BrokerProcess> {
  const cmd = ["env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), "sh", "-c", `ulimit -n ${nofile}; exec "$0" "$@"`, process.execPath, script ? SCRIPT : entry];
  const b = await startBrokerProcess(script ? args : ["broker", "--host", "127.0.0.1", "--port", "0", ...args], cmd);
  running.push(b);
  return b;
}

/** CPU time (user + system) of a process so far, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Bun.file(`/proc/${pid}/stat`).text();
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // from field 3 (state) on
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime: fields 14 and 15
}

/** Share of one core a process used over the next `ms` (what it does then is up to the caller). */
async function cpuShare(pid: number, ms: number, during: () => Promise<void> = async () => {}): Promise<number> {
  const c0 = await cpuSeconds(pid);
  const t0 = performance.now();
  const window = Bun.sleep(ms); // the measuring window the issue asks for, not a wait for a condition
  await during();
  await window;
  return (await cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000);
}

/** Resident set size of a process, in bytes. */
async function rss(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await Bun.file(`/proc/${pid}/status`).text());
  return Number(m![1]) * 1024;
}

/** How one connection attempt ended. */
interface Attempt {
  /** accepted: CONNACK 0; refused: CONNACK with a refusal code; closed: closed with no CONNACK; failed: the TCP connect itself failed. */
  outcome: "accepted" | "refused" | "closed" | "failed";
  /** The CONNACK's reason code (return code at 3.1.1), when one came. */
  code: number | null;
  /** Milliseconds from the start of the attempt to its outcome. */
  ms: number;
}

/**
 * Opens a connection, sends CONNECT at once, and resolves with how it ended. An accepted one stays
 * open (closed in afterEach).
 */
async function attempt(port: number, version: ProtocolVersion = 5, clientId = ""): Promise<Attempt> {
  const t0 = performance.now();
  const { promise, resolve } = Promise.withResolvers<Attempt>();
  const done = (outcome: Attempt["outcome"], code: number | null) => resolve({ outcome, code, ms: performance.now() - t0 });
  let got = new Uint8Array(0);
  try {
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, data) => {
          const joined = new Uint8Array(got.length + data.length);
          joined.set(got);
          joined.set(data, got.length);
          got = joined;
          if (got.length >= 4 && got[0] === 0x20) done(got[3] === 0 ? "accepted" : "refused", got[3]!); // CONNACK: the code is its fourth byte
        },
        close: () => done("closed", null),
        error: () => done("closed", null),
      },
    });
    sockets.push(socket);
    socket.write(encodePacket(connectPacket({ protocolVersion: version, clientId }), version));
  } catch {
    done("failed", null);
  }
  return promise;
}

/** Connects a raw client (closed in afterEach). */
async function raw(port: number, clientId: string): Promise<RawClient> {
  const c = await RawClient.connect(port, { clientId });
  raws.push(c);
  return c;
}

/** A QoS 1 PUBLISH from `pub` on `topic` arrives at `sub`, and `pub` gets its PUBACK. */
async function roundTripPair(pub: RawClient, sub: RawClient, topic: string, n: number): Promise<void> {
  pub.send(publishPacket(topic, `m${n}`, { qos: 1, packetId: 1 + (n % 60000) }));
  const [got] = await Promise.all([nextPublish(sub, topic), pub.next(PacketType.PUBACK)]);
  expect(text(got.payload)).toBe(`m${n}`);
  sub.send({ type: PacketType.PUBACK, packetId: got.packetId, reasonCode: 0, properties: {} });
}

/**
 * Keeps `pub` and `sub` round-tripping, one every 25 ms (a heartbeat, light enough not to count in
 * the broker's CPU), until `until` resolves; resolves with the slowest round trip in ms and their number.
 */
async function keepRoundTripping(pub: RawClient, sub: RawClient, until: Promise<unknown>): Promise<{ count: number; slowest: number }> {
  let stop = false;
  void until.then(() => (stop = true));
  let count = 0;
  let slowest = 0;
  while (!stop) {
    const t0 = performance.now();
    await roundTripPair(pub, sub, "pair", count++);
    slowest = Math.max(slowest, performance.now() - t0);
    await Bun.sleep(25); // pacing
  }
  return { count, slowest };
}

/** Tries to connect (CONNECT accepted) until it succeeds; fails after `ms`. */
async function connectEventually(port: number, ms: number): Promise<Attempt> {
  const deadline = performance.now() + ms;
  for (;;) {
    const a = await attempt(port);
    if (a.outcome === "accepted") return a;
    if (performance.now() > deadline) throw new Error(`no connection accepted within ${ms} ms (last: ${JSON.stringify(a)})`);
    await Bun.sleep(50);
  }
}

/** Percentile of a list of numbers. */
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

describe("the descriptor limit (ulimit -n 256)", () => {
  test("more clients than descriptors: the excess is refused with CONNACK 0x97, no spin (< 20 % of a core over 2 s), a new client is refused at once, the pair keeps its round trip, and after the extras leave clients connect again", async () => {
    const b = await limited(256, []);
    const port = b.ports[0]!;
    const pid = b.proc.pid;
    const sub = await raw(port, "sub");
    expect(await rawSubscribe(sub, "pair", 1)).toBe(1); // granted QoS 1
    const pub = await raw(port, "pub");
    await roundTripPair(pub, sub, "pair", 0);

    const extras = await Promise.all(Array.from({ length: 300 }, (_, i) => attempt(port, i % 2 === 0 ? 5 : 4)));
    const accepted = extras.filter((a) => a.outcome === "accepted").length;
    const refused = extras.filter((a) => a.outcome !== "accepted");
    console.log(`300 extra clients: ${accepted} accepted, ${refused.length} refused (${refused.filter((a) => a.outcome === "refused").length} with CONNACK); refusal p50 ${pct(refused.map((a) => a.ms), 50).toFixed(1)} ms, max ${pct(refused.map((a) => a.ms), 100).toFixed(1)} ms`);
    expect(accepted + 2).toBeLessThanOrEqual(256 - 64); // the limit less fdReserve
    expect(accepted).toBeGreaterThan(100);
    extras.forEach((a, i) => {
      // [MQTT-3.2.2-7] a refusing CONNACK, then the close: 0x97 Quota Exceeded at v5, 0x03 Server Unavailable at 3.1.1
      if (a.outcome === "refused") expect(a.code).toBe(i % 2 === 0 ? ReasonCode.QuotaExceeded : 0x03);
      else expect(a.outcome === "accepted" || a.outcome === "closed").toBe(true);
    });

    const window = Promise.withResolvers<void>();
    const share = cpuShare(pid, 2000).finally(() => window.resolve());
    const trips = await keepRoundTripping(pub, sub, window.promise);
    console.log(`broker CPU over 2 s at the limit: ${((await share) * 100).toFixed(1)} % of a core; ${trips.count} pair round trips meanwhile, the slowest ${trips.slowest.toFixed(1)} ms`);
    expect(await share).toBeLessThan(0.2);
    expect(trips.count).toBeGreaterThan(0);

    const late = await attempt(port);
    console.log(`a new client at the limit: ${late.outcome} (code ${late.code}) after ${late.ms.toFixed(1)} ms`);
    expect(late.outcome === "refused" ? late.code : late.outcome).toBe(ReasonCode.QuotaExceeded);
    expect(late.ms).toBeLessThan(100); // as the issue asks (measured well under 1 ms): refused, not hung

    for (const s of sockets.splice(0)) s.end();
    const back = await connectEventually(port, 5000);
    console.log(`after the extras left, a new client connected in ${back.ms.toFixed(1)} ms`);
    await roundTripPair(pub, sub, "pair", 1);
  });
});

describe("something else holds the descriptors (ulimit -n 256)", () => {
  test("the broker's process opens files until EMFILE: no spin (< 20 % of a core over 2 s), new clients are refused at once, the pair keeps its round trip, and once the files are closed clients connect again", async () => {
    const b = await limited(256, [], {}, true);
    const port = b.ports[0]!;
    const sub = await raw(port, "sub");
    expect(await rawSubscribe(sub, "pair", 1)).toBe(1); // granted QoS 1
    const pub = await raw(port, "pub");
    await roundTripPair(pub, sub, "pair", 0);

    b.proc.kill("SIGUSR1");
    await b.waitStderr(/holding \d+ descriptors \(EMFILE\)/);
    const refused = await Promise.all(Array.from({ length: 20 }, () => attempt(port)));
    console.log(`20 clients at EMFILE: ${refused.filter((a) => a.outcome === "closed").length} closed, ${refused.filter((a) => a.outcome === "failed").length} refused by the kernel; the slowest after ${pct(refused.map((a) => a.ms), 100).toFixed(1)} ms`);
    for (const a of refused) {
      expect(a.outcome).not.toBe("accepted");
      expect(a.ms).toBeLessThan(1000); // refused, not hung until the client's own timeout
    }
    await b.waitStderr(/out of file descriptors .*stopped accepting connections on 127\.0\.0\.1:\d+/);

    const window = Promise.withResolvers<void>();
    const share = cpuShare(b.proc.pid, 2000, async () => {
      await Promise.all(Array.from({ length: 20 }, () => attempt(port))); // knocking while it is out of descriptors
    }).finally(() => window.resolve());
    const trips = await keepRoundTripping(pub, sub, window.promise);
    console.log(`broker CPU over 2 s at EMFILE: ${((await share) * 100).toFixed(1)} % of a core; ${trips.count} pair round trips meanwhile, the slowest ${trips.slowest.toFixed(1)} ms`);
    expect(await share).toBeLessThan(0.2);
    expect(trips.count).toBeGreaterThan(0);

    b.proc.kill("SIGUSR2");
    await b.waitStderr(/released/);
    const back = await connectEventually(port, 10_000);
    console.log(`after the files were closed, a client connected (its attempt took ${back.ms.toFixed(1)} ms)`);
    await b.waitStderr(/file descriptors are free again: accepting connections on 127\.0\.0\.1:\d+ after \d+ ms/);
    await roundTripPair(pub, sub, "pair", 1);
    expect(b.stderr().match(/out of file descriptors/g)?.length).toBe(1); // logged once, not per attempt
  });
});

describe("a connection storm", () => {
  test("5000 connects at once against maxConnectionRate 500: the excess is closed at once, the rest connect, within the bucket's rate", async () => {
    const RATE = 500;
    const b = await limited(8192, ["--max-connection-rate", String(RATE)]);
    const port = b.ports[0]!;
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 5000 }, (_, i) => attempt(port, i % 2 === 0 ? 5 : 4)));
    const elapsed = (performance.now() - t0) / 1000;
    const accepted = results.filter((a) => a.outcome === "accepted");
    const refused = results.filter((a) => a.outcome !== "accepted");
    const ms = refused.map((a) => a.ms);
    console.log(
      `storm of 5000 in ${elapsed.toFixed(2)} s: ${accepted.length} connected (p50 ${pct(accepted.map((a) => a.ms), 50).toFixed(0)} ms), ` +
        `${refused.length} refused (${refused.filter((a) => a.outcome === "failed").length} by the kernel) in p50 ${pct(ms, 50).toFixed(0)} ms, p99 ${pct(ms, 99).toFixed(0)} ms, max ${pct(ms, 100).toFixed(0)} ms`,
    );
    expect(accepted.length).toBeGreaterThanOrEqual(RATE); // the bucket starts full
    expect(accepted.length).toBeLessThanOrEqual(RATE + RATE * elapsed + 1);
    for (const a of refused) expect(a.outcome).toBe("closed"); // closed, no CONNACK: it never sent CONNECT as far as the broker is concerned
    expect(pct(ms, 100)).toBeLessThan(5000); // far below the 10 s connect timeout: refused, not left hanging
    const later = await connectEventually(port, 5000);
    expect(later.outcome).toBe("accepted");
  });
});

/** A raw connection for bulk traffic: writes wait for `drain`, and reading can be paused (a slow consumer). */
class BulkClient {
  private drainWaiter: (() => void) | null = null;
  private socket!: Socket<undefined>;
  readonly connack = Promise.withResolvers<number>();
  readonly suback = Promise.withResolvers<void>();

  /** Connects and completes CONNECT/CONNACK (v5). */
  static async connect(port: number, clientId: string): Promise<BulkClient> {
    const c = new BulkClient();
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, data) => {
          if (data[0] === 0x20) c.connack.resolve(data[3]!);
          if (data[0] === 0x90) c.suback.resolve();
        },
        drain: () => {
          const w = c.drainWaiter;
          c.drainWaiter = null;
          w?.();
        },
      },
    });
    sockets.push(c.socket as Socket<unknown>);
    await c.write(encodePacket(connectPacket({ clientId }), 5));
    if ((await c.connack.promise) !== 0) throw new Error(`${clientId} was refused`);
    return c;
  }

  /** Subscribes to `filter` at QoS 0 and waits for the SUBACK. */
  async subscribe(filter: string): Promise<void> {
    await this.write(encodePacket({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 }], properties: {} }, 5));
    await this.suback.promise;
  }

  /** Writes all of `bytes`, waiting for `drain` whenever the kernel takes only part. */
  write(bytes: Uint8Array): Promise<void> {
    return writeAll(this.socket, bytes, () => new Promise<void>((resolve) => (this.drainWaiter = resolve)));
  }

  /** Stops reading: the broker's output to this client grows. */
  pause(): void {
    this.socket.pause();
  }

  /** Closes the socket at once. */
  terminate(): void {
    this.socket.terminate();
  }
}

describe("memory pressure", () => {
  test("a publisher flood to subscribers that stopped reading, against a low maxMemoryBytes: RSS stays near the bound, the transitions are logged, new clients get 0x97, publishers are held back until the pressure is over, and no acknowledged QoS 1 message is lost", async () => {
    const HEADROOM = 64 * 1024 * 1024;
    const b = await limited(1024, [], { OVERLOAD_MEMORY_HEADROOM: String(HEADROOM), OVERLOAD_OPTIONS: JSON.stringify({ maxOutputBytes: 2 ** 30 }) }, true);
    const port = b.ports[0]!;
    const pid = b.proc.pid;
    const bound = (await rss(pid)) + HEADROOM; // about what the broker set (its RSS at start + the headroom)

    const slow = await Promise.all(Array.from({ length: 4 }, (_, i) => BulkClient.connect(port, `slow-${i}`)));
    for (const s of slow) await s.subscribe("flood");
    for (const s of slow) s.pause();
    const reliable = await raw(port, "reliable");
    expect(await rawSubscribe(reliable, "acked", 1)).toBe(1);
    const acker = await raw(port, "acker");
    const flooder = await BulkClient.connect(port, "flooder");

    // the acknowledged publisher: one QoS 1 message at a time, counted once its PUBACK came
    const acked: string[] = [];
    const received = new Set<string>();
    let flooding = true;
    const ackLoop = (async () => {
      for (let n = 0; flooding; n++) {
        acker.send(publishPacket("acked", `a${n}`, { qos: 1, packetId: 1 + (n % 60000) }));
        const ack = await acker.next(PacketType.PUBACK);
        if (ack.type === PacketType.PUBACK && ack.reasonCode < 0x80) acked.push(`a${n}`);
      }
    })();
    const receiveLoop = (async () => {
      for (;;) {
        const p = await nextPublish(reliable, "acked");
        reliable.send({ type: PacketType.PUBACK, packetId: p.packetId, reasonCode: 0, properties: {} });
        received.add(text(p.payload));
      }
    })();
    void receiveLoop.catch(() => {});

    // the flood: 64 KiB QoS 0 messages, 4 copies of each kept for the subscribers that do not read
    let maxRss = 0;
    const sampling = setInterval(() => void rss(pid).then((r) => (maxRss = Math.max(maxRss, r)), () => {}), 20);
    const packet = encodePacket(publishPacket("flood", new Uint8Array(64 * 1024)), 5);
    const batch = new Uint8Array(packet.length * 16);
    for (let i = 0; i < 16; i++) batch.set(packet, i * packet.length);
    let refusedUnderPressure: Attempt | null = null;
    // under pressure the flooder is held back (not read), so a write of it may never finish: the flood ends there
    const pressure = b.waitStderr(/memory pressure: /);
    let underPressure = false;
    void pressure.then(() => (underPressure = true), () => {});
    for (let sent = 0; sent < 512 * 1024 * 1024 && !underPressure; sent += batch.length) await Promise.race([flooder.write(batch), pressure]);
    await pressure;
    refusedUnderPressure = await attempt(port);
    await b.waitStderr(/memory pressure: holding publishers back/);
    const ackedUnderPressure = acked.length;
    console.log(`broker RSS peaked at ${(maxRss / 1048576).toFixed(0)} MiB so far against a bound of about ${(bound / 1048576).toFixed(0)} MiB; ${ackedUnderPressure} QoS 1 messages acknowledged`);
    expect(refusedUnderPressure.outcome === "refused" ? refusedUnderPressure.code : refusedUnderPressure.outcome).toBe(ReasonCode.QuotaExceeded);
    // nothing acknowledged is lost
    await waitUntil(() => acked.every((m) => received.has(m)), `every acknowledged message arrived (${acked.filter((m) => !received.has(m)).length} missing)`);

    // the slow subscribers leave: their output is freed, memory falls below the low-water mark,
    // and the publishers held back go on: the acknowledged publisher gets its PUBACKs again
    for (const s of slow) s.terminate();
    await b.waitStderr(/memory pressure over: RSS .* is below the low-water mark/);
    await b.waitStderr(/memory pressure over: \d+ publisher\(s\) held back go on/);
    await waitUntil(() => acked.length > ackedUnderPressure + 10, "the held publisher's messages are acknowledged again");
    clearInterval(sampling);
    console.log(`broker RSS peaked at ${(maxRss / 1048576).toFixed(0)} MiB over the whole run`);
    // near the bound over the whole run, the hold included (without it: 4 x 512 MiB). The overshoot
    // is the output buffers' growth by doubling between two samples, and old buffers not yet collected
    expect(maxRss).toBeLessThan(bound + 32 * 1024 * 1024);
    flooding = false;
    await ackLoop;
    await waitUntil(() => acked.every((m) => received.has(m)), `every acknowledged message arrived (${acked.filter((m) => !received.has(m)).length} missing)`);
    console.log(b.stderr().split("\n").filter((l) => l.includes("memory pressure")).join("\n"));
    const after = await attempt(port);
    expect(after.outcome).toBe("accepted");
  });
});
