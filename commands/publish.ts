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
import { integerFlag, UsageError } from "./usage";

/** Help text of the publish command. */
export const PUBLISH_HELP = `${pc.bold("Usage:")} mqtttools publish [options] TOPIC [MESSAGE]

Publishes MESSAGE (or stdin with '-') and prints
  Connecting to 'localhost:1883'.

  Published 1 message(s) in 0 seconds from 1 concurrent task(s).
Without MESSAGE a message is generated: its number, zero-padded to the width of the last
number (--count - 1), then 0xA5 bytes up to --size bytes (cut to --size when longer).

Options:
  -q, --qos 0|1|2             QoS (default 0)
  -r, --retain                retain the message
  -C, --count N               publish the message N times, as fast as possible (a benchmark)
  --concurrency N             tasks publishing at the same time with --count (default 10)
  -s, --size BYTES            size of a generated message (no MESSAGE; default 10)
  -l, --lines                 publish each line of stdin as a message, as the lines come
  --message-expiry-interval SECONDS
                              the broker drops the message when not delivered within it (MQTT 5)
  --response-topic TOPIC      response topic (MQTT 5)
  --user-property KEY=VALUE   a user property (MQTT 5); repeatable
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

/** Runs the publish command; resolves with the exit code. */
export async function publishCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: preparePasswordPrompt(argv),
    options: {
      ...CONNECTION_OPTIONS,
      qos: { type: "string", short: "q" },
      retain: { type: "boolean", short: "r" },
      count: { type: "string", short: "C" },
      concurrency: { type: "string" },
      size: { type: "string", short: "s" },
      lines: { type: "boolean", short: "l" },
      "message-expiry-interval": { type: "string" },
      "response-topic": { type: "string" },
      "user-property": { type: "string", multiple: true },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(PUBLISH_HELP);
    return 0;
  }
  const [topic, message, ...extra] = positionals;
  if (topic === undefined) throw new UsageError("missing TOPIC");
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}' (one TOPIC and one MESSAGE; quote a message with spaces)`);
  const lines = values.lines === true;
  if (lines && message !== undefined && message !== "-") throw new UsageError("--lines reads stdin: give no MESSAGE (or '-')");
  if (values.size !== undefined && (message !== undefined || lines)) throw new UsageError("--size is the size of a generated message: give no MESSAGE and no --lines");
  if (lines && values.count !== undefined) throw new UsageError("--count and --lines do not go together");
  const counted = values.count !== undefined;
  const count = counted ? integerFlag("count", values.count!, 1) : 1;
  const concurrency = integerFlag("concurrency", values.concurrency ?? "10", 1);
  const messageOptions: MessageOptions = { qos: qosFlag("qos", values.qos), retain: values.retain === true };
  if (values["message-expiry-interval"] !== undefined) {
    messageOptions.messageExpiryInterval = integerFlag("message-expiry-interval", values["message-expiry-interval"], 0, 0xffffffff);
  }
  if (values["response-topic"] !== undefined) messageOptions.responseTopic = values["response-topic"];
  if (values["user-property"] !== undefined) {
    messageOptions.userProperties = values["user-property"].map((kv) => {
      const eq = kv.indexOf("=");
      if (eq < 1) throw new UsageError(`--user-property must be KEY=VALUE, not '${kv}'`);
      return [kv.slice(0, eq), kv.slice(eq + 1)] as [string, string];
    });
  }
  const [host, port, options] = await clientArguments(values);

  const size = integerFlag("size", values.size ?? "10", 0, 268_435_455);
  const generated = message === undefined && !lines;
  let payload: Uint8Array | string = "";
  if (message === "-" && !lines) payload = new Uint8Array(await Bun.stdin.arrayBuffer());
  else if (message !== undefined) payload = message;

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
