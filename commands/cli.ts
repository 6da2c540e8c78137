/** The command-line entry: parses the first word and dispatches to a command. */
import pc from "picocolors";
import pkg from "../package.json" with { type: "json" };
import { UsageError } from "./usage";

/** The help text of the top-level command. */
export function helpText(): string {
  return [
    `${pc.bold("mqtttools")} ${pkg.version}: ${pkg.description}`,
    "",
    `${pc.bold("Usage:")} mqtttools <command> [options]`,
    "",
    `${pc.bold("Commands:")}`,
    "  broker      run an MQTT broker (mqtttools broker --help)",
    "",
    "Coming next: subscribe, publish, monitor.",
    "",
    `${pc.bold("Options:")}`,
    "  -h, --help     show this help",
    "  -V, --version  print the version",
  ].join("\n");
}

/** The commands, by name; each resolves with its exit code. */
const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  broker: async (argv) => (await import("./broker")).brokerCommand(argv),
};

/** Runs the CLI with `argv` (without the runtime and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
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
