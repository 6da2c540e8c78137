/**
 * `mqtttools rr TOPIC MESSAGE --response-topic T`: MQTT 5 request/response, the counterpart of
 * mosquitto_rr. Subscribes to the response topic, publishes the request with the Response Topic
 * and Correlation Data properties, prints the first response and exits.
 */
import { parseArgs } from "node:util";
import pc from "picocolors";
import { Client } from "../lib/client/client";
import { Message, type MessageOptions } from "../lib/client/message";
import { CONNECTION_HELP, CONNECTION_OPTIONS, clientArguments, describeBroker, preparePasswordPrompt, qosFlag } from "./connection";
import { outputMode, printMessage, received } from "./output";
import { secondsFlag, TIMED_OUT } from "./subscribe";
import { UsageError } from "./usage";

/** Help text of the rr command. */
export const RR_HELP = `${pc.bold("Usage:")} mqtttools rr [options] TOPIC MESSAGE --response-topic RESPONSE_TOPIC
       mqtttools rr [options] -t TOPIC -m MESSAGE -e RESPONSE_TOPIC

Publishes a request to TOPIC with a Response Topic and Correlation Data (MQTT 5), waits for the
first response on RESPONSE_TOPIC and prints its payload, as mosquitto_rr does. A response whose
Correlation Data differs from the request's is not the answer and is skipped; one without any is
taken (a responder that does not copy it back).

Options:
  -e, --response-topic TOPIC  where the response comes (required)
  -t, --topic TOPIC           the request topic (instead of the positional TOPIC)
  -m, --message MESSAGE       the request (instead of the positional MESSAGE; default empty)
  --correlation-data DATA     the correlation data (default: a random UUID)
  -q, --qos 0|1|2             QoS of the request and of the response subscription (default 0)
  --user-property KEY=VALUE   a user property of the request; repeatable
  -W, --timeout SECONDS       give up after SECONDS with status ${TIMED_OUT} (default: wait, as mosquitto_rr)
  -v, --verbose               print 'topic payload' of the response
  -F, --format FORMAT         json, or a template as in 'mqtttools subscribe --help'
  -N                          no newline after the payload
  -h, --help                  show this help

Exit status: 0 a response came, 1 a run-time error, 2 a usage error, ${TIMED_OUT} -W timed out.

${CONNECTION_HELP}`;

/** Runs the rr command; resolves with the exit code. */
export async function rrCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: preparePasswordPrompt(argv),
    options: {
      ...CONNECTION_OPTIONS,
      "response-topic": { type: "string", short: "e" },
      topic: { type: "string", short: "t" },
      message: { type: "string", short: "m" },
      "correlation-data": { type: "string" },
      qos: { type: "string", short: "q" },
      "user-property": { type: "string", multiple: true },
      timeout: { type: "string", short: "W" },
      verbose: { type: "boolean", short: "v" },
      format: { type: "string", short: "F" },
      N: { type: "boolean", short: "N" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(RR_HELP);
    return 0;
  }
  const rest = [...positionals];
  const topic = values.topic ?? rest.shift();
  if (topic === undefined) throw new UsageError("missing TOPIC");
  const request = values.message ?? rest.shift() ?? "";
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const responseTopic = values["response-topic"];
  if (responseTopic === undefined) throw new UsageError("missing --response-topic");
  const qos = qosFlag("qos", values.qos);
  const timeoutS = values.timeout === undefined ? null : secondsFlag("timeout", values.timeout);
  const verbose = values.verbose === true;
  const mode = outputMode(values.format, verbose, !verbose && values.format === undefined);
  const correlation = new TextEncoder().encode(values["correlation-data"] ?? crypto.randomUUID());
  const messageOptions: MessageOptions = { qos, responseTopic, correlationData: correlation };
  if (values["user-property"] !== undefined) {
    messageOptions.userProperties = values["user-property"].map((kv) => {
      const eq = kv.indexOf("=");
      if (eq < 1) throw new UsageError(`--user-property must be KEY=VALUE, not '${kv}'`);
      return [kv.slice(0, eq), kv.slice(eq + 1)] as [string, string];
    });
  }
  const [host, port, options] = await clientArguments(values);
  if (options.protocolVersion === 4) throw new UsageError("rr needs MQTT 5 (Response Topic and Correlation Data are MQTT 5 properties)");

  const client = new Client(host, port, { ...options, connectDelays: [] });
  const done = Promise.withResolvers<number>();
  const same = (a: Uint8Array) => a.length === correlation.length && a.every((b, i) => b === correlation[i]);
  client.onMessage = (m) => {
    if (m === null) {
      done.reject(new Error(`Connection lost: ${client.lastError?.message ?? "the broker closed the connection"}`));
      return;
    }
    if (m.correlationData !== undefined && !same(m.correlationData)) return;
    printMessage(received(m), mode, { newline: values.N !== true, timestamps: false });
    done.resolve(0);
  };
  let timer: Timer | undefined;
  if (timeoutS !== null) {
    timer = setTimeout(() => {
      console.error("Timed out");
      done.resolve(TIMED_OUT);
    }, timeoutS * 1000);
  }
  const stop = () => done.resolve(130);
  process.once("SIGINT", stop);
  try {
    console.error(`Connecting to '${describeBroker(host, port)}'.`);
    const work = (async () => {
      await client.start();
      // retainHandling 2: a retained message on the response topic is no answer to this request
      await client.subscribe(responseTopic, { qos, retainHandling: 2 });
      await client.publish(new Message(topic, request, messageOptions));
    })();
    work.catch((e) => done.reject(e));
    return await done.promise;
  } finally {
    clearTimeout(timer);
    process.off("SIGINT", stop);
    await client.stop();
  }
}
