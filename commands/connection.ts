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
import { homedir } from "node:os";
import { join } from "node:path";
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
  profile: { type: "string" },
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
  profile?: string;
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
  --will-retain               and retain flag
  --profile NAME              connection defaults from [NAME] of ~/.config/mqtttools/config.toml
                              (default: MQTTTOOLS_PROFILE, else [default] when there is one)
Defaults without retyping: MQTTTOOLS_HOST, MQTTTOOLS_PORT, MQTTTOOLS_URL, MQTTTOOLS_USERNAME,
MQTTTOOLS_PASSWORD, MQTTTOOLS_CLIENT_ID, ... (each flag above, upper case, '-' as '_'). A flag
overrides an environment variable, which overrides the profile.`;

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

/** The connection flags that environment variables and profiles may set. */
const DEFAULTABLE = Object.keys(CONNECTION_OPTIONS).filter((k) => k !== "profile") as (keyof ConnectionValues)[];

/** The environment variable of a connection flag: MQTTTOOLS_CLIENT_ID for --client-id. */
export function environmentName(flag: string): string {
  return `MQTTTOOLS_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/** The config file of the profiles: $XDG_CONFIG_HOME/mqtttools/config.toml, else ~/.config/mqtttools/config.toml. */
export function configPath(env: Record<string, string | undefined> = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(base, "mqtttools", "config.toml");
}

/** A flag value from an environment variable or a profile: booleans from true/false/1/0/yes/no. */
function defaultValue(flag: keyof ConnectionValues, value: unknown, where: string): string | boolean {
  if (CONNECTION_OPTIONS[flag].type === "boolean") {
    if (typeof value === "boolean") return value;
    const v = String(value).toLowerCase();
    if (["1", "true", "yes", "on"].includes(v)) return true;
    if (["0", "false", "no", "off", ""].includes(v)) return false;
    throw new UsageError(`${where} must be true or false, not '${value}'`);
  }
  if (typeof value !== "string" && typeof value !== "number") throw new UsageError(`${where} must be a string or a number`);
  return String(value);
}

/** The named profile of the config file ({} when there is no file, or no such profile and none was asked for). */
async function readProfile(name: string | undefined, path: string): Promise<Record<string, unknown>> {
  const file = Bun.file(path);
  if (!(await file.exists())) {
    if (name !== undefined) throw new UsageError(`no profile '${name}': there is no ${path}`);
    return {};
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = Bun.TOML.parse(await file.text()) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`${path}: ${(e as Error).message}`);
  }
  const profile = parsed[name ?? "default"];
  if (profile === undefined) {
    if (name !== undefined) throw new UsageError(`no profile '${name}' in ${path} (it has: ${Object.keys(parsed).join(", ") || "none"})`);
    return {};
  }
  if (typeof profile !== "object" || profile === null || Array.isArray(profile)) throw new UsageError(`${path}: [${name ?? "default"}] must be a table`);
  for (const key of Object.keys(profile)) {
    if (!DEFAULTABLE.includes(key as keyof ConnectionValues)) throw new UsageError(`${path}: [${name ?? "default"}] has an unknown key '${key}' (keys are the long connection flags: ${DEFAULTABLE.join(", ")})`);
  }
  return profile as Record<string, unknown>;
}

/**
 * The connection flags with the defaults filled in: a flag overrides an environment variable
 * (MQTTTOOLS_HOST, ...), which overrides the profile (--profile, MQTTTOOLS_PROFILE, or [default]).
 * The broker's address (host or url) is taken whole from the first layer that names one.
 */
export async function withDefaults(values: ConnectionValues, env: Record<string, string | undefined> = process.env): Promise<ConnectionValues> {
  const fromEnv: Record<string, string | boolean> = {};
  for (const flag of DEFAULTABLE) {
    const v = env[environmentName(flag)];
    if (v !== undefined && v !== "") fromEnv[flag] = defaultValue(flag, v, environmentName(flag));
  }
  const profileName = values.profile ?? (env.MQTTTOOLS_PROFILE || undefined);
  const path = configPath(env);
  const fromFile: Record<string, string | boolean> = {};
  for (const [flag, v] of Object.entries(await readProfile(profileName, path))) {
    fromFile[flag] = defaultValue(flag as keyof ConnectionValues, v, `${flag} in ${path}`);
  }
  const out: Record<string, unknown> = { ...values };
  const names = (o: Record<string, unknown>) => o.host !== undefined || o.url !== undefined;
  const addressTaken = names(out) ? 2 : names(fromEnv) ? 1 : 0;
  for (const [layer, source] of [[1, fromEnv], [0, fromFile]] as const) {
    for (const [flag, v] of Object.entries(source)) {
      if ((flag === "host" || flag === "url") && addressTaken > layer) continue;
      if (out[flag] === undefined) out[flag] = v;
    }
  }
  return out as ConnectionValues;
}

/** Turns the parsed connection flags into the arguments of `new Client(host, port, options)`. */
export async function clientArguments(flags: ConnectionValues): Promise<[string, number, ClientOptions]> {
  const values = await withDefaults(flags);
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
