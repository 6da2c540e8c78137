/** The command-line entry: parses the first word and dispatches to a command. */
import pc from "picocolors";
import pkg from "../package.json" with { type: "json" };

/** The help text of the top-level command. */
export function helpText(): string {
  return [
    `${pc.bold("mqtttools")} ${pkg.version}: ${pkg.description}`,
    "",
    `${pc.bold("Usage:")} mqtttools <command> [options]`,
    "",
    `${pc.bold("Commands")} (arriving with the issues that build them):`,
    "  broker      run an MQTT broker",
    "  subscribe   subscribe to topics and print the messages",
    "  publish     publish messages",
    "  monitor     watch topics in a full-screen terminal view",
    "",
    `${pc.bold("Options:")}`,
    "  -h, --help     show this help",
    "  -V, --version  print the version",
  ].join("\n");
}

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
  console.error(`mqtttools: unknown command '${first}' (see 'mqtttools --help')`);
  return 2;
}
