/**
 * The process's file-descriptor limit (RLIMIT_NOFILE): read it, raise the soft limit to the hard
 * one, and probe whether descriptors are left right now.
 *
 * Bun 1.4 raises the soft limit to the hard one itself when it starts, so raising is usually a
 * no-op; it matters where the runtime did not (another Bun, a limit lowered since). Raising goes
 * through libc's setrlimit with bun:ffi, since Bun has no process.setrlimit.
 */
import { closeSync, openSync, readFileSync } from "node:fs";

/** Soft and hard limit on open descriptors; Infinity when unlimited. */
export interface DescriptorLimit {
  soft: number;
  hard: number;
}

/** RLIMIT_NOFILE's number, where we know it. */
const RLIMIT_NOFILE: Partial<Record<NodeJS.Platform, number>> = { linux: 7, darwin: 8, freebsd: 8 };
/** libc names to try, in order. */
const LIBC: Partial<Record<NodeJS.Platform, string[]>> = {
  linux: ["libc.so.6", `libc.musl-${process.arch === "arm64" ? "aarch64" : "x86_64"}.so.1`],
  darwin: ["libSystem.B.dylib"],
  freebsd: ["libc.so.7"],
};
const RLIM_INFINITY = 0xffffffffffffffffn;

/** The limit as /proc/self/limits states it (Linux), else as getrlimit returns it; null when unknown. */
export function readDescriptorLimit(): DescriptorLimit | null {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const m = line === undefined ? null : /^Max open files\s+(\S+)\s+(\S+)/.exec(line);
    if (m !== null) return { soft: limitValue(m[1]!), hard: limitValue(m[2]!) };
  } catch {
    // not Linux: ask libc
  }
  return rlimit()?.get() ?? null;
}

function limitValue(s: string): number {
  return s === "unlimited" ? Infinity : Number(s);
}

/**
 * Raises the soft limit to the hard one (capped at 1 << 20 when the hard one is unlimited). Returns
 * the limit in force afterwards and, when it could not raise it, why; null when it is unknown.
 */
export function raiseDescriptorLimit(): { limit: DescriptorLimit | null; failed: string | null } {
  const before = readDescriptorLimit();
  if (before === null || before.soft >= before.hard) return { limit: before, failed: null };
  const libc = rlimit();
  if (libc === null) return { limit: before, failed: "setrlimit is not reachable from this runtime" };
  const target = Number.isFinite(before.hard) ? before.hard : 1 << 20;
  const failed = libc.set(target, before.hard) ? null : "setrlimit refused";
  return { limit: readDescriptorLimit() ?? before, failed };
}

/** getrlimit/setrlimit through bun:ffi, or null where that is not possible. */
function rlimit(): { get(): DescriptorLimit | null; set(soft: number, hard: number): boolean } | null {
  const resource = RLIMIT_NOFILE[process.platform];
  const names = LIBC[process.platform];
  if (resource === undefined || names === undefined || typeof Bun === "undefined") return null;
  let ffi: typeof import("bun:ffi");
  try {
    ffi = require("bun:ffi") as typeof import("bun:ffi");
  } catch {
    return null;
  }
  const { dlopen, FFIType, ptr } = ffi;
  for (const name of names) {
    try {
      const lib = dlopen(name, {
        getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
        setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
      });
      const value = (v: bigint) => (v === RLIM_INFINITY ? Infinity : Number(v));
      return {
        get() {
          const buf = new BigUint64Array(2);
          return lib.symbols.getrlimit(resource, ptr(buf)) === 0 ? { soft: value(buf[0]!), hard: value(buf[1]!) } : null;
        },
        set(soft, hard) {
          const buf = new BigUint64Array([BigInt(soft), Number.isFinite(hard) ? BigInt(hard) : RLIM_INFINITY]);
          return lib.symbols.setrlimit(resource, ptr(buf)) === 0;
        },
      };
    } catch {
      // try the next name
    }
  }
  return null;
}

/**
 * How many descriptors could be opened right now, counting up to `atMost`: it opens /dev/null that
 * many times and closes them again (EMFILE / ENFILE end the count). 0 means the process is at its limit (EMFILE, or ENFILE for
 * the whole system): an accept() would fail now.
 */
export function freeDescriptors(atMost: number): number {
  const fds: number[] = [];
  try {
    while (fds.length < atMost) fds.push(openSync("/dev/null", "r"));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EMFILE" && code !== "ENFILE") return atMost; // no /dev/null to probe with: assume there is room
  } finally {
    for (const fd of fds) closeSync(fd);
  }
  return fds.length;
}
