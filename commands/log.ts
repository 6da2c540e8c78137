/**
 * The global `--log-level debug|info|warning|error` (given before the command, default error):
 * main() sets it, commands read it. At info, clients and the broker log one line per packet sent or
 * received; at debug, every field of every packet.
 */
import type { LogLevel } from "../lib/broker/broker";
import { UsageError } from "./usage";

export type { LogLevel };
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warning", "error"];

let level: LogLevel = "error";
let given = false;

/** Checks a --log-level value. */
export function parseLogLevel(value: string | undefined, flag = "--log-level"): LogLevel {
  if (value === undefined || !(LOG_LEVELS as string[]).includes(value)) {
    throw new UsageError(`${flag} must be debug, info, warning or error, not '${value ?? ""}'`);
  }
  return value as LogLevel;
}

/** Sets the global level (main() does, from the flag before the command). */
export function setLogLevel(value: LogLevel): void {
  level = value;
  given = true;
}

/** The global level: error unless --log-level was given. */
export function logLevel(): LogLevel {
  return level;
}

/** True when --log-level was given before the command. */
export function logLevelGiven(): boolean {
  return given;
}

/** Options for a Client that log its packets to stderr at the global level. */
export function clientLogOptions(): { logLevel: LogLevel; logger: (line: string) => void } {
  return { logLevel: level, logger: (line) => console.error(line) };
}
