/**
 * `mqtttools clear-retained FILTER...`: finds the retained messages matching the filters (a QoS 0
 * subscription, whose retained messages are all in once the broker has answered a following
 * UNSUBSCRIBE), then clears each with an empty retained message, as `mosquitto_sub
 * --remove-retained` does. Asks first on a terminal when more than --confirm-above topics match.
 */
import { parseArgs } from "node:util";
import { confirm, isCancel } from "@clack/prompts";
import pc from "picocolors";
import { Client } from "../lib/client/client";
import { Message } from "../lib/client/message";
import { CONNECTION_HELP, CONNECTION_OPTIONS, clientArguments, describeBroker, preparePasswordPrompt } from "./connection";
import { retainedBarrier } from "./subscribe";
import { integerFlag, UsageError } from "./usage";

/** Help text of the clear-retained command. */
export const CLEAR_RETAINED_HELP = `${pc.bold("Usage:")} mqtttools clear-retained [options] FILTER...

Clears the retained messages of the topics matching the filters: prints each topic on stdout,
publishes an empty retained message to it (QoS 1), and ends with
  Cleared 3 retained message(s).
on stderr (with the "Connecting to" line). The same as 'mosquitto_sub --remove-retained -t FILTER'
(and 'mosquitto_pub -r -n -t TOPIC' for each topic), but it exits when done.

Options:
  -t, --topic FILTER          a filter (repeatable), beside the positional ones
  --dry-run                   print the topics that would be cleared, clear nothing
  --confirm-above N           on a terminal, ask before clearing more than N topics (default 10)
  -y, --yes                   do not ask
  -h, --help                  show this help

Exit status: 0 done (also when nothing matched), 1 a run-time error or the question declined,
2 a usage error.

${CONNECTION_HELP}`;

/** Runs the clear-retained command; resolves with the exit code. */
export async function clearRetainedCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: preparePasswordPrompt(argv),
    options: {
      ...CONNECTION_OPTIONS,
      topic: { type: "string", short: "t", multiple: true },
      "dry-run": { type: "boolean" },
      "confirm-above": { type: "string" },
      yes: { type: "boolean", short: "y" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(CLEAR_RETAINED_HELP);
    return 0;
  }
  const filters = [...(values.topic ?? []), ...positionals];
  if (filters.length === 0) throw new UsageError("missing FILTER");
  const confirmAbove = integerFlag("confirm-above", values["confirm-above"] ?? "10", 0);
  const [host, port, options] = await clientArguments(values);

  console.error(`Connecting to '${describeBroker(host, port)}'.`);
  const client = new Client(host, port, { ...options, connectDelays: [] });
  const topics = new Set<string>();
  let lost = false;
  client.onMessage = (m) => {
    if (m === null) lost = true;
    else if (m.retain && m.payload.length > 0) topics.add(m.topic);
  };
  await client.start();
  try {
    for (const f of filters) await client.subscribe(f, { qos: 0 });
    await retainedBarrier(client);
    for (const f of filters) await client.unsubscribe(f);
    if (lost) throw new Error(`Connection lost: ${client.lastError?.message ?? "the broker closed the connection"}`);
    const list = [...topics].sort();
    for (const t of list) process.stdout.write(t + "\n");
    if (values["dry-run"]) {
      console.error(`${list.length} retained message(s) would be cleared (--dry-run: none was).`);
      return 0;
    }
    if (list.length > confirmAbove && values.yes !== true && process.stdin.isTTY) {
      const answer = await confirm({ message: `Clear ${list.length} retained messages matching ${filters.join(" ")}?`, initialValue: false });
      if (isCancel(answer) || answer !== true) {
        console.error("Nothing cleared.");
        return 1;
      }
    }
    await Promise.all(list.map((t) => client.publish(new Message(t, new Uint8Array(0), { qos: 1, retain: true }))));
    console.error(`Cleared ${list.length} retained message(s).`);
    return 0;
  } finally {
    await client.stop();
  }
}
