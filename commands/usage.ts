/** A mistake in the command line: printed as one line with the usage, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
