/**
 * The broker's TOML configuration file (`mqtttools broker --config FILE`) and its printer
 * (`--print-config`).
 *
 * One table, OPTIONS, says where each BrokerOptions field lives in the file ([limits], [mqtt],
 * [auth], [persistence], [sys]; `redirect` and `http` are [redirect] and [http] tables of their own), and what values it
 * takes. readConfig() checks every key against it: an unknown key, or a value of the wrong type
 * or range, is a one-line UsageError naming the file, the key and what was expected.
 * printConfig() writes every option from the same table, defaults included, so that its output
 * read back with --config gives the same configuration (and prints the same text again). An
 * option whose value is null (no password file, the memory bound computed at start, ...) is
 * printed as a comment saying what unset means.
 */
import { dirname, resolve } from "node:path";
import { DEFAULT_OPTIONS, SLOW_CONSUMER_POLICIES, type BrokerOptions } from "../lib/broker/options";
import { topicFilterError } from "../lib/topic/validate";
import { DEFAULT_CLUSTER_NAME, type ClusterOptions } from "../lib/broker/cluster/cluster";
import { UsageError } from "./usage";

/** What values a key takes. */
type Kind =
  | { type: "integer"; min: number; max?: number }
  | { type: "boolean" }
  | { type: "string" }
  | { type: "enum"; values: readonly string[] }
  | { type: "filters" }
  | { type: "file" };

/** The tables of the file, in the order printConfig() writes them ([[listener]] comes first). */
export const TABLES = ["limits", "mqtt", "auth", "persistence", "redirect", "sys", "http", "cluster"] as const;
type Table = (typeof TABLES)[number];

/** One option of the file: its table and key, the BrokerOptions field it sets, its values. */
interface OptionSpec {
  table: Table;
  key: string;
  option: keyof BrokerOptions;
  kind: Kind;
  /** For an option that may be null: a value to show in the comment, and what null means. */
  unset?: { example: string; means: string };
}

const int = (min: number, max?: number): Kind => (max === undefined ? { type: "integer", min } : { type: "integer", min, max });
const bool: Kind = { type: "boolean" };

/** Every BrokerOptions field but `redirect` (its own [redirect] table), where it goes in the file. */
export const OPTIONS: readonly OptionSpec[] = [
  { table: "limits", key: "maxConnections", option: "maxConnections", kind: int(1) },
  { table: "limits", key: "maxConnectionRate", option: "maxConnectionRate", kind: int(0) },
  { table: "limits", key: "fdReserve", option: "fdReserve", kind: int(0) },
  { table: "limits", key: "maxMemoryBytes", option: "maxMemoryBytes", kind: int(0), unset: { example: "2147483648", means: "3/4 of the memory available (cgroup or machine); 0 = none" } },
  { table: "limits", key: "maxPacketSize", option: "maxPacketSize", kind: int(1, 268_435_460) },
  { table: "limits", key: "maxQueuedMessages", option: "maxQueuedMessages", kind: int(1) },
  { table: "limits", key: "maxQueuedBytes", option: "maxQueuedBytes", kind: int(1) },
  { table: "limits", key: "maxOutputBytes", option: "maxOutputBytes", kind: int(1) },
  { table: "limits", key: "maxInflight", option: "maxInflight", kind: int(1, 65535) },
  { table: "limits", key: "maxKeepAlive", option: "maxKeepAlive", kind: int(0, 65535) },
  { table: "limits", key: "connectTimeoutMs", option: "connectTimeoutMs", kind: int(1) },
  { table: "limits", key: "slowConsumerPolicy", option: "slowConsumerPolicy", kind: { type: "enum", values: SLOW_CONSUMER_POLICIES } },
  { table: "limits", key: "slowConsumerTimeoutMs", option: "slowConsumerTimeoutMs", kind: int(1) },
  { table: "limits", key: "lingerMs", option: "lingerMs", kind: int(0) },
  { table: "limits", key: "maxLingering", option: "maxLingering", kind: int(0) },
  { table: "limits", key: "maxRetainedMessages", option: "maxRetainedMessages", kind: int(0) },
  { table: "limits", key: "maxRetainedBytes", option: "maxRetainedBytes", kind: int(0) },
  { table: "limits", key: "maxSubscriptionsPerClient", option: "maxSubscriptionsPerClient", kind: int(0) },
  { table: "limits", key: "maxTopicLevels", option: "maxTopicLevels", kind: int(1) },
  { table: "mqtt", key: "receiveMaximum", option: "receiveMaximum", kind: int(1, 65535) },
  { table: "mqtt", key: "maximumQoS", option: "maximumQoS", kind: int(0, 2) },
  { table: "mqtt", key: "retainAvailable", option: "retainAvailable", kind: bool },
  { table: "mqtt", key: "topicAliasMaximum", option: "topicAliasMaximum", kind: int(0, 65535) },
  { table: "mqtt", key: "wildcardSubscriptionAvailable", option: "wildcardSubscriptionAvailable", kind: bool },
  { table: "mqtt", key: "subscriptionIdentifierAvailable", option: "subscriptionIdentifierAvailable", kind: bool },
  { table: "mqtt", key: "sharedSubscriptionAvailable", option: "sharedSubscriptionAvailable", kind: bool },
  { table: "mqtt", key: "responseInformation", option: "responseInformation", kind: { type: "string" } },
  { table: "auth", key: "passwordFile", option: "passwordFile", kind: { type: "file" }, unset: { example: '"passwords"', means: "no password check" } },
  { table: "auth", key: "allowAnonymous", option: "allowAnonymous", kind: bool, unset: { example: "false", means: "clients without a user name only when there is no password file" } },
  { table: "auth", key: "aclFile", option: "aclFile", kind: { type: "file" }, unset: { example: '"acl"', means: "no access rules" } },
  { table: "auth", key: "deniedTopicFilters", option: "deniedTopicFilters", kind: { type: "filters" } },
  { table: "persistence", key: "file", option: "persistenceFile", kind: { type: "file" }, unset: { example: '"broker.db"', means: "memory only" } },
  { table: "persistence", key: "durability", option: "durability", kind: { type: "enum", values: ["process", "power"] } },
  { table: "sys", key: "sysIntervalMs", option: "sysIntervalMs", kind: int(0) },
];

/** Keys of [cluster]: BrokerOptions.cluster. */
const CLUSTER_KEYS = ["servers", "name", "user", "pass", "token", "credsFile", "replicas"];

/** Cluster names: they make NATS subjects and a bucket name. */
const CLUSTER_NAME = /^[A-Za-z0-9_-]+$/;

/** NATS server URLs from a flag (comma-separated) or the config file (an array), checked. */
export function clusterServers(what: string, list: unknown): string[] {
  const servers = typeof list === "string" ? list.split(",").map((s) => s.trim()).filter((s) => s !== "") : list;
  if (!Array.isArray(servers) || servers.length === 0 || !servers.every((s) => typeof s === "string" && /^(nats|tls):\/\/[^\s,]+$/.test(s))) {
    throw new UsageError(`${what} takes NATS server URLs such as nats://host:4222, not ${JSON.stringify(list)}`);
  }
  return servers as string[];
}

/** A cluster name from a flag or the config file, checked. */
export function clusterName(what: string, v: unknown): string {
  if (typeof v !== "string" || !CLUSTER_NAME.test(v)) throw new UsageError(`${what} must be letters, digits, '-' and '_', not ${JSON.stringify(v)}`);
  return v;
}

/** JetStream replicas of the cluster's stream and bucket, from a flag or the config file, checked. */
export function clusterReplicas(what: string, v: unknown): number {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 5) throw new UsageError(`${what} must be an integer from 1 to 5 (JetStream's limit), not ${JSON.stringify(v)}`);
  return n;
}

/** Keys of [http]: BrokerOptions.http, `{ host, port }`. */
const HTTP_KEYS = ["host", "port"];

/** Keys of [redirect]: BrokerOptions.redirect, `{ reference, permanent }`. */
const REDIRECT_KEYS = ["reference", "permanent"];

/** Keys of a [[listener]] table. */
const LISTENER_KEYS = ["host", "port", "certfile", "keyfile", "cafile", "protocol", "path", "trustProxy"];

/** Keys that were once taken and are refused with a message saying why. */
const GONE: Record<string, string> = {
  "persistence.intervalMs": "every change is committed before the packet that acknowledges it leaves (see durability)",
  "persistence.sessionSaveIntervalMs": "every change is committed before the packet that acknowledges it leaves (see durability)",
};

/** A listener of the config file or the flags; file names absolute. */
export interface ListenerSpec {
  host: string;
  port: number;
  certfile?: string;
  keyfile?: string;
  cafile?: string;
  /** "websocket": MQTT over WebSocket (with TLS files: wss); absent: MQTT over TCP. */
  protocol?: "mqtt" | "websocket";
  /** WebSocket only: the path clients connect to (default /mqtt; "*": any). */
  path?: string;
  /** WebSocket only: log the client address from X-Forwarded-For. */
  trustProxy?: boolean;
}

/** What a config file holds: its listeners (none: the flags' default) and the options it sets. */
export interface BrokerConfig {
  listeners: ListenerSpec[];
  options: Partial<BrokerOptions>;
}

/** How a kind's values are described in an error. */
function expected(kind: Kind): string {
  switch (kind.type) {
    case "integer":
      return kind.max === undefined ? `an integer of at least ${kind.min}` : `an integer from ${kind.min} to ${kind.max}`;
    case "boolean":
      return "true or false";
    case "string":
      return "a string";
    case "enum":
      return `one of ${kind.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "filters":
      return 'an array of topic filters, such as ["secret/#"]';
    case "file":
      return "a file name (a string)";
  }
}

/** A TOML value as the error shows it. */
function shown(v: unknown): string {
  if (Array.isArray(v) || (typeof v === "object" && v !== null)) return JSON.stringify(v);
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/** Checks `v` against `kind`: the value, or an error text (the filter that is wrong, or what was expected). */
function check(v: unknown, kind: Kind): { ok: true; value: unknown } | { ok: false; why: string } {
  const no = { ok: false as const, why: `must be ${expected(kind)}, not ${shown(v)}` };
  switch (kind.type) {
    case "integer":
      if (typeof v !== "number" || !Number.isInteger(v) || v < kind.min || (kind.max !== undefined && v > kind.max)) return no;
      return { ok: true, value: v };
    case "boolean":
      return typeof v === "boolean" ? { ok: true, value: v } : no;
    case "string":
    case "file":
      return typeof v === "string" && (kind.type === "string" || v !== "") ? { ok: true, value: v } : no;
    case "enum":
      return typeof v === "string" && kind.values.includes(v) ? { ok: true, value: v } : no;
    case "filters": {
      if (!Array.isArray(v) || !v.every((f) => typeof f === "string")) return no;
      for (const f of v as string[]) {
        const error = topicFilterError(f);
        if (error !== null) return { ok: false, why: `holds ${JSON.stringify(f)}, which is not a valid topic filter: ${error}` };
      }
      return { ok: true, value: [...(v as string[])] };
    }
  }
}

const isTable = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Reads and checks a config file; file names in it are made absolute, relative to the file. */
export async function readConfig(path: string): Promise<BrokerConfig> {
  let doc: Record<string, unknown>;
  try {
    doc = Bun.TOML.parse(await Bun.file(path).text()) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`cannot read --config '${path}': ${(e as Error).message}`);
  }
  const bad = (what: string) => new UsageError(`--config '${path}': ${what}`);
  const dir = dirname(resolve(path));
  for (const key of Object.keys(doc)) {
    if (key !== "listener" && !(TABLES as readonly string[]).includes(key)) {
      throw bad(`unknown key '${key}' (expected [[listener]], ${TABLES.map((t) => `[${t}]`).join(", ")})`);
    }
    if (key !== "listener" && !isTable(doc[key])) throw bad(`'${key}' must be a table ([${key}])`);
  }

  const listeners: ListenerSpec[] = [];
  const list = doc.listener ?? [];
  if (!Array.isArray(list) || !list.every(isTable)) throw bad("'listener' must be an array of tables ([[listener]])");
  for (const [i, l] of (list as Record<string, unknown>[]).entries()) {
    const what = `[[listener]] ${i + 1}`;
    for (const key of Object.keys(l)) if (!LISTENER_KEYS.includes(key)) throw bad(`unknown key '${key}' in ${what} (expected ${LISTENER_KEYS.join(", ")})`);
    for (const key of ["host", "certfile", "keyfile", "cafile"]) {
      if (l[key] !== undefined && (typeof l[key] !== "string" || l[key] === "")) throw bad(`${what} ${key} must be ${key === "host" ? "a host name" : "a file name"} (a string), not ${shown(l[key])}`);
    }
    const tls = l.certfile !== undefined || l.keyfile !== undefined;
    const port = l.port ?? (l.protocol === "websocket" ? (tls ? 8081 : 8080) : tls ? 8883 : 1883);
    if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) throw bad(`${what} port must be an integer from 0 to 65535, not ${shown(port)}`);
    if (tls && (l.certfile === undefined || l.keyfile === undefined)) throw bad(`${what}: certfile and keyfile go together`);
    if (!tls && l.cafile !== undefined) throw bad(`${what}: cafile needs certfile and keyfile`);
    const protocol = l.protocol ?? "mqtt";
    if (protocol !== "mqtt" && protocol !== "websocket") throw bad(`${what} protocol must be "mqtt" or "websocket", not ${shown(protocol)}`);
    if (protocol === "mqtt" && (l.path !== undefined || l.trustProxy !== undefined)) throw bad(`${what}: path and trustProxy need protocol = "websocket"`);
    if (l.path !== undefined && (typeof l.path !== "string" || (l.path !== "*" && !l.path.startsWith("/")))) throw bad(`${what} path must start with / (or be "*"), not ${shown(l.path)}`);
    if (l.trustProxy !== undefined && typeof l.trustProxy !== "boolean") throw bad(`${what} trustProxy must be true or false, not ${shown(l.trustProxy)}`);
    const spec: ListenerSpec = { host: (l.host as string | undefined) ?? "localhost", port };
    for (const key of ["certfile", "keyfile", "cafile"] as const) if (l[key] !== undefined) spec[key] = resolve(dir, l[key] as string);
    if (protocol === "websocket") {
      spec.protocol = "websocket";
      if (l.path !== undefined) spec.path = l.path as string;
      if (l.trustProxy !== undefined) spec.trustProxy = l.trustProxy as boolean;
    }
    listeners.push(spec);
  }

  const options: Partial<BrokerOptions> = {};
  const set = options as Record<string, unknown>;
  for (const table of TABLES) {
    const t = doc[table] as Record<string, unknown> | undefined;
    if (t === undefined) continue;
    if (table === "redirect") {
      for (const key of Object.keys(t)) if (!REDIRECT_KEYS.includes(key)) throw bad(`unknown key '${key}' in [redirect] (expected ${REDIRECT_KEYS.join(", ")})`);
      if (typeof t.reference !== "string" || t.reference === "") throw bad(`[redirect] reference must be a server reference such as "other.example:1883" (a string), not ${t.reference === undefined ? "missing" : shown(t.reference)}`);
      if (t.permanent !== undefined && typeof t.permanent !== "boolean") throw bad(`[redirect] permanent must be true or false, not ${shown(t.permanent)}`);
      options.redirect = { reference: t.reference, permanent: t.permanent === true };
      continue;
    }
    if (table === "cluster") {
      for (const key of Object.keys(t)) if (!CLUSTER_KEYS.includes(key)) throw bad(`unknown key '${key}' in [cluster] (expected ${CLUSTER_KEYS.join(", ")})`);
      if (t.servers === undefined) throw bad("[cluster] needs servers");
      const cluster: ClusterOptions = { servers: clusterServers(`--config '${path}': [cluster] servers`, t.servers), name: t.name === undefined ? DEFAULT_CLUSTER_NAME : clusterName(`--config '${path}': [cluster] name`, t.name) };
      for (const key of ["user", "pass", "token", "credsFile"] as const) {
        const v = t[key];
        if (v === undefined) continue;
        if (typeof v !== "string" || v === "") throw bad(`[cluster] ${key} must be a string, not ${shown(v)}`);
        cluster[key] = key === "credsFile" ? resolve(dir, v) : v;
      }
      if (t.replicas !== undefined) cluster.replicas = clusterReplicas(`--config '${path}': [cluster] replicas`, t.replicas);
      options.cluster = cluster;
      continue;
    }
    if (table === "http") {
      for (const key of Object.keys(t)) if (!HTTP_KEYS.includes(key)) throw bad(`unknown key '${key}' in [http] (expected ${HTTP_KEYS.join(", ")})`);
      const host = t.host ?? "localhost";
      if (typeof host !== "string" || host === "") throw bad(`[http] host must be a host name or address (a string), not ${shown(host)}`);
      if (typeof t.port !== "number" || !Number.isInteger(t.port) || t.port < 0 || t.port > 65535) throw bad(`[http] port must be an integer from 0 to 65535, not ${t.port === undefined ? "missing" : shown(t.port)}`);
      options.http = { host, port: t.port };
      continue;
    }
    const specs = OPTIONS.filter((o) => o.table === table);
    for (const [key, v] of Object.entries(t)) {
      const gone = GONE[`${table}.${key}`];
      if (gone !== undefined) throw bad(`[${table}] ${key} is gone: ${gone}`);
      const spec = specs.find((o) => o.key === key);
      if (spec === undefined) throw bad(`unknown key '${key}' in [${table}] (expected ${specs.map((o) => o.key).join(", ")})`);
      const r = check(v, spec.kind);
      if (!r.ok) throw bad(`[${table}] ${key} ${r.why}`);
      set[spec.option] = spec.kind.type === "file" ? resolve(dir, r.value as string) : r.value;
    }
  }
  return { listeners, options };
}

/** A value as TOML. */
function toml(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v); // JSON's escapes are TOML's basic-string escapes
  if (Array.isArray(v)) return `[${v.map(toml).join(", ")}]`;
  return String(v);
}

/**
 * The configuration as a TOML file that --config reads back unchanged: the listeners, then every
 * option of OPTIONS and `redirect`, defaults included; null ones as comments.
 */
export function printConfig(listeners: ListenerSpec[], options: Partial<BrokerOptions>): string {
  const o: BrokerOptions = { ...DEFAULT_OPTIONS, ...options };
  const lines = [
    "# mqtttools broker configuration: every setting, defaults included (mqtttools broker --print-config).",
    "# Use it with: mqtttools broker --config FILE. Commented-out settings are unset; the comment says what that means.",
  ];
  for (const l of listeners) {
    lines.push("", "[[listener]]", `host = ${toml(l.host)}`, `port = ${l.port}`);
    for (const key of ["certfile", "keyfile", "cafile"] as const) if (l[key] !== undefined) lines.push(`${key} = ${toml(l[key])}`);
    if (l.protocol === "websocket") lines.push('protocol = "websocket"', `path = ${toml(l.path ?? "/mqtt")}`, `trustProxy = ${l.trustProxy === true}`);
  }
  for (const table of TABLES) {
    lines.push("");
    if (table === "redirect") {
      if (o.redirect === null) {
        lines.push("# [redirect]                  # unset: clients are served, not redirected", '# reference = "other.example:1883"', "# permanent = false");
      } else lines.push("[redirect]", `reference = ${toml(o.redirect.reference)}`, `permanent = ${o.redirect.permanent}`);
      continue;
    }
    if (table === "cluster") {
      if (o.cluster === null) lines.push("# [cluster]                   # unset: a lone broker", '# servers = ["nats://localhost:4222"]', `# name = "${DEFAULT_CLUSTER_NAME}"`);
      else {
        lines.push("[cluster]", `servers = [${o.cluster.servers.map(toml).join(", ")}]`, `name = ${toml(o.cluster.name)}`);
        for (const key of ["user", "pass", "token", "credsFile"] as const) if (o.cluster[key] !== undefined) lines.push(`${key} = ${toml(o.cluster[key])}`);
        lines.push(o.cluster.replicas !== undefined ? `replicas = ${o.cluster.replicas}` : "# replicas = 3               # unset: the NATS cluster's servers, at most 3");
      }
      continue;
    }
    if (table === "http") {
      if (o.http === null) lines.push("# [http]                      # unset: no HTTP endpoint (/metrics, /livez, /readyz)", '# host = "localhost"', "# port = 8080");
      else lines.push("[http]", `host = ${toml(o.http.host)}`, `port = ${o.http.port}`);
      continue;
    }
    lines.push(`[${table}]`);
    for (const spec of OPTIONS.filter((s) => s.table === table)) {
      const v = o[spec.option];
      if (v === null) lines.push(`# ${spec.key} = ${spec.unset?.example ?? ""}   # unset: ${spec.unset?.means ?? "none"}`);
      else lines.push(`${spec.key} = ${toml(v)}`);
    }
  }
  return lines.join("\n");
}
