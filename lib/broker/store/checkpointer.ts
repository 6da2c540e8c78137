/**
 * WAL checkpoints off the broker's thread. A checkpoint copies the WAL's pages into the database
 * file and fsyncs both; run inside a COMMIT (SQLite's wal_autocheckpoint) it stalled the broker's
 * thread for milliseconds every couple of MB of WAL (measured: most of the COMMIT time of durable
 * QoS 1). Here a Worker runs them (PASSIVE: they never block the broker's writes) on a connection
 * of its own to the same file.
 *
 * A WAL starts over from its beginning only when a write begins while every frame in it has been
 * copied; under steady load the Worker's checkpoint never catches up with the commits made while it
 * ran (its fsync alone takes longer than the gap between two commits), so the WAL would grow without
 * end. When the Worker reports a WAL of RESTART_BYTES or more, the broker's thread copies the few
 * frames the Worker's checkpoint did not reach itself (and pays the fsync, once per RESTART_BYTES
 * instead of once per 2 MB), after which its next commit restarts the WAL.
 *
 * The Worker opens the file for each checkpoint and closes it after; a shared state word lets
 * close() wait until no checkpoint is running, so the broker's connection is the last one open when
 * it closes (and SQLite merges and removes the WAL then).
 */

/** Commits between two requests of a checkpoint (at most one is running at a time). */
const COMMITS_PER_CHECKPOINT = 16;
/** WAL size at which the broker's thread finishes a checkpoint itself so that the WAL restarts. */
export const RESTART_BYTES = 32 * 1024 * 1024;

/** Values of the shared state word. */
const IDLE = 0;
const RUNNING = 1;
const CLOSED = 2;

/** The Worker: one PASSIVE checkpoint per request, on a connection opened for it. */
const WORKER_SOURCE = `
import { Database } from "bun:sqlite";
let state = null;
self.onmessage = (event) => {
  const m = event.data;
  if (m.state !== undefined) { state = new Int32Array(m.state); return; }
  if (Atomics.compareExchange(state, 0, ${IDLE}, ${RUNNING}) !== ${IDLE}) return; // closed
  let reply;
  try {
    const db = new Database(m.path, { readwrite: true, create: false });
    try {
      db.run("PRAGMA synchronous = " + m.synchronous);
      const r = db.query("PRAGMA wal_checkpoint(PASSIVE)").get();
      reply = { log: r.log, checkpointed: r.checkpointed };
    } finally {
      db.close();
    }
  } catch (e) {
    reply = { error: String(e && e.message) };
  }
  Atomics.store(state, 0, ${IDLE});
  Atomics.notify(state, 0);
  postMessage(reply);
};
`;

let workerUrl: string | null = null;

/** What the store does with the checkpointer's reports. */
export interface CheckpointerHooks {
  /** A checkpoint ended with `frames` frames in the WAL. */
  checkpointed(frames: number): void;
  /** The Worker could not checkpoint: the store checkpoints on its own thread from now on. */
  failed(message: string): void;
}

/** Runs the WAL checkpoints of one SQLite file in a Worker. */
export class Checkpointer {
  private readonly worker: Worker;
  private readonly state = new Int32Array(new SharedArrayBuffer(4));
  private commits = 0;
  private running = false;
  private held = false;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly synchronous: "NORMAL" | "FULL",
    private readonly hooks: CheckpointerHooks,
  ) {
    workerUrl ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
    this.worker = new Worker(workerUrl);
    (this.worker as Worker & { unref(): void }).unref(); // never what keeps the process alive
    this.worker.postMessage({ state: this.state.buffer });
    this.worker.onmessage = (event: MessageEvent<{ log?: number; error?: string }>) => {
      this.running = false;
      if (this.closed) return;
      if (event.data.error !== undefined) {
        this.close();
        this.hooks.failed(event.data.error);
      } else this.hooks.checkpointed(event.data.log ?? 0);
    };
    this.worker.onerror = (event) => {
      if (this.closed) return;
      this.close();
      this.hooks.failed(event.message);
    };
  }

  /** A transaction was committed: asks for a checkpoint every COMMITS_PER_CHECKPOINT commits, one at a time. */
  committed(): void {
    if (++this.commits < COMMITS_PER_CHECKPOINT || this.running || this.held || this.closed) return;
    this.commits = 0;
    this.running = true;
    this.worker.postMessage({ path: this.path, synchronous: this.synchronous });
  }

  /** While held, no checkpoint is asked for (the store's thread runs one of its own). */
  hold(held: boolean): void {
    this.held = held;
  }

  /** Waits for a running checkpoint to end and stops the Worker. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (;;) {
      const was = Atomics.compareExchange(this.state, 0, IDLE, CLOSED);
      if (was !== RUNNING) break;
      Atomics.wait(this.state, 0, RUNNING, 1000);
    }
    this.worker.terminate();
  }
}
