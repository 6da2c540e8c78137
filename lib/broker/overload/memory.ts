/**
 * Memory pressure: the broker's resident set size, sampled on a timer (never per packet), against
 * a high-water mark (maxMemoryBytes) and a low-water mark below it. Between the two the state
 * stays as it was, so a broker hovering at the bound does not flap.
 */
import { readFileSync } from "node:fs";
import { totalmem } from "node:os";

/** Share of maxMemoryBytes below which normal service resumes. */
export const LOW_WATER_RATIO = 0.8;
/** Share of the memory available to the process that the default bound takes. */
const DEFAULT_SHARE = 0.75;

/** The broker's memory as it measures it, in bytes. */
export interface MemorySample {
  rss: number;
  heap: number;
}

/** RSS and the JavaScript heap in use, now. */
export function sampleMemory(): MemorySample {
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

/** The default maxMemoryBytes: three quarters of the cgroup's memory.max when it has one, else of the machine's memory. */
export function defaultMemoryBound(): number {
  let available = totalmem();
  try {
    const max = readFileSync("/sys/fs/cgroup/memory.max", "utf8").trim(); // cgroup v2; "max" when unbounded
    if (/^\d+$/.test(max)) available = Math.min(available, Number(max));
  } catch {
    // no cgroup v2 limit to read
  }
  return Math.floor(available * DEFAULT_SHARE);
}

/** Tracks whether the process is above its memory bound, with hysteresis. */
export class MemoryGuard {
  /** True from the sample above `high` until one below `low`. */
  pressure = false;
  /** The last sample taken. */
  last: MemorySample = { rss: 0, heap: 0 };
  readonly low: number;

  constructor(readonly high: number) {
    this.low = Math.floor(high * LOW_WATER_RATIO);
  }

  /** Samples memory; returns "high" or "low" when the state changed with this sample, else null. */
  sample(now: MemorySample = sampleMemory()): "high" | "low" | null {
    this.last = now;
    const used = Math.max(now.rss, now.heap);
    if (!this.pressure && used >= this.high) {
      this.pressure = true;
      return "high";
    }
    if (this.pressure && used < this.low) {
      this.pressure = false;
      return "low";
    }
    return null;
  }
}
