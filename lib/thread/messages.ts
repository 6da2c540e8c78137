/**
 * The messages that cross the Worker boundary between a BrokerThread (main thread) and the
 * broker in its Worker: one typed union each way, and errors carried as plain data so that
 * start() can reject with the class and message the main thread would have got.
 */
import type { BrokerInit } from "../broker/broker";
import type { Addresses } from "../broker/options";
import { MqttError } from "../codec/reason-codes";
import { PasswordFileError } from "../broker/auth";
import { AclFileError } from "../broker/acl";
import { PersistenceError, type RecoveryReport } from "../broker/store/journal";

/** Broker options as they travel to the Worker: no logger function (log lines come back as messages). */
export type WorkerBrokerInit = Omit<BrokerInit, "logger">;

/** Main thread → Worker. */
export type ToWorker =
  /** Start a Broker on `addresses`; `forwardLog`: send log lines back instead of writing them to stderr. */
  | { type: "start"; addresses: Addresses; options: WorkerBrokerInit; forwardLog: boolean }
  /** Disconnect every client and close the listeners; answered with "stopped". */
  | { type: "stop" };

/** Worker → main thread. */
export type FromWorker =
  /** The listeners are bound: their ports, in address order, and what was restored from the persistence file. */
  | { type: "started"; ports: number[]; recovery: RecoveryReport | null; httpPort: number | null }
  /** start() or stop() failed inside the Worker. */
  | { type: "failed"; error: SerializedError }
  /** A log line, when the BrokerThread has a logger of its own. */
  | { type: "log"; line: string }
  /** The broker has stopped; the Worker may be terminated. */
  | { type: "stopped" };

/** An error as data: its class name, message, stack and own primitive fields (code, errno, syscall, ...). */
export interface SerializedError {
  className: string;
  message: string;
  stack: string | undefined;
  fields: Record<string, string | number | boolean | null>;
}

/** Turns an error thrown in the Worker into data that can be posted. */
export function serializeError(e: unknown): SerializedError {
  if (!(e instanceof Error)) return { className: "Error", message: String(e), stack: undefined, fields: {} };
  const fields: SerializedError["fields"] = {};
  // own fields, and `code` wherever it lives (Bun's Node-style errors keep it off the enumerable ones)
  for (const k of new Set([...Object.getOwnPropertyNames(e), "code"])) {
    if (k === "message" || k === "stack") continue;
    const v = (e as unknown as Record<string, unknown>)[k];
    if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") fields[k] = v;
  }
  return { className: e.constructor.name, message: e.message, stack: e.stack, fields };
}

/** Error classes that can cross by name: the built-in ones and the library's own. */
const ERROR_CLASSES: Record<string, ErrorConstructor | (new (...args: never[]) => Error)> = {
  Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, MqttError, PasswordFileError, AclFileError, PersistenceError,
};

/** Rebuilds an error on this side with the same class, message and fields (an unknown class becomes Error). */
export function deserializeError(s: SerializedError): Error {
  const cls = ERROR_CLASSES[s.className] ?? Error;
  // a real Error object whose prototype is the class's, without running a constructor whose
  // arguments we do not have (MqttError's reason code travels in `fields`)
  const e = Reflect.construct(Error, [s.message], cls) as Error;
  Object.assign(e, s.fields);
  if (s.stack !== undefined) e.stack = s.stack;
  return e;
}
