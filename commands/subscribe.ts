/**
 * `mqtttools subscribe TOPIC...`: prints the messages of the given topic filters until Ctrl-C,
 * --count messages, -W seconds, -E (once subscribed) or --retained-only (once the retained
 * messages are in). `mqtttools read TOPIC` is `subscribe -C 1 --raw TOPIC`.
 *
 * The first connection is tried once (a wrong address fails at once, exit 1); after it, a lost
 * connection is re-made with the client's usual delays, and both events are printed.
 */
import { parseArgs } from "node:util";
import pc from "picocolors";
import { Client } from "../lib/client/client";
import type { Message } from "../lib/client/message";
import { CONNECTION_HELP, CONNECTION_OPTIONS, clientArguments, describeBroker, preparePasswordPrompt, qosFlag } from "./connection";
import { forScripts, outputMode, printMessage, received, type Received } from "./output";
import { integerFlag, UsageError } from "./usage";

export { hex, messageJson } from "./output";

/** The exit status of -W when the time ran out: mosquitto_sub's. */
export const TIMED_OUT = 27;

const OUTPUT_HELP = `Output:
  -F, --format FORMAT         text (default): the payload as text, in hex when it is not printable;
                              binary: the payload in hex; json: one JSON object per line (topic,
                              payload, qos, retain, properties; payloadEncoding "hex" when the
                              payload is not UTF-8); or a template with %, as mosquitto_sub -F:
                              %t topic, %p payload (bytes), %q QoS, %r retain (0/1), %l payload
                              length, %x/%X payload in hex, %j JSON (tst, topic, qos, retain,
                              payloadlen, properties, payload), %J the same with a JSON payload
                              unquoted, %I ISO 8601 local time, %U Unix time (.nanoseconds),
                              %P user properties (key:value, space separated), %C content type,
                              %D correlation data, %E message expiry, %F payload format,
                              %R response topic, %S subscription identifiers, %% a %;
                              escapes \\n \\t \\r \\\\ \\0 \\a \\e \\v. (Not taken from mosquitto_sub:
                              %A, %m, widths like %10t, and @ strftime sequences.)
  -v, --verbose               'topic payload' on one line (the payload as it came), as mosquitto_sub -v
  --raw                       the payload only, as it came (mosquitto_sub's default output)
  -N                          no newline after each message (-v, --raw and templates)
  --timestamps                the reception time: a 'Time:' line in text, "time" in JSON,
                              an ISO time before -v and --raw lines
  With -v, --raw, json or a template, the status lines go to stderr: stdout has the messages only.`;

/** Help text of the subscribe command. */
export const SUBSCRIBE_HELP = `${pc.bold("Usage:")} mqtttools subscribe [options] TOPIC...

Subscribes to the topic filters and prints each message:
  Topic:   /test/mqtttools/foo
  Message: bar

Options:
  -t, --topic TOPIC           a topic filter (repeatable), beside the positional ones
  -q, --qos 0|1|2             QoS of the subscriptions (default 0)
  --retain-handling 0|1|2     0: send retained messages (default), 1: only for a new subscription,
                              2: never
  -C, --count N               exit after N messages
  -W, --timeout SECONDS       exit after SECONDS with status ${TIMED_OUT} ("Timed out" on stderr), as
                              mosquitto_sub -W: with -C, unless the N messages came in time
  -E, --exit-after-subscribe  exit (0) once the broker has acknowledged the subscriptions
  -R, --no-stale              skip the retained messages stored before the subscription
  --retained-only             print the retained messages there are, then exit (0)
  -h, --help                  show this help

${OUTPUT_HELP}

Exit status: 0 done, 1 a run-time error (connection, refused subscription), 2 a usage error,
${TIMED_OUT} -W timed out.

${CONNECTION_HELP}`;

/** Help text of the read command. */
export const READ_HELP = `${pc.bold("Usage:")} mqtttools read [options] TOPIC

Prints the payload of the first message of TOPIC (a retained one at once) and exits: the same as
'mqtttools subscribe -C 1 --raw TOPIC', for value=$(mqtttools read -W 5 home/temperature).

Options:
  -W, --timeout SECONDS       give up after SECONDS with status ${TIMED_OUT}
  -N                          no newline after the payload (its bytes exactly)
  ...and every subscribe option (see 'mqtttools subscribe --help').

${CONNECTION_HELP}`;

/** The subscribe options (parseArgs specs) beyond the connection ones. */
export const SUBSCRIBE_OPTIONS = {
  topic: { type: "string", short: "t", multiple: true },
  qos: { type: "string", short: "q" },
  "retain-handling": { type: "string" },
  count: { type: "string", short: "C" },
  format: { type: "string", short: "F" },
  verbose: { type: "boolean", short: "v" },
  raw: { type: "boolean" },
  N: { type: "boolean", short: "N" },
  timestamps: { type: "boolean" },
  timeout: { type: "string", short: "W" },
  "exit-after-subscribe": { type: "boolean", short: "E" },
  "no-stale": { type: "boolean", short: "R" },
  "retained-only": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** A number of seconds (may have a fraction) of at least `min`. */
export function secondsFlag(flag: string, value: string, min = 0): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < min) throw new UsageError(`--${flag} must be a number of seconds of at least ${min}, not '${value}'`);
  return n;
}

/** A topic filter no one subscribes to: its UNSUBACK marks the end of the retained messages sent before it. */
function barrierFilter(): string {
  return `mqtttools/barrier/${crypto.randomUUID()}`;
}

/**
 * Waits until the broker has sent every retained message of the subscriptions made so far: the
 * broker answers in order, and sends a subscription's retained messages before it handles the
 * next packet, so the UNSUBACK of a filter nobody has comes after them.
 */
export async function retainedBarrier(client: Client): Promise<void> {
  await client.unsubscribe(barrierFilter());
}

/** Runs the subscribe command; resolves with the exit code. */
export async function subscribeCommand(argv: string[], read = false): Promise<number> {
  const { values, positionals } = parseArgs({
    args: preparePasswordPrompt(argv),
    options: { ...CONNECTION_OPTIONS, ...SUBSCRIBE_OPTIONS },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(read ? READ_HELP : SUBSCRIBE_HELP);
    return 0;
  }
  const topics = [...(values.topic ?? []), ...positionals];
  if (topics.length === 0) throw new UsageError("missing TOPIC");
  if (read && topics.length > 1) throw new UsageError(`read takes one TOPIC, not ${topics.length}`);
  const qos = qosFlag("qos", values.qos);
  const retainHandling = integerFlag("retain-handling", values["retain-handling"] ?? "0", 0, 2) as 0 | 1 | 2;
  const count = values.count !== undefined ? integerFlag("count", values.count, 1) : read ? 1 : Infinity;
  const mode = outputMode(values.format, values.verbose === true, values.raw === true || (read && values.format === undefined && !values.verbose));
  const timeoutS = values.timeout === undefined ? null : secondsFlag("timeout", values.timeout);
  const exitAfterSubscribe = values["exit-after-subscribe"] === true;
  const noStale = values["no-stale"] === true;
  const retainedOnly = values["retained-only"] === true;
  if (noStale && retainedOnly) throw new UsageError("-R and --retained-only do not go together");
  if (exitAfterSubscribe && retainedOnly) throw new UsageError("-E and --retained-only do not go together");
  const printOptions = { newline: values.N !== true, timestamps: values.timestamps === true };
  const [host, port, options] = await clientArguments(values);

  const started = performance.now();
  const status = forScripts(mode) ? (line: string) => console.error(line) : (line: string) => void process.stdout.write(line + "\n");
  const where = describeBroker(host, port);
  // the first connection fails fast; a lost one is re-made with growing delays
  const client = new Client(host, port, { ...options, connectDelays: [], reconnectDelays: [1, 2, 4, 8] });
  const done = Promise.withResolvers<number>();
  let printed = 0;
  let lost = false;
  client.onConnect = ({ reconnected }) => {
    if (!reconnected) return;
    lost = false;
    status("Reconnected.");
  };
  let ready = false;
  let retainedDone = false;
  const early: Received[] = []; // retained messages that come with the SUBACK, printed after "Connected."
  const print = (r: Received) => {
    const m: Message = r.message;
    if (printed >= count) return;
    if (noStale && m.retain) return;
    if (retainedOnly && (!m.retain || retainedDone)) return;
    printed++;
    printMessage(r, mode, printOptions);
    if (printed >= count) done.resolve(0);
  };
  client.onMessage = (m) => {
    if (m === null) {
      if (lost) return;
      lost = true;
      const why = client.lastError?.message;
      status(`Connection lost${why ? ` (${why})` : ""}. Reconnecting to '${where}'.`);
      return;
    }
    const r = received(m);
    if (ready) print(r);
    else early.push(r);
  };

  let timer: Timer | undefined;
  if (timeoutS !== null) {
    timer = setTimeout(() => {
      console.error("Timed out");
      done.resolve(TIMED_OUT);
    }, Math.max(0, timeoutS * 1000 - (performance.now() - started)));
  }
  const stop = () => done.resolve(0);
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    status(`Connecting to '${where}'.`);
    const work = (async () => {
      await client.start();
      for (const topic of topics) await client.subscribe(topic, { qos, retainHandling });
      if (exitAfterSubscribe) {
        done.resolve(0);
        return;
      }
      status("Connected.");
      ready = true;
      for (const r of early.splice(0)) print(r);
      if (retainedOnly) {
        await retainedBarrier(client);
        retainedDone = true;
        done.resolve(0);
      }
    })();
    work.catch((e) => done.reject(e));
    return await done.promise;
  } finally {
    clearTimeout(timer);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await client.stop();
  }
}

/** `mqtttools read TOPIC`: the payload of the first message, for value=$(...). */
export function readCommand(argv: string[]): Promise<number> {
  return subscribeCommand(argv, true);
}
