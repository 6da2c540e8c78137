/** `mqtttools broker`: runs the broker until Ctrl-C or SIGTERM. */
import { parseArgs } from "node:util";
import pc from "picocolors";
import { Broker, type LogLevel } from "../lib/broker/broker";
import { DEFAULT_OPTIONS, type BrokerOptions } from "../lib/broker/options";
import { UsageError } from "./usage";

/** Help text of the broker command. */
export const BROKER_HELP = `${pc.bold("Usage:")} mqtttools broker [options]

Runs an MQTT 5.0 / 3.1.1 broker.

Options:
  --host HOST                 address to listen on (default localhost)
  -p, --port PORT             port to listen on (default 1883; 0 = any free port)
  --max-connections N         most simultaneous clients (default ${DEFAULT_OPTIONS.maxConnections})
  --max-packet-size BYTES     largest packet accepted (default ${DEFAULT_OPTIONS.maxPacketSize})
  --max-queued-messages N     QoS 1/2 messages kept per client (default ${DEFAULT_OPTIONS.maxQueuedMessages})
  --max-queued-bytes BYTES    bytes kept in a client's queue (default ${DEFAULT_OPTIONS.maxQueuedBytes})
  --max-output-bytes BYTES    unsent bytes per connection before QoS 0 is dropped (default ${DEFAULT_OPTIONS.maxOutputBytes})
  --max-inflight N            unacknowledged QoS 1/2 messages per client (default ${DEFAULT_OPTIONS.maxInflight})
  --connect-timeout SECONDS   time a new connection has to send CONNECT (default ${DEFAULT_OPTIONS.connectTimeoutMs / 1000})
  --max-keep-alive SECONDS    longest keep alive granted, 0 = any (default ${DEFAULT_OPTIONS.maxKeepAlive})
  --log-level LEVEL           debug, info, warning or error (default info)
  -h, --help                  show this help`;

const LIMIT_FLAGS: Record<string, keyof BrokerOptions> = {
  "max-connections": "maxConnections",
  "max-packet-size": "maxPacketSize",
  "max-queued-messages": "maxQueuedMessages",
  "max-queued-bytes": "maxQueuedBytes",
  "max-output-bytes": "maxOutputBytes",
  "max-inflight": "maxInflight",
  "max-keep-alive": "maxKeepAlive",
};

function integer(flag: string, value: string, min = 0): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} must be an integer of at least ${min}, not '${value}'`);
  return n;
}

/** Runs the broker command; resolves with the exit code once the broker has stopped. */
export async function brokerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: "localhost" },
      port: { type: "string", short: "p", default: "1883" },
      "connect-timeout": { type: "string" },
      "log-level": { type: "string", default: "info" },
      help: { type: "boolean", short: "h" },
      ...Object.fromEntries(Object.keys(LIMIT_FLAGS).map((f) => [f, { type: "string" as const }])),
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(BROKER_HELP);
    return 0;
  }
  const limits: Partial<BrokerOptions> = {};
  for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
    const v = values[flag as keyof typeof values];
    if (typeof v === "string") (limits as Record<string, number>)[key] = integer(flag, v, key === "maxKeepAlive" ? 0 : 1);
  }
  if (values["connect-timeout"] !== undefined) limits.connectTimeoutMs = integer("connect-timeout", values["connect-timeout"], 1) * 1000;
  const logLevel = values["log-level"] as string;
  if (!["debug", "info", "warning", "error"].includes(logLevel)) throw new UsageError(`--log-level must be debug, info, warning or error, not '${logLevel}'`);
  const port = integer("port", values.port as string);
  if (port > 65535) throw new UsageError(`--port must be at most 65535, not ${port}`);

  const broker = new Broker([[values.host as string, port]], { ...limits, logLevel: logLevel as LogLevel });
  const ports = await broker.start();
  console.log(`Listening on ${values.host}:${ports[0]}. Press Ctrl-C to stop.`);
  const stop = () => {
    console.log("Stopping.");
    void broker.stop();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  await broker.serveForever(); // resolves once stop() ran
  return 0;
}
