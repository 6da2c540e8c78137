/**
 * The connection flags every client command shares (subscribe, publish, monitor): parseArgs
 * option specs, the help block, and clientArguments(), which turns the parsed values into the
 * arguments of `new Client(host, port, options)`.
 *
 * The broker is named by --host/--port, or by a URL (`mqtt://user:pass@host:port`, `mqtts://...`,
 * `ws://host:port/mqtt`, `wss://...`)
 * given as --url or as the --host value. `-P`/`--password` without a value prompts for it on a
 * terminal (preparePasswordPrompt() takes it out of argv before parseArgs sees it).
 */
import type { TLSOptions } from "bun";
import { isCancel, password as promptPassword } from "@clack/prompts";
import type { ClientOptions } from "../lib/client/client";
import type { QoS } from "../lib/codec/constants";
import { isUrl, parseBrokerUrl, type BrokerUrl } from "../lib/client/url";
import { clientLogOptions } from "./log";
import { integerFlag, UsageError } from "./usage";

/** parseArgs option specs of the connection flags. */
export const CONNECTION_OPTIONS = {
  host: { type: "string" },
  port: { type: "string", short: "p" },
  url: { type: "string" },
  "client-id": { type: "string", short: "i" },
  username: { type: "string", short: "u" },
  password: { type: "string", short: "P" },
  tls: { type: "boolean" },
  cafile: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  insecure: { type: "boolean" },
  protocol: { type: "string" },
  "keep-alive": { type: "string" },
  "session-expiry-interval": { type: "string" },
  "will-topic": { type: "string" },
  "will-message": { type: "string" },
  "will-qos": { type: "string" },
  "will-retain": { type: "boolean" },
} as const;

/** The parsed values of the connection flags (as parseArgs returns them). */
export interface ConnectionValues {
  host?: string;
  port?: string;
  url?: string;
  "client-id"?: string;
  username?: string;
  password?: string;
  tls?: boolean;
  cafile?: string;
  cert?: string;
  key?: string;
  insecure?: boolean;
  protocol?: string;
  "keep-alive"?: string;
  "session-expiry-interval"?: string;
  "will-topic"?: string;
  "will-message"?: string;
  "will-qos"?: string;
  "will-retain"?: boolean;
}

/** Help text block of the connection flags. */
export const CONNECTION_HELP = `Connection options:
  --host HOST|URL             broker host (default localhost), or a URL mqtt://user:pass@host:port
                              (mqtts:// for TLS; ws://host:port/mqtt and wss:// for WebSocket)
  -p, --port PORT             broker port (default 1883, 8883 with TLS)
  --url URL                   the broker as a URL, as above
  -i, --client-id ID          client identifier (default mqtttools- and random hex digits)
  -u, --username NAME         user name
  -P, --password [PASSWORD]   password; without a value, asked for on the terminal
  --tls                       connect with TLS (implied by mqtts://, --cafile, --cert, --insecure)
  --cafile FILE               CA certificates (PEM) to verify the broker with
  --cert FILE, --key FILE     client certificate and its private key (PEM)
  --insecure                  do not verify the broker's certificate
  --protocol 5|3.1.1          MQTT version (default 5)
  --keep-alive SECONDS        keep alive (default 60; 0 = none)
  --session-expiry-interval SECONDS
                              keep the session that long after a disconnection (default 0)
  --will-topic TOPIC          last will: topic,
  --will-message TEXT         payload,
  --will-qos 0|1|2            QoS
  --will-retain               and retain flag`;

/** Marker left in argv by preparePasswordPrompt (not a flag anyone types). */
const PROMPT = "\u0000prompt";

/**
 * Finds `-P`/`--password` given without a value (last, or followed by another flag) and gives it
 * the prompt marker, so that parseArgs accepts it; clientArguments() then asks on the terminal.
 */
export function preparePasswordPrompt(argv: string[]): string[] {
  const out = [...argv];
  for (let i = 0; i < out.length; i++) {
    if (out[i] === "--") break;
    if (out[i] !== "-P" && out[i] !== "--password") continue;
    const next = out[i + 1];
    if (next === undefined || (next.startsWith("-") && next.length > 1)) {
      out.splice(i + 1, 0, PROMPT);
    }
    i++;
  }
  return out;
}

/** Checks a QoS flag value. */
export function qosFlag(flag: string, value: string | undefined): QoS {
  if (value === undefined) return 0;
  if (value !== "0" && value !== "1" && value !== "2") throw new UsageError(`--${flag} must be 0, 1 or 2, not '${value}'`);
  return Number(value) as QoS;
}

async function readPem(flag: string, path: string): Promise<string> {
  try {
    return await Bun.file(path).text();
  } catch (e) {
    throw new Error(`cannot read --${flag} '${path}': ${(e as Error).message}`);
  }
}

/** The broker address as `host:port`, the way commands print it. */
export function describeBroker(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Turns the parsed connection flags into the arguments of `new Client(host, port, options)`. */
export async function clientArguments(values: ConnectionValues): Promise<[string, number, ClientOptions]> {
  let host = values.host ?? "localhost";
  let port: number | undefined;
  let username = values.username;
  let password = values.password;
  let tls = values.tls === true;
  let websocketPath: string | null = null;
  const url = values.url ?? (isUrl(host) ? host : undefined);
  if (url !== undefined) {
    let u: BrokerUrl;
    try {
      u = parseBrokerUrl(url);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (u.tls) tls = true;
    host = u.host;
    websocketPath = u.websocketPath;
    if (u.portGiven || websocketPath !== null) port = u.port; // else the default below, which --tls may change
    if (u.username !== undefined) username ??= u.username;
    if (u.password !== undefined) password ??= u.password;
  }
  if (values.port !== undefined) port = integerFlag("port", values.port, 1, 65535);

  if (password === PROMPT) {
    if (!process.stdin.isTTY) throw new UsageError("--password needs a value (there is no terminal to ask for it on)");
    const answer = await promptPassword({ message: `Password${username !== undefined ? ` for ${username}` : ""}:` });
    if (isCancel(answer)) throw new UsageError("no password given");
    password = answer;
  }

  const options: ClientOptions = { ...clientLogOptions() };
  if (values["client-id"] !== undefined) options.clientId = values["client-id"];
  if (username !== undefined) options.username = username;
  if (password !== undefined) options.password = password;

  if (values.cafile !== undefined || values.cert !== undefined || values.key !== undefined || values.insecure) tls = true;
  if ((values.cert === undefined) !== (values.key === undefined)) throw new UsageError("--cert and --key go together");
  if (tls) {
    const t: TLSOptions = {};
    if (values.cafile !== undefined) t.ca = await readPem("cafile", values.cafile);
    if (values.cert !== undefined) t.cert = await readPem("cert", values.cert);
    if (values.key !== undefined) t.key = await readPem("key", values.key);
    if (values.insecure) t.rejectUnauthorized = false;
    options.tls = Object.keys(t).length === 0 ? true : t;
  }
  port ??= tls ? 8883 : 1883;
  if (websocketPath !== null) options.websocket = { path: websocketPath };

  if (values.protocol !== undefined) {
    const v = values.protocol;
    if (v === "5" || v === "5.0") options.protocolVersion = 5;
    else if (v === "3.1.1" || v === "4" || v === "311") options.protocolVersion = 4;
    else throw new UsageError(`--protocol must be 5 or 3.1.1, not '${v}'`);
  }
  if (values["keep-alive"] !== undefined) options.keepAliveS = integerFlag("keep-alive", values["keep-alive"], 0, 65535);
  if (values["session-expiry-interval"] !== undefined) {
    options.sessionExpiryInterval = integerFlag("session-expiry-interval", values["session-expiry-interval"], 0, 0xffffffff);
  }
  const willTopic = values["will-topic"];
  if (willTopic === undefined) {
    for (const f of ["will-message", "will-qos", "will-retain"] as const) {
      if (values[f] !== undefined) throw new UsageError(`--${f} needs --will-topic`);
    }
  } else {
    if (willTopic === "") throw new UsageError("--will-topic must not be empty");
    options.willTopic = willTopic;
    options.willMessage = values["will-message"] ?? "";
    options.willQos = qosFlag("will-qos", values["will-qos"]);
    options.willRetain = values["will-retain"] === true;
  }
  return [host, port, options];
}
