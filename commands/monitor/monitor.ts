/**
 * `mqtttools monitor TOPIC...`: a full-screen view of the latest message of every topic matching
 * the filters, drawn by the project's own ANSI renderer (renderer.ts) from the model (model.ts)
 * through the screens of view.ts.
 *
 * Each message only updates the model and marks the screen dirty; frames are drawn at most 30
 * times a second. The terminal is restored on every way out: q, Ctrl-C, SIGINT/SIGTERM, a lost
 * first connection, or an error (try/finally here, and the renderer's process 'exit' handler).
 */
import { parseArgs } from "node:util";
import pc from "picocolors";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { CONNECTION_HELP, CONNECTION_OPTIONS, clientArguments, describeBroker, preparePasswordPrompt, qosFlag } from "../connection";
import { UsageError } from "../usage";
import { MonitorModel } from "../../lib/monitor/model";
import { Renderer } from "./renderer";
import { drawFrame, handleKey, initialState } from "./view";

/** Help text of the monitor command. */
export const MONITOR_HELP = `${pc.bold("Usage:")} mqtttools monitor [options] TOPIC...

Shows the latest message of every topic matching the filters in a full-screen view:
  q: Quit, p: Play/Pause (the view freezes, counting goes on), f: Format (auto, binary, text),
  ↑ ↓ PgUp PgDn Home End: select, Enter: the selected topic's history (Esc/Enter: back),
  /: filter topics by substring (Enter: apply, Esc: clear), t: topic tree with counts per branch,
  c: clear the selected topic's retained message (an empty retained message, QoS 1), after y.

Options:
  -q, --qos 0|1|2             QoS of the subscriptions (default 0)
  -h, --help                  show this help

${CONNECTION_HELP}`;

/** Runs the monitor command; resolves with the exit code. */
export async function monitorCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: preparePasswordPrompt(argv),
    options: {
      ...CONNECTION_OPTIONS,
      qos: { type: "string", short: "q" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    console.log(MONITOR_HELP);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("missing TOPIC");
  const qos = qosFlag("qos", values.qos);
  const model = new MonitorModel();
  const [host, port, options] = await clientArguments(values);
  model.broker = describeBroker(host, port);
  if (!process.stdin.isTTY || !process.stdout.isTTY) throw new UsageError("monitor needs a terminal (stdin and stdout)");

  const state = initialState();
  const done = Promise.withResolvers<void>();
  const renderer = new Renderer(
    (width, height) => drawFrame(model, state, width, height),
    (key) => {
      const action = handleKey(model, state, key);
      if (action === "quit") {
        done.resolve();
        return;
      }
      if (action !== undefined) {
        client.publish(new Message(action.clear, new Uint8Array(0), { qos: 1, retain: true })).then(
          () => { state.notice = `Cleared the retained message of '${action.clear}'.`; },
          (e: Error) => { state.notice = `Could not clear '${action.clear}': ${e.message}`; },
        ).finally(() => renderer.render());
      }
      renderer.render(); // a key press is answered at once
    },
    (e) => done.reject(e), // reported by the CLI as one line, once the terminal is restored
  );

  // the first connection is tried once, so that a wrong address fails at once (exit 1)
  const delays: number[] = [];
  const client = new Client(host, port, { ...options, connectDelays: delays });
  client.onMessage = (m) => {
    if (m === null) model.connected = false;
    else model.add(m.topic, m.payload, m.qos, m.retain);
    renderer.invalidate();
  };
  await client.start();
  const stop = () => done.resolve();
  const ticker = setInterval(() => {
    model.tick();
    model.connected = client.isConnected;
    renderer.invalidate();
  }, 1000);
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    for (const topic of positionals) await client.subscribe(topic, { qos });
    delays.push(1, 2, 4, 8); // later losses are reconnected with the usual delays
    renderer.start();
    await done.promise;
  } finally {
    renderer.stop();
    clearInterval(ticker);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await client.stop();
  }
  return 0;
}
