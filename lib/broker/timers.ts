/** Timers for the spec's long delays (Session Expiry, Will Delay: up to 0xFFFFFFFE seconds). */

/** Longest delay one setTimeout takes; a longer one fires at once. */
const MAX_TIMEOUT_MS = 2_147_483_647;

/** A cancellable timer for delays up to the spec's 0xFFFFFFFE seconds (Session Expiry, Will Delay). */
export interface LongTimer {
  clear(): void;
}

/** Runs `fn` after `ms`, in steps setTimeout can take; unref'd, so it never keeps the process alive. */
export function longTimeout(fn: () => void, ms: number): LongTimer {
  const deadline = Date.now() + ms;
  let t: Timer;
  const arm = () => {
    const left = deadline - Date.now();
    t = setTimeout(left > MAX_TIMEOUT_MS ? arm : fn, Math.min(Math.max(left, 0), MAX_TIMEOUT_MS));
    t.unref();
  };
  arm();
  return { clear: () => clearTimeout(t) };
}
