/**
 * `mqtttools publish TOPIC [MESSAGE]`: publishes one message, the same message --count times
 * from --concurrency tasks (a benchmark of the client and the broker), or one message per line
 * of stdin (--lines), and prints one line with the count, the time and the rate. On a terminal a
 * progress bar runs meanwhile; a pipe gets the "Connecting to" line and the final line only.
 * Without MESSAGE each message is generated as the original mqttools does: its number,
 * zero-padded, then 0xA5 bytes up to --size (default 10).
 */
import { parseArgs } from "node:util";
import { progress, spinner, type SpinnerResult } from "@clack/prompts";
import pc from "picocolors";
import { Client } from "../lib/client/client";
import { Message, type MessageOptions } from "../lib/client/message";
import { measurePublishes } from "../lib/testing";
import { CONNECTION_HELP, CONNECTION_OPTIONS, clientArguments, describeBroker, preparePasswordPrompt, qosFlag } from "./connection";
import { secondsFlag } from "./subscribe";
import { integerFlag, UsageError } from "./usage";

/** Help text of the publish command. */
export const PUBLISH_HELP = `${pc.bold("Usage:")} mqtttools publish [options] TOPIC [MESSAGE]
       mqtttools publish [options] -t TOPIC (-m MESSAGE | -f FILE | -s | -n | -l)

Publishes MESSAGE (or stdin with '-') and prints
  Connecting to 'localhost:1883'.

  Published 1 message(s) in 0 seconds from 1 concurrent task(s).
Without a message a message is generated: its number, zero-padded to the width of the last
number (--count - 1), then 0xA5 bytes up to --size bytes (cut to --size when longer).

Options:
  -t, --topic TOPIC           the topic (instead of the positional TOPIC)
  -m, --message MESSAGE       the message (instead of the positional MESSAGE)
  -f, --file FILE             the content of FILE as the message
  -s, --stdin-whole           the whole of stdin as the message (as '-'; mosquitto_pub -s)
  -n, --null                  an empty (zero-length) message; with -r it clears the topic's
                              retained message (mosquitto_pub -n)
  -l, --lines                 publish each line of stdin as a message, as the lines come
  -q, --qos 0|1|2             QoS (default 0)
  -r, --retain                retain the message
  --repeat N                  publish the message N times (default 1), --repeat-delay apart
  --repeat-delay SECONDS      seconds between repeats (default 0; fractions allowed)
  -C, --count N               publish the message N times, as fast as possible (a benchmark)
  --concurrency N             tasks publishing at the same time with --count (default 10)
  --size BYTES                size of a generated message (no message; default 10). It has no
                              short form: -s is --stdin-whole, as in mosquitto_pub and MQTTX
MQTT 5 properties:
  --content-type TYPE         content type
  --correlation-data DATA     correlation data (the bytes of DATA as UTF-8)
  --payload-format 0|1        payload format indicator (1: UTF-8 text)
  --message-expiry-interval SECONDS
                              the broker drops the message when not delivered within it
  --response-topic TOPIC      response topic
  --user-property KEY=VALUE   a user property; repeatable
  --topic-alias N             send the topic as topic alias N (the first PUBLISH carries the topic,
                              the next ones, with --repeat, the alias only)
  -D, --property PACKET PROPERTY VALUE
                              a property as mosquitto_pub -D: PACKET publish with
                              payload-format-indicator, message-expiry-interval, content-type,
                              response-topic, correlation-data, topic-alias or
                              user-property KEY VALUE; PACKET connect with session-expiry-interval
                              or topic-alias-maximum. Repeatable
  -h, --help                  show this help

${CONNECTION_HELP}`;

/**
 * The generated message number `n` of `count`, as the original mqttools makes it: the number
 * zero-padded to the width of `count - 1`, then 0xA5 bytes up to `size` (cut to `size` when longer).
 */
export function generatedPayload(n: number, count: number, size: number): Uint8Array {
  const digits = String(n).padStart(String(count - 1).length, "0");
  const out = new Uint8Array(size).fill(0xa5);
  for (let i = 0; i < size && i < digits.length; i++) out[i] = digits.charCodeAt(i);
  return out;
}

/** The lines of stdin as they come (without their line ends; a last line without one too). */
async function* stdinLines(): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of Bun.stdin.stream()) {
    rest += decoder.decode(chunk, { stream: true });
    const lines = rest.split("\n");
    rest = lines.pop()!;
    for (const line of lines) yield line.endsWith("\r") ? line.slice(0, -1) : line;
  }
  rest += decoder.decode();
  if (rest !== "") yield rest.endsWith("\r") ? rest.slice(0, -1) : rest;
}

/** A live progress display on a terminal, updated at most every 100 ms; null on a pipe. */
function progressDisplay(total: number | null): { update: (done: number) => void; stop: () => void } | null {
  if (!process.stdout.isTTY) return null;
  const bar: SpinnerResult & { advance?: (step: number, msg?: string) => void } = total === null ? spinner() : progress({ max: total, style: "heavy" });
  let shown = 0;
  let latest = 0;
  bar.start(total === null ? "Publishing" : `Publishing ${total} message(s)`);
  const timer = setInterval(() => {
    if (latest === shown) return;
    if (bar.advance !== undefined) bar.advance(latest - shown, `${latest} of ${total} message(s)`);
    else bar.message(`Published ${latest} message(s)`);
    shown = latest;
  }, 100);
  return {
    update: (done) => { latest = done; },
    stop: () => {
      clearInterval(timer);
      bar.clear();
    },
  };
}

/** Marks the start of a -D value in argv (after preparePropertyFlags); no one types it. */
const SEPARATOR = "\u0000";

/**
 * Joins each `-D PACKET PROPERTY VALUE` (four words for user-property: KEY VALUE) into one
 * `--property` value, so that parseArgs, which takes one value a flag, sees it whole.
 */
export function preparePropertyFlags(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (a !== "-D" && a !== "--property") {
      out.push(a);
      continue;
    }
    const words = argv.slice(i + 1, i + 4);
    if (words[1] === "user-property") words.push(...argv.slice(i + 4, i + 5));
    const need = words[1] === "user-property" ? 4 : 3;
    if (words.length < need) throw new UsageError(`-D needs PACKET PROPERTY VALUE${words[1] === "user-property" ? " (user-property: KEY VALUE)" : ""}`);
    out.push("--property", words.join(SEPARATOR));
    i += need;
  }
  return out;
}

/** What the -D flags set: the message's properties, a topic alias, and connection options. */
export interface DefinedProperties {
  message: MessageOptions;
  topicAlias?: number;
  connect: { sessionExpiryInterval?: number; topicAliasMaximum?: number };
}

/** Applies `-D` values (as preparePropertyFlags joined them) to `into`. */
export function applyPropertyFlags(defines: string[], into: DefinedProperties): void {
  for (const d of defines) {
    const [packet, property, ...rest] = d.split(SEPARATOR) as [string, string, ...string[]];
    const value = rest[0]!;
    const what = `-D ${packet} ${property}`;
    const int = (min: number, max: number) => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < min || n > max || value.trim() === "") throw new UsageError(`${what} must be an integer from ${min} to ${max}, not '${value}'`);
      return n;
    };
    if (packet === "publish") {
      const m = into.message;
      switch (property) {
        case "payload-format-indicator": m.payloadFormatIndicator = int(0, 1) as 0 | 1; break;
        case "message-expiry-interval": m.messageExpiryInterval = int(0, 0xffffffff); break;
        case "content-type": m.contentType = value; break;
        case "response-topic": m.responseTopic = value; break;
        case "correlation-data": m.correlationData = value; break;
        case "topic-alias": into.topicAlias = int(1, 65535); break;
        case "user-property": {
          const up = Array.isArray(m.userProperties) ? m.userProperties : [];
          up.push([value, rest[1]!]);
          m.userProperties = up;
          break;
        }
        default: throw new UsageError(`${what}: not a PUBLISH property mqtttools sets (payload-format-indicator, message-expiry-interval, content-type, response-topic, correlation-data, topic-alias, user-property)`);
      }
    } else if (packet === "connect") {
      switch (property) {
        case "session-expiry-interval": into.connect.sessionExpiryInterval = int(0, 0xffffffff); break;
        case "topic-alias-maximum": into.connect.topicAliasMaximum = int(0, 65535); break;
        default: throw new UsageError(`${what}: not a CONNECT property mqtttools sets (session-expiry-interval, topic-alias-maximum)`);
      }
    } else {
      throw new UsageError(`${what}: mqtttools sets properties of the connect and publish packets only, not '${packet}'`);
    }
  }
}

/**
 * The client's topicAliases option that sends `topic` as alias `n`: the aliases are numbered by
 * their place in the list, so the places before it hold names no topic can have (U+0000).
 */
export function topicAliasOption(topic: string, n: number): string[] {
  return [...Array.from({ length: n - 1 }, (_, i) => `\u0000unused-${i}`), topic];
}

/** Runs the publish command; resolves with the exit code. */
export async function publishCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: preparePropertyFlags(preparePasswordPrompt(argv)),
    options: {
      ...CONNECTION_OPTIONS,
      topic: { type: "string", short: "t" },
      message: { type: "string", short: "m" },
      file: { type: "string", short: "f" },
      "stdin-whole": { type: "boolean", short: "s" },
      null: { type: "boolean", short: "n" },
      qos: { type: "string", short: "q" },
      retain: { type: "boolean", short: "r" },
      repeat: { type: "string" },
      "repeat-delay": { type: "string" },
      count: { type: "string", short: "C" },
      concurrency: { type: "string" },
      size: { type: "string" },
      lines: { type: "boolean", short: "l" },
      "content-type": { type: "string" },
      "correlation-data": { type: "string" },
      "payload-format": { type: "string" },
      "message-expiry-interval": { type: "string" },
      "response-topic": { type: "string" },
      "user-property": { type: "string", multiple: true },
      "topic-alias": { type: "string" },
      property: { type: "string", multiple: true },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(PUBLISH_HELP);
    return 0;
  }
  const rest = [...positionals];
  const topic = values.topic ?? rest.shift();
  if (topic === undefined) throw new UsageError("missing TOPIC");
  if (topic === "") throw new UsageError("TOPIC must not be empty");
  const sources = [
    ["MESSAGE", rest[0] !== undefined && rest[0] !== "-"], ["-m", values.message !== undefined], ["-f", values.file !== undefined],
    ["-s", values["stdin-whole"] === true || rest[0] === "-"], ["-n", values.null === true], ["--lines", values.lines === true],
  ].filter(([, given]) => given).map(([name]) => name);
  if (sources.length > 1 && !(sources.length === 2 && sources.includes("--lines") && rest[0] === "-")) {
    throw new UsageError(`give one message: ${sources.join(" and ")} do not go together`);
  }
  const message = values.message ?? rest.shift();
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}' (one TOPIC and one MESSAGE; quote a message with spaces)`);
  const lines = values.lines === true;
  const fromStdin = !lines && (message === "-" || values["stdin-whole"] === true);
  const generated = message === undefined && !lines && !fromStdin && values.file === undefined && values.null !== true;
  if (values.size !== undefined && !generated) throw new UsageError("--size is the size of a generated message: give no message");
  if (lines && values.count !== undefined) throw new UsageError("--count and --lines do not go together");
  if (values.repeat !== undefined && (values.count !== undefined || lines)) throw new UsageError("--repeat does not go with --count or --lines");
  if (values["repeat-delay"] !== undefined && values.repeat === undefined) throw new UsageError("--repeat-delay needs --repeat");
  const counted = values.count !== undefined;
  const count = counted ? integerFlag("count", values.count!, 1) : 1;
  const repeat = values.repeat === undefined ? 1 : integerFlag("repeat", values.repeat, 1);
  const repeatDelayS = values["repeat-delay"] === undefined ? 0 : secondsFlag("repeat-delay", values["repeat-delay"]);
  const concurrency = integerFlag("concurrency", values.concurrency ?? "10", 1);
  const messageOptions: MessageOptions = { qos: qosFlag("qos", values.qos), retain: values.retain === true };
  if (values["message-expiry-interval"] !== undefined) {
    messageOptions.messageExpiryInterval = integerFlag("message-expiry-interval", values["message-expiry-interval"], 0, 0xffffffff);
  }
  if (values["response-topic"] !== undefined) messageOptions.responseTopic = values["response-topic"];
  if (values["content-type"] !== undefined) messageOptions.contentType = values["content-type"];
  if (values["correlation-data"] !== undefined) messageOptions.correlationData = values["correlation-data"];
  if (values["payload-format"] !== undefined) messageOptions.payloadFormatIndicator = integerFlag("payload-format", values["payload-format"], 0, 1) as 0 | 1;
  if (values["user-property"] !== undefined) {
    messageOptions.userProperties = values["user-property"].map((kv) => {
      const eq = kv.indexOf("=");
      if (eq < 1) throw new UsageError(`--user-property must be KEY=VALUE, not '${kv}'`);
      return [kv.slice(0, eq), kv.slice(eq + 1)] as [string, string];
    });
  }
  const defined: DefinedProperties = { message: messageOptions, connect: {} };
  if (values["topic-alias"] !== undefined) defined.topicAlias = integerFlag("topic-alias", values["topic-alias"], 1, 65535);
  applyPropertyFlags(values.property ?? [], defined);
  const [host, port, options] = await clientArguments(values);
  if (defined.connect.sessionExpiryInterval !== undefined) options.sessionExpiryInterval = defined.connect.sessionExpiryInterval;
  if (defined.connect.topicAliasMaximum !== undefined) options.topicAliasMaximum = defined.connect.topicAliasMaximum;
  if (defined.topicAlias !== undefined) options.topicAliases = topicAliasOption(topic, defined.topicAlias);

  const size = integerFlag("size", values.size ?? "10", 0, 268_435_455);
  let payload: Uint8Array | string = "";
  if (fromStdin) payload = new Uint8Array(await Bun.stdin.arrayBuffer());
  else if (values.file !== undefined) {
    try {
      payload = await Bun.file(values.file).bytes();
    } catch (e) {
      throw new Error(`cannot read --file '${values.file}': ${(e as Error).message}`);
    }
  } else if (message !== undefined) payload = message;

  console.log(`Connecting to '${describeBroker(host, port)}'.`);
  console.log();
  const client = new Client(host, port, { ...options, connectDelays: [] });
  const lost = Promise.withResolvers<never>();
  lost.promise.catch(() => undefined);
  let lostError: Error | null = null;
  client.onMessage = (m) => {
    if (m !== null || lostError !== null) return;
    lostError = new Error(`Connection lost: ${client.lastError?.message ?? `${host}:${port} closed the connection`}`);
    lost.reject(lostError);
  };
  await client.start();

  let published = 0;
  let tasks = 1;
  const show = counted || lines ? progressDisplay(lines ? null : count) : null;
  const started = performance.now();
  try {
    const work = async () => {
      if (lines) {
        for await (const line of stdinLines()) {
          await client.publish(new Message(topic, line, messageOptions));
          published++;
          show?.update(published);
        }
        return;
      }
      // the same count as mqtttools/testing's, so that a test and this line measure alike
      const fixed = generated ? null : new Message(topic, payload, messageOptions);
      if (!counted) {
        // one message, or --repeat N of them --repeat-delay apart
        for (let i = 0; i < repeat; i++) {
          if (i > 0 && repeatDelayS > 0) await Bun.sleep(repeatDelayS * 1000);
          await client.publish(fixed ?? new Message(topic, generatedPayload(i, repeat, size), messageOptions));
          published++;
        }
        while (client.pending > 0 && client.isConnected) await Bun.sleep(1);
        return;
      }
      const message = (n: number) => fixed ?? new Message(topic, generatedPayload(n, count, size), messageOptions);
      tasks = Math.min(concurrency, count);
      const r = await measurePublishes({ client, topic, count, concurrency, subscribers: 0, message, onProgress: (n) => show?.update(n) });
      published = r.sent;
    };
    await Promise.race([work(), lost.promise]);
    if (lostError !== null) throw lostError;
  } finally {
    show?.stop();
    await client.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  if (!counted && !lines) {
    console.log(`Published ${published} message(s) in ${Math.round(seconds)} seconds from 1 concurrent task(s).`);
  } else {
    const rate = Math.round(published / Math.max(seconds, 1e-6));
    console.log(`Published ${published} message(s) in ${seconds.toFixed(2)} seconds from ${tasks} concurrent task(s). Rate: ${rate} messages/s.`);
  }
  return 0;
}
