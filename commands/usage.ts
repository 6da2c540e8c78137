/** A mistake in the command line: printed as one line with the usage, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Checks an integer flag value: `--flag` must be an integer from `min` to `max` (no upper bound by default). */
export function integerFlag(flag: string, value: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`--${flag} must be an integer ${range}, not '${value}'`);
  }
  return n;
}
