/**
 * Overload protection: what the broker does when descriptors, the connection rate or memory run out.
 *
 * Descriptors. At start the soft limit is raised to the hard one where the runtime allows, and a
 * warning is logged when it is below maxConnections + fdReserve. Sockets are counted from accept
 * to close; one over `limit - fdReserve` is refused (see Refusal), so connections alone never
 * take the process to EMFILE.
 *
 * Something else can still take the last descriptor (the application's own files, in the same
 * process). Bun 1.4's listener then spins: accept() fails with EMFILE, the connection stays in
 * the backlog, and the level-triggered poll wakes the loop again at once, at 100 % of a core. No
 * error reaches JavaScript. So a timer probes every PROBE_MS whether a descriptor can be opened;
 * when none can, the listeners are closed (new clients get "connection refused" from the kernel at
 * once, existing connections go on) and re-opened on the same ports once DESCRIPTORS_TO_RESUME
 * are free, trying after a back-off that doubles up to BACKOFF_MAX_MS. A spin lasts at most one
 * probe interval. Each episode is logged when it starts and ends, and at most once a LOG_INTERVAL_MS
 * in between.
 *
 * Connection rate: each listener has a token bucket (TokenBucket) of maxConnectionRate a second;
 * a connection that finds it empty is closed at once.
 *
 * Memory: the same timer samples RSS and heap (MemoryGuard). Above maxMemoryBytes new connections
 * are refused with CONNACK 0x97 and QoS 0 deliveries are dropped and counted (shedQos0(), which
 * also samples again after every bound / 64 bytes delivered); below
 * the low-water mark service resumes. `memoryPressure` is the flag publisher flow control consults
 * (Outbox.holdForMemory), and `onRelieved` is called when the pressure is over.
 */
import type { BrokerOptions } from "../options";
import { freeDescriptors, raiseDescriptorLimit, type DescriptorLimit } from "./descriptors";
import { defaultMemoryBound, MemoryGuard, sampleMemory } from "./memory";

/** How often descriptors and memory are sampled. */
const PROBE_MS = 100;
/** First wait before re-opening the listeners after descriptors ran out. */
const BACKOFF_MIN_MS = 250;
/** Longest wait between attempts to re-open them. */
const BACKOFF_MAX_MS = 2000;
/** Free descriptors needed before the listeners are re-opened (one goes to each listener). */
const DESCRIPTORS_TO_RESUME = 8;
/** Running this long without running out again resets the back-off. */
const HEALTHY_MS = 10_000;
/** Least time between two log lines about the same ongoing condition. */
const LOG_INTERVAL_MS = 10_000;

/** A listener that can stop accepting and start again on the same address. */
export interface PausableListener {
  /** Closes the listening socket; connections already accepted go on. */
  pause(): void;
  /** Listens again on the same address; false (and still paused) when it cannot yet. */
  resume(): boolean;
  /** host:port, for logs. */
  describe(): string;
}

/** Why a new connection is refused: `answer` when it gets a CONNACK if its CONNECT comes in time. */
export interface Refused {
  reason: string;
  answer: boolean;
}

/** What overload protection did, for `$SYS` and metrics. */
export interface OverloadCounters {
  /** Connections closed at once because their listener was over maxConnectionRate. */
  refusedRate: number;
  /** Connections refused because the socket count was at the descriptor bound. */
  refusedDescriptors: number;
  /** Connections refused under memory pressure. */
  refusedMemory: number;
  /** QoS 0 deliveries dropped under memory pressure. */
  droppedQos0: number;
  /** Times the listeners were closed because the process ran out of descriptors. */
  listenerPauses: number;
}

type Log = (level: "debug" | "info" | "warning" | "error", line: string) => void;

/** The broker's overload state: descriptor bound and watch, memory pressure, counters. */
export class Overload {
  readonly counters: OverloadCounters = { refusedRate: 0, refusedDescriptors: 0, refusedMemory: 0, droppedQos0: 0, listenerPauses: 0 };
  /** Sockets open, accepted and not yet closed (refused ones included). */
  sockets = 0;
  /** Refused sockets still waiting for their CONNECT. */
  refusing = 0;
  /** The descriptor limit read at start; null when unknown. */
  limit: DescriptorLimit | null = null;
  /** Most sockets open at once: the descriptor limit less fdReserve (Infinity when the limit is unknown). */
  socketBound = Infinity;
  /** The memory bound in force (maxMemoryBytes, or the default computed at start); 0: none. */
  memoryBound = 0;
  private memory: MemoryGuard | null = null;
  /** Bytes of QoS 0 deliveries since memory was last sampled, and how many trigger a sample. */
  private unsampled = 0;
  private sampleEvery = Infinity;
  private listeners: PausableListener[] = [];
  private timer: Timer | null = null;
  private paused = false;
  private pausedAt = 0;
  private resumedAt = 0;
  private backoff = BACKOFF_MIN_MS;
  private nextTry = 0;
  private lastLog = -Infinity;
  private pausesUnlogged = 0;
  /** Whether the current pause was logged (then so is its end). */
  private pauseLogged = false;

  /** Called once memory falls below the low-water mark again (the broker lets held publishers go on). */
  onRelieved: () => void = () => {};

  constructor(
    private readonly options: BrokerOptions,
    private readonly log: Log,
  ) {}

  /** Connections refused before CONNECT, by reason (for /metrics). */
  refusedCounts(): Record<string, number> {
    const c = this.counters;
    return { connection_rate: c.refusedRate, descriptors: c.refusedDescriptors, memory: c.refusedMemory };
  }

  /** True while memory is above the bound (until it falls below the low-water mark): publishers should be slowed. */
  get memoryPressure(): boolean {
    return this.memory?.pressure ?? false;
  }

  /** True while the listeners are closed because the process ran out of descriptors. */
  get acceptPaused(): boolean {
    return this.paused;
  }

  /** Reads (and raises) the descriptor limit and warns when it is low; then samples memory (and, once watch() is called, descriptors) on a timer. */
  start(): void {
    const { limit, failed } = raiseDescriptorLimit();
    this.limit = limit;
    const reserve = this.options.fdReserve;
    if (limit !== null && Number.isFinite(limit.soft)) {
      this.socketBound = Math.max(0, limit.soft - reserve);
      if (failed !== null && limit.soft < limit.hard) this.log("warning", `could not raise the file descriptor limit from ${limit.soft} to ${limit.hard}: ${failed}`);
      if (this.socketBound < this.options.maxConnections) {
        this.log(
          "warning",
          `the process may open ${limit.soft} file descriptors, fewer than maxConnections (${this.options.maxConnections}) + fdReserve (${reserve}): ` +
            `at most ${this.socketBound} clients can connect. Raise the limit with 'ulimit -n N' in the shell that starts the broker, ` +
            `LimitNOFILE=N in its systemd unit, or 'docker run --ulimit nofile=N:N'`,
        );
      }
    }
    const bound = this.options.maxMemoryBytes;
    this.memoryBound = bound === null ? defaultMemoryBound() : bound;
    this.memory = this.memoryBound > 0 ? new MemoryGuard(this.memoryBound) : null;
    this.sampleEvery = Math.max(256 * 1024, this.memoryBound / 64);
    this.checkMemory(); // a broker that starts above its bound refuses from the first client on
    this.timer = setInterval(() => this.tick(), PROBE_MS);
    this.timer.unref();
  }

  /** The listeners to pause when the process runs out of descriptors, and to resume. */
  watch(listeners: PausableListener[]): void {
    this.listeners = listeners;
  }

  /** Stops the timer. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.listeners = [];
    this.paused = false;
  }

  /**
   * Decides on a socket just accepted (already counted in `sockets`): null lets it in; otherwise
   * why it is refused. `rateOk` is false when its listener's token bucket was empty.
   */
  admit(rateOk: boolean): Refused | null {
    if (!rateOk) {
      this.counters.refusedRate++;
      return { reason: "too many connections per second", answer: false };
    }
    // refused sockets waiting for CONNECT may use half the reserve (at least 4); past that they are closed at once
    const answer = this.refusing < Math.max(4, this.options.fdReserve / 2);
    if (this.sockets > this.socketBound) {
      this.counters.refusedDescriptors++;
      return { reason: "too many connections: the broker is at its file descriptor limit", answer };
    }
    if (this.memory?.pressure) {
      this.counters.refusedMemory++;
      return { reason: "the broker is short of memory", answer };
    }
    return null;
  }

  /**
   * A QoS 0 delivery of `bytes` is about to be made: true (and counted) when it is to be dropped
   * for memory. Besides the timer, memory is sampled again after every `bound / 64` bytes of
   * deliveries (4 us a sample), so a flood cannot outrun the timer by hundreds of megabytes.
   */
  shedQos0(bytes: number): boolean {
    const m = this.memory;
    if (m === null) return false;
    this.unsampled += bytes;
    if (this.unsampled >= this.sampleEvery) this.checkMemory();
    if (!m.pressure) return false;
    this.counters.droppedQos0++;
    return true;
  }

  /** Samples memory and descriptors; pauses or resumes the listeners. */
  private tick(): void {
    const now = performance.now();
    if (!this.paused) {
      if (this.listeners.length > 0 && freeDescriptors(1) === 0) this.pauseListeners(now);
    } else if (now >= this.nextTry) {
      this.tryResume(now);
    }
    this.checkMemory();
  }

  private checkMemory(): void {
    const m = this.memory;
    if (m === null) return;
    this.unsampled = 0;
    let sample;
    try {
      sample = sampleMemory(); // reads /proc/self/statm: fails when no descriptor is free
    } catch {
      return; // keep the state of the last sample
    }
    const change = m.sample(sample);
    if (change === null) return;
    const mb = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
    const state = `RSS ${mb(m.last.rss)}, heap ${mb(m.last.heap)}`;
    if (change === "high") this.log("warning", `memory pressure: ${state} reached maxMemoryBytes (${mb(m.high)}): refusing new connections, dropping QoS 0 deliveries and holding publishers back`);
    else {
      this.log("warning", `memory pressure over: ${state} is below the low-water mark (${mb(m.low)}): normal service resumes (${this.counters.droppedQos0} QoS 0 deliveries dropped so far)`);
      this.onRelieved();
    }
  }

  private pauseListeners(now: number): void {
    for (const l of this.listeners) l.pause();
    this.paused = true;
    this.pausedAt = now;
    this.counters.listenerPauses++;
    if (now - this.resumedAt > HEALTHY_MS) this.backoff = BACKOFF_MIN_MS;
    this.nextTry = now + this.backoff;
    if (now - this.lastLog >= LOG_INTERVAL_MS) {
      const again = this.pausesUnlogged > 0 ? ` (it ran out ${this.pausesUnlogged} more times since the last line)` : "";
      this.log("warning", `out of file descriptors${this.limitText()}: stopped accepting connections on ${this.where()} until some are free${again}; connected clients are served`);
      this.lastLog = now;
      this.pausesUnlogged = 0;
      this.pauseLogged = true;
    } else {
      this.pausesUnlogged++;
      this.pauseLogged = false;
    }
  }

  private tryResume(now: number): void {
    if (freeDescriptors(DESCRIPTORS_TO_RESUME) >= DESCRIPTORS_TO_RESUME) {
      const failed = this.listeners.filter((l) => !l.resume());
      if (failed.length === 0) {
        this.paused = false;
        this.resumedAt = now;
        this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS); // reset once it has stayed up HEALTHY_MS
        if (this.pauseLogged) this.log("warning", `file descriptors are free again: accepting connections on ${this.where()} after ${Math.round(now - this.pausedAt)} ms`);
        return;
      }
      for (const l of this.listeners) if (!failed.includes(l)) l.pause();
    }
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.nextTry = now + this.backoff;
    if (now - this.lastLog >= LOG_INTERVAL_MS) {
      this.log("warning", `still out of file descriptors${this.limitText()}: not accepting connections on ${this.where()} for ${Math.round((now - this.pausedAt) / 1000)} s`);
      this.lastLog = now;
    }
  }

  private limitText(): string {
    return this.limit === null ? "" : ` (limit ${this.limit.soft}, ${this.sockets} of them client sockets)`;
  }

  private where(): string {
    return this.listeners.map((l) => l.describe()).join(", ");
  }
}
