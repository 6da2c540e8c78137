/**
 * BrokerThread: the same Broker, running in a Bun Worker, so that the thread that made it stays
 * free (or busy) while the broker serves. start() resolves once the Worker's listeners are bound;
 * stop() disconnects every client and ends the Worker. Errors inside the Worker reject start()
 * with the class and message the main thread would have got.
 */
import type { BrokerInit } from "../broker/broker";
import type { Address, Addresses } from "../broker/options";
import type { RecoveryReport } from "../broker/store/journal";
import { deserializeError, type FromWorker, type ToWorker } from "./messages";

/**
 * The Worker's module. From source it is the file next to this one; in the compiled executable,
 * where `bun run build` lists it as a second entrypoint, it is found by its path in the bundle.
 */
function workerUrl(): string | URL {
  const here = new URL("./worker.ts", import.meta.url);
  return import.meta.url.includes("$bunfs") ? "./lib/thread/worker.ts" : here;
}

/** Copies what cannot be posted to a Worker: Blobs (Bun.file()) in TLS options become their bytes. */
async function postable(value: unknown): Promise<unknown> {
  if (value instanceof Blob) return await value.bytes();
  if (Array.isArray(value)) return Promise.all(value.map(postable));
  if (value !== null && typeof value === "object" && !ArrayBuffer.isView(value) && !(value instanceof ArrayBuffer)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = await postable(v);
    return out;
  }
  return value;
}

/** An MQTT broker in a Bun Worker: `new BrokerThread(addresses, options)` takes what `Broker` takes. */
export class BrokerThread {
  /** The HTTP endpoint's bound port while started (options.http), else null. */
  httpPort: number | null = null;
  /** The bound ports, in address order, while started. */
  ports: number[] = [];
  /** What start() restored from the persistence file, null without one. */
  recovery: RecoveryReport | null = null;
  private worker: Worker | null = null;
  private reply: { expect: "started" | "stopped"; resolve: (m: FromWorker) => void; reject: (e: Error) => void } | null = null;
  private ended: PromiseWithResolvers<void> | null = null;
  private stopped: PromiseWithResolvers<void> | null = null;
  /** The start() under way, if any. */
  private starting: Promise<number[]> | null = null;
  /** Why the Worker ended without stop(), if it did. */
  private failure: Error | null = null;

  constructor(
    readonly addresses: Addresses = "localhost",
    private readonly options: BrokerInit = {},
  ) {}

  /** Starts the Worker and its listeners; resolves with the bound ports, in address order. */
  start(): Promise<number[]> {
    if (this.worker !== null || this.starting !== null) return Promise.reject(new Error("the broker is already started"));
    const starting = this.launch().finally(() => {
      this.starting = null;
    });
    this.starting = starting;
    return starting;
  }

  private async launch(): Promise<number[]> {
    this.failure = null;
    const { logger, ...options } = this.options;
    const addresses = (await postable(this.addresses)) as Address | Address[];
    const worker = new Worker(workerUrl());
    this.worker = worker;
    this.ended = Promise.withResolvers<void>();
    const ended = this.ended;
    worker.onmessage = (event: MessageEvent<FromWorker>) => this.received(event.data);
    // an error outside the message handler (the module failed to load, say) ends the Worker
    worker.onerror = (event: ErrorEvent) => this.reply?.reject(new Error(`the broker thread failed: ${event.message}`));
    worker.addEventListener("close", () => {
      ended.resolve();
      if (this.worker === worker) this.lost();
    });
    try {
      const started = await this.request({ type: "start", addresses, options, forwardLog: logger !== undefined }, "started");
      if (started.type === "started") {
        this.ports = started.ports;
        this.recovery = started.recovery;
        this.httpPort = started.httpPort;
      }
    } catch (e) {
      await this.end();
      throw e;
    }
    this.stopped = Promise.withResolvers<void>();
    return this.ports;
  }

  /** Starts (unless started), then waits until stop() is called; throws if the Worker ends by itself. */
  async serveForever(): Promise<void> {
    if (this.worker === null) await this.start();
    await this.stopped!.promise;
    if (this.failure !== null) throw this.failure;
  }

  /** Disconnects every client (v5: DISCONNECT 0x8B), closes the listeners and ends the Worker. */
  async stop(): Promise<void> {
    // a start() under way finishes first; if it fails there is nothing to stop
    if (this.starting !== null) await this.starting.catch(() => undefined);
    if (this.worker === null) return;
    try {
      await this.request({ type: "stop" }, "stopped");
    } finally {
      await this.end();
      this.stopped?.resolve();
    }
  }

  /** `await using broker = new BrokerThread(...)` stops it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  private request(m: ToWorker, expect: "started" | "stopped"): Promise<FromWorker> {
    const { promise, resolve, reject } = Promise.withResolvers<FromWorker>();
    this.reply = { expect, resolve, reject };
    this.worker!.postMessage(m);
    return promise;
  }

  private received(m: FromWorker): void {
    if (m.type === "log") {
      this.options.logger?.(m.line);
      return;
    }
    const reply = this.reply;
    if (reply === null || (m.type !== "failed" && m.type !== reply.expect)) return;
    this.reply = null;
    if (m.type === "failed") reply.reject(deserializeError(m.error));
    else reply.resolve(m);
  }

  /** Terminates the Worker and waits until its thread has ended. */
  private async end(): Promise<void> {
    const worker = this.worker;
    if (worker === null) return;
    this.worker = null;
    this.ports = [];
    this.httpPort = null;
    worker.terminate();
    await this.ended?.promise;
  }

  /** The Worker ended without stop(): whoever waits is told. */
  private lost(): void {
    this.worker = null;
    this.ports = [];
    this.httpPort = null;
    this.failure = new Error("the broker thread ended unexpectedly");
    this.reply?.reject(this.failure);
    this.reply = null;
    this.stopped?.resolve();
  }
}
