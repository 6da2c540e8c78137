/**
 * `mqtttools subscribe TOPIC...`: prints the messages of the given topic filters until Ctrl-C or
 * --count messages.
 *
 * The first connection is tried once (a wrong address fails at once, exit 1); after it, a lost
 * connection is re-made with the client's usual delays, and both events are printed.
 */
import { parseArgs } from "node:util";
import pc from "picocolors";
import { Client } from "../lib/client/client";
import type { Message } from "../lib/client/message";
import { CONNECTION_HELP, CONNECTION_OPTIONS, clientArguments, describeBroker, preparePasswordPrompt, qosFlag } from "./connection";
import { integerFlag, UsageError } from "./usage";

/** Help text of the subscribe command. */
export const SUBSCRIBE_HELP = `${pc.bold("Usage:")} mqtttools subscribe [options] TOPIC...

Subscribes to the topic filters and prints each message:
  Topic:   /test/mqtttools/foo
  Message: bar

Options:
  -q, --qos 0|1|2             QoS of the subscriptions (default 0)
  --retain-handling 0|1|2     0: send retained messages (default), 1: only for a new subscription,
                              2: never
  -C, --count N               exit after N messages
  -F, --format FORMAT         text (default): the payload as text, in hex when it is not printable;
                              binary: the payload in hex; json: one JSON object per line (topic,
                              payload, qos, retain, properties; payloadEncoding "hex" when the
                              payload is not UTF-8); status lines then go to stderr
  -h, --help                  show this help

${CONNECTION_HELP}`;

const FORMATS = ["text", "binary", "json"] as const;
type Format = (typeof FORMATS)[number];

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The payload as hex digits. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** The payload as a string when it is valid UTF-8, else null. */
function utf8OrNull(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

/** True when the text can go to a terminal as it is: no control characters but tab and newlines. */
function printable(text: string): boolean {
  return !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(text);
}

/** A payload for a terminal: text when printable UTF-8, else hex with its size. */
function payloadText(m: Message, format: Format): string {
  if (format === "text") {
    const text = utf8OrNull(m.payload);
    if (text !== null && printable(text)) return text;
  }
  return `${hex(m.payload)} (${m.payload.length} bytes, hex)`;
}

/** One message as a JSON object (one line of `--format json`). */
export function messageJson(m: Message): string {
  const text = utf8OrNull(m.payload);
  const properties: Record<string, unknown> = {};
  if (m.payloadFormatIndicator !== undefined) properties.payloadFormatIndicator = m.payloadFormatIndicator;
  if (m.messageExpiryInterval !== undefined) properties.messageExpiryInterval = m.messageExpiryInterval;
  if (m.contentType !== undefined) properties.contentType = m.contentType;
  if (m.responseTopic !== undefined) properties.responseTopic = m.responseTopic;
  if (m.correlationData !== undefined) {
    const c = utf8OrNull(m.correlationData);
    if (c !== null) properties.correlationData = c;
    else {
      properties.correlationData = hex(m.correlationData);
      properties.correlationDataEncoding = "hex";
    }
  }
  if (m.userProperties.length > 0) properties.userProperties = m.userProperties;
  if (m.subscriptionIdentifiers.length > 0) properties.subscriptionIdentifiers = m.subscriptionIdentifiers;
  const o: Record<string, unknown> = { topic: m.topic, payload: text ?? hex(m.payload) };
  if (text === null) o.payloadEncoding = "hex";
  Object.assign(o, { qos: m.qos, retain: m.retain, properties });
  return JSON.stringify(o);
}

/** Runs the subscribe command; resolves with the exit code. */
export async function subscribeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: preparePasswordPrompt(argv),
    options: {
      ...CONNECTION_OPTIONS,
      qos: { type: "string", short: "q" },
      "retain-handling": { type: "string" },
      count: { type: "string", short: "C" },
      format: { type: "string", short: "F" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(SUBSCRIBE_HELP);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("missing TOPIC");
  const qos = qosFlag("qos", values.qos);
  const retainHandling = integerFlag("retain-handling", values["retain-handling"] ?? "0", 0, 2) as 0 | 1 | 2;
  const count = values.count === undefined ? Infinity : integerFlag("count", values.count, 1);
  const format = (values.format ?? "text") as Format;
  if (!FORMATS.includes(format)) throw new UsageError(`--format must be text, binary or json, not '${format}'`);
  const [host, port, options] = await clientArguments(values);

  const status = format === "json" ? (line: string) => console.error(line) : (line: string) => console.log(line);
  const where = describeBroker(host, port);
  // the first connection fails fast; a lost one is re-made with growing delays
  const client = new Client(host, port, { ...options, connectDelays: [], reconnectDelays: [1, 2, 4, 8] });
  const done = Promise.withResolvers<void>();
  let received = 0;
  let lost = false;
  client.onConnect = ({ reconnected }) => {
    if (!reconnected) return;
    lost = false;
    status("Reconnected.");
  };
  let ready = false;
  const early: Message[] = []; // retained messages that come with the SUBACK, printed after "Connected."
  const print = (m: Message) => {
    if (received >= count) return;
    received++;
    if (format === "json") console.log(messageJson(m));
    else console.log(`Topic:   ${m.topic}\nMessage: ${payloadText(m, format)}`);
    if (received >= count) done.resolve();
  };
  client.onMessage = (m) => {
    if (m === null) {
      if (lost) return;
      lost = true;
      const why = client.lastError?.message;
      status(`Connection lost${why ? ` (${why})` : ""}. Reconnecting to '${where}'.`);
      return;
    }
    if (ready) print(m);
    else early.push(m);
  };

  status(`Connecting to '${where}'.`);
  await client.start();
  try {
    for (const topic of positionals) await client.subscribe(topic, { qos, retainHandling });
  } catch (e) {
    await client.stop();
    throw e;
  }
  status("Connected.");
  ready = true;
  for (const m of early.splice(0)) print(m);

  const stop = () => done.resolve();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await done.promise;
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await client.stop();
  }
  return 0;
}
