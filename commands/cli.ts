/** The command-line entry: parses the first word and dispatches to a command. */
import pc from "picocolors";
import pkg from "../package.json" with { type: "json" };
import { parseLogLevel, setLogLevel } from "./log";
import { UsageError } from "./usage";

/** The help text of the top-level command. */
export function helpText(): string {
  return [
    `${pc.bold("mqtttools")} ${pkg.version}: ${pkg.description}`,
    "",
    `${pc.bold("Usage:")} mqtttools [--log-level LEVEL] <command> [options]`,
    "",
    `${pc.bold("Commands:")}`,
    "  broker          run an MQTT broker",
    "  subscribe       subscribe to topics and print the messages",
    "  read            print the payload of a topic's first message and exit (for value=$(...))",
    "  publish         publish messages (or benchmark with --count)",
    "  rr              publish a request and print the response (as mosquitto_rr)",
    "  clear-retained  clear the retained messages matching a filter",
    "  bench           benchmark a broker: bench pub|sub|conn with many clients",
    "  monitor         watch topics in a full-screen terminal view",
    "",
    "Each command has --help.",
    "",
    `${pc.bold("Options:")}`,
    "  -h, --help     show this help",
    "  -V, --version  print the version",
    "  --log-level LEVEL  debug, info, warning or error (default error), before the command:",
    "                     info logs one line per MQTT packet sent or received, debug every field",
  ].join("\n");
}

/** The commands, by name; each resolves with its exit code. */
export const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  broker: async (argv) => (await import("./broker")).brokerCommand(argv),
  subscribe: async (argv) => (await import("./subscribe")).subscribeCommand(argv),
  read: async (argv) => (await import("./subscribe")).readCommand(argv),
  publish: async (argv) => (await import("./publish")).publishCommand(argv),
  rr: async (argv) => (await import("./rr")).rrCommand(argv),
  "clear-retained": async (argv) => (await import("./clear-retained")).clearRetainedCommand(argv),
  bench: async (argv) => (await import("./bench")).benchCommand(argv),
  monitor: async (argv) => (await import("./monitor/monitor")).monitorCommand(argv),
};

/** Runs the CLI with `argv` (without the runtime and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  // global flags, before the command: --log-level LEVEL / --log-level=LEVEL
  while (argv[0]?.startsWith("--log-level")) {
    const [flag, inline] = argv[0].split("=", 2) as [string, string | undefined];
    if (flag !== "--log-level") break;
    try {
      setLogLevel(parseLogLevel(inline ?? argv[1]));
    } catch (e) {
      console.error(`mqtttools: ${(e as Error).message} (see 'mqtttools --help')`);
      return 2;
    }
    argv = argv.slice(inline === undefined ? 2 : 1);
  }
  const [first] = argv;
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    console.log(helpText());
    return 0;
  }
  if (first === "-V" || first === "--version" || first === "version") {
    console.log(pkg.version);
    return 0;
  }
  const command = COMMANDS[first];
  if (command === undefined) {
    console.error(`mqtttools: unknown command '${first}' (see 'mqtttools --help')`);
    return 2;
  }
  try {
    return await command(argv.slice(1));
  } catch (e) {
    // parseArgs reports unknown or malformed flags with a TypeError carrying an ERR_PARSE_ARGS code
    const code = (e as { code?: string }).code;
    if (e instanceof UsageError || code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`mqtttools ${first}: ${(e as Error).message} (see 'mqtttools ${first} --help')`);
      return 2;
    }
    console.error(`mqtttools ${first}: ${(e as Error).message ?? e}`);
    return 1;
  }
}
