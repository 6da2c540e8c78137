/** `mqtttools broker`: runs the broker until Ctrl-C or SIGTERM. */
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { TLSOptions } from "bun";
import pc from "picocolors";
import { Broker } from "../lib/broker/broker";
import { BrokerThread } from "../lib/thread/broker-thread";
import { DEFAULT_OPTIONS, SLOW_CONSUMER_POLICIES, type Address, type BrokerOptions, type SlowConsumerPolicy } from "../lib/broker/options";
import { logLevel as globalLogLevel, parseLogLevel } from "./log";
import { integerFlag, UsageError } from "./usage";
import { DEFAULT_CLUSTER_NAME, type ClusterOptions } from "../lib/broker/cluster/cluster";

/** Help text of the broker command. */
export const BROKER_HELP = `${pc.bold("Usage:")} mqtttools broker [options]

Runs an MQTT 5.0 / 3.1.1 broker.

Options:
  --host HOST                 address to listen on (default localhost)
  -p, --port PORT             port to listen on (default 1883; 0 = any free port)
  --secure-port PORT          TLS port, with --certfile and --keyfile (default 8883)
  --certfile FILE             TLS certificate chain (PEM)
  --keyfile FILE              TLS private key (PEM)
  --cafile FILE               CA certificates (PEM): require client certificates signed by them
  --config FILE.toml          listeners, limits, [auth] and [persistence] from a TOML file;
                              flags override it
  --password-file FILE        users and password hashes in Mosquitto's format (mosquitto_passwd):
                              CONNECT must carry a user name and password the file holds
  --allow-anonymous           with --password-file, let clients without a user name in too
  --acl-file FILE             access rules in Mosquitto's acl_file format: clients read and
                              write only the topics the rules grant them
  --persistence FILE          keep retained messages, sessions and pending wills in this SQLite
                              file: what the broker acknowledges survives a crash (kill -9)
  --durability LEVEL          with --persistence: process (default) survives a crash of the
                              broker process, power (an fsync per commit) the loss of the machine
  --cluster URL[,URL...]      act as one broker with every broker on these NATS servers
                              (nats://host:4222; JetStream on for retained messages)
  --cluster-name NAME         the cluster to join on those servers (default mqtt)
  --sys-interval SECONDS      how often the $SYS/broker/... topics are updated, 0 = none (default 10)
  --max-connections N         most simultaneous clients (default ${DEFAULT_OPTIONS.maxConnections}; also bounded by the
                              file descriptor limit less --fd-reserve)
  --max-connection-rate N     new connections per second per listener; more are closed at once,
                              0 = no bound (default ${DEFAULT_OPTIONS.maxConnectionRate})
  --fd-reserve N              file descriptors kept back from client sockets (default ${DEFAULT_OPTIONS.fdReserve})
  --max-memory-bytes BYTES    RSS above which new clients are refused (0x97) and QoS 0 deliveries
                              dropped, until it falls below 80 %; 0 = none (default 3/4 of memory)
  --max-packet-size BYTES     largest packet accepted (default ${DEFAULT_OPTIONS.maxPacketSize})
  --max-queued-messages N     QoS 1/2 messages kept per client (default ${DEFAULT_OPTIONS.maxQueuedMessages})
  --max-queued-bytes BYTES    bytes kept in a client's queue (default ${DEFAULT_OPTIONS.maxQueuedBytes})
  --max-output-bytes BYTES    unsent bytes per connection before QoS 0 is dropped (default ${DEFAULT_OPTIONS.maxOutputBytes})
  --max-inflight N            unacknowledged QoS 1/2 messages per client (default ${DEFAULT_OPTIONS.maxInflight})
  --slow-consumer-policy P    when a connected client's queue is full: backpressure (hold its
                              publishers back, lose nothing), drop or disconnect (default ${DEFAULT_OPTIONS.slowConsumerPolicy})
  --slow-consumer-timeout S   seconds a client may hold publishers back without acknowledging
                              anything before it is disconnected (default ${DEFAULT_OPTIONS.slowConsumerTimeoutMs / 1000})
  --connect-timeout SECONDS   time a new connection has to send CONNECT (default ${DEFAULT_OPTIONS.connectTimeoutMs / 1000})
  --max-keep-alive SECONDS    longest keep alive granted, 0 = any (default ${DEFAULT_OPTIONS.maxKeepAlive})
  --thread                    run the broker in a worker thread (BrokerThread)
  --log-level LEVEL           debug, info, warning or error (default: the global
                              'mqtttools --log-level LEVEL broker', error); info logs every packet
  -h, --help                  show this help

Config file (TOML); relative file names are relative to the file:
  [[listener]]                # one table per listener; none = the --host/--port default
  host = "0.0.0.0"
  port = 8883
  certfile = "server.crt"     # with keyfile: a TLS listener
  keyfile = "server.key"
  cafile = "ca.crt"           # optional: require client certificates
  [limits]                    # maxConnections, maxConnectionRate, fdReserve, maxMemoryBytes,
                              # maxPacketSize, maxQueuedMessages, maxQueuedBytes, maxOutputBytes,
                              # maxInflight, maxKeepAlive, connectTimeoutMs, slowConsumerPolicy,
                              # slowConsumerTimeoutMs
  maxPacketSize = 65536
  slowConsumerPolicy = "backpressure"
  [auth]
  passwordFile = "passwords"  # made with mosquitto_passwd
  allowAnonymous = false
  aclFile = "acl"             # topic/pattern/user rules, as Mosquitto's acl_file
  [persistence]
  file = "broker.db"          # retained messages and sessions across restarts (SQLite)
  durability = "process"      # or "power"
  [cluster]
  servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
  name = "mqtt"               # brokers with the same name act as one
  user = "broker"             # NATS credentials: user and pass, token, or credsFile
  pass = "secret"
Listener flags (--host, --port, --secure-port, --certfile, --keyfile, --cafile) replace the
file's listeners; each limit flag overrides the same limit.`;

const LIMIT_FLAGS: Record<string, keyof BrokerOptions> = {
  "max-connections": "maxConnections",
  "max-connection-rate": "maxConnectionRate",
  "fd-reserve": "fdReserve",
  "max-memory-bytes": "maxMemoryBytes",
  "max-packet-size": "maxPacketSize",
  "max-queued-messages": "maxQueuedMessages",
  "max-queued-bytes": "maxQueuedBytes",
  "max-output-bytes": "maxOutputBytes",
  "max-inflight": "maxInflight",
  "max-keep-alive": "maxKeepAlive",
};

/** Limits for which 0 is allowed (no bound, or none kept back). */
const ZERO_ALLOWED: readonly string[] = ["maxKeepAlive", "maxConnectionRate", "fdReserve", "maxMemoryBytes"];

/** The limits a config file's [limits] table may set (BrokerOptions names). */
const LIMIT_KEYS = [...Object.values(LIMIT_FLAGS), "connectTimeoutMs", "slowConsumerPolicy", "slowConsumerTimeoutMs"] as const;

/** A slow-consumer policy named by a flag or the config file; `what` names it in the error. */
function slowConsumerPolicy(what: string, v: unknown): SlowConsumerPolicy {
  if (typeof v !== "string" || !(SLOW_CONSUMER_POLICIES as readonly string[]).includes(v)) throw new UsageError(`${what} must be one of ${SLOW_CONSUMER_POLICIES.join(", ")}, not ${JSON.stringify(v)}`);
  return v as SlowConsumerPolicy;
}

/** Cluster names: they make NATS subjects and a bucket name. */
const CLUSTER_NAME = /^[A-Za-z0-9_-]+$/;

/** NATS server URLs from a flag or the config file, checked. */
function clusterServers(what: string, list: unknown): string[] {
  const servers = typeof list === "string" ? list.split(",").map((s) => s.trim()).filter((s) => s !== "") : list;
  if (!Array.isArray(servers) || servers.length === 0 || !servers.every((s) => typeof s === "string" && /^(nats|tls):\/\/[^\s,]+$/.test(s))) {
    throw new UsageError(`${what} takes NATS server URLs such as nats://host:4222, not ${JSON.stringify(list)}`);
  }
  return servers as string[];
}

/** A cluster name from a flag or the config file, checked. */
function clusterName(what: string, v: unknown): string {
  if (typeof v !== "string" || !CLUSTER_NAME.test(v)) throw new UsageError(`${what} must be letters, digits, '-' and '_', not ${JSON.stringify(v)}`);
  return v;
}

/** A listener of the config file. */
interface ListenerConfig {
  host?: string;
  port?: number;
  certfile?: string;
  keyfile?: string;
  cafile?: string;
}

/** Reads a PEM file named by a flag or the config file, with a one-line error when it cannot. */
async function pem(what: string, path: string): Promise<string> {
  try {
    return await Bun.file(path).text();
  } catch (e) {
    throw new Error(`cannot read ${what} '${path}': ${(e as Error).message}`);
  }
}

/** TLS options from certificate, key and optional CA files; a CA requires client certificates. */
async function tlsOptions(prefix: string, certfile: string, keyfile: string, cafile: string | undefined): Promise<TLSOptions> {
  const tls: TLSOptions = { cert: await pem(`${prefix}certfile`, certfile), key: await pem(`${prefix}keyfile`, keyfile) };
  if (cafile !== undefined) Object.assign(tls, { ca: await pem(`${prefix}cafile`, cafile), requestCert: true, rejectUnauthorized: true });
  return tls;
}

/** Reads and checks a config file: its listeners and limits. */
async function readConfig(path: string): Promise<{ listeners: Address[]; limits: Partial<BrokerOptions> }> {
  let doc: Record<string, unknown>;
  try {
    doc = Bun.TOML.parse(await Bun.file(path).text()) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`cannot read --config '${path}': ${(e as Error).message}`);
  }
  const bad = (what: string) => new UsageError(`--config '${path}': ${what}`);
  for (const key of Object.keys(doc)) if (!["listener", "limits", "auth", "persistence", "cluster"].includes(key)) throw bad(`unknown key '${key}' (expected [[listener]], [limits], [auth], [persistence] and [cluster])`);
  const dir = dirname(resolve(path));
  const listeners: Address[] = [];
  const list = doc.listener ?? [];
  if (!Array.isArray(list)) throw bad("'listener' must be an array of tables ([[listener]])");
  for (const [i, l] of (list as ListenerConfig[]).entries()) {
    const what = `listener ${i + 1}`;
    for (const key of Object.keys(l)) if (!["host", "port", "certfile", "keyfile", "cafile"].includes(key)) throw bad(`${what}: unknown key '${key}'`);
    const tls = l.certfile !== undefined || l.keyfile !== undefined;
    const port = l.port ?? (tls ? 8883 : 1883);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw bad(`${what}: port must be an integer from 0 to 65535`);
    if (tls && (l.certfile === undefined || l.keyfile === undefined)) throw bad(`${what}: certfile and keyfile go together`);
    if (!tls && l.cafile !== undefined) throw bad(`${what}: cafile needs certfile and keyfile`);
    const host = l.host ?? "localhost";
    if (typeof host !== "string") throw bad(`${what}: host must be a string`);
    const file = (f: string | undefined) => (f === undefined ? undefined : resolve(dir, f));
    listeners.push(tls ? [host, port, await tlsOptions(`${what} `, file(l.certfile)!, file(l.keyfile)!, file(l.cafile))] : [host, port]);
  }
  const limits: Partial<BrokerOptions> = {};
  const table = (doc.limits ?? {}) as Record<string, unknown>;
  for (const [key, v] of Object.entries(table)) {
    if (!(LIMIT_KEYS as readonly string[]).includes(key)) throw bad(`unknown limit '${key}' (one of ${LIMIT_KEYS.join(", ")})`);
    if (key === "slowConsumerPolicy") {
      limits.slowConsumerPolicy = slowConsumerPolicy(`--config '${path}': limit slowConsumerPolicy`, v);
      continue;
    }
    const min = ZERO_ALLOWED.includes(key) ? 0 : 1;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) throw bad(`limit ${key} must be an integer of at least ${min}`);
    (limits as Record<string, number>)[key] = v;
  }
  const auth = (doc.auth ?? {}) as Record<string, unknown>;
  for (const [key, v] of Object.entries(auth)) {
    if (key === "passwordFile" && typeof v === "string") limits.passwordFile = resolve(dir, v);
    else if (key === "allowAnonymous" && typeof v === "boolean") limits.allowAnonymous = v;
    else if (key === "aclFile" && typeof v === "string") limits.aclFile = resolve(dir, v);
    else throw bad(`[auth] takes passwordFile and aclFile (file names) and allowAnonymous (true or false), not '${key} = ${JSON.stringify(v)}'`);
  }
  const persistence = (doc.persistence ?? {}) as Record<string, unknown>;
  for (const [key, v] of Object.entries(persistence)) {
    if (key === "file" && typeof v === "string") limits.persistenceFile = resolve(dir, v);
    else if (key === "durability" && (v === "process" || v === "power")) limits.durability = v;
    else if (key === "intervalMs" || key === "sessionSaveIntervalMs") throw bad(`[persistence] ${key} is gone: every change is committed before the packet that acknowledges it leaves (see durability)`);
    else throw bad(`[persistence] takes file (a file name) and durability ("process" or "power"), not '${key} = ${JSON.stringify(v)}'`);
  }
  if (doc.cluster !== undefined) {
    const table = doc.cluster as Record<string, unknown>;
    const cluster: ClusterOptions = { servers: [], name: DEFAULT_CLUSTER_NAME };
    for (const [key, v] of Object.entries(table)) {
      if (key === "servers") cluster.servers = clusterServers(`--config '${path}': [cluster] servers`, v);
      else if (key === "name") cluster.name = clusterName(`--config '${path}': [cluster] name`, v);
      else if ((key === "user" || key === "pass" || key === "token") && typeof v === "string") cluster[key] = v;
      else if (key === "credsFile" && typeof v === "string") cluster.credsFile = resolve(dir, v);
      else throw bad(`[cluster] takes servers (NATS URLs), name, user, pass, token and credsFile (strings), not '${key} = ${JSON.stringify(v)}'`);
    }
    if (cluster.servers.length === 0) throw bad("[cluster] needs servers");
    limits.cluster = cluster;
  }
  return { listeners, limits };
}

/** A clearer line for a listener that could not bind (Bun says only "Failed to listen at HOST"). */
function listenError(e: unknown): unknown {
  const { code, address, port } = e as { code?: string; address?: string; port?: number };
  if (code === "EADDRINUSE") return new Error(`cannot listen on ${address}:${port}: the address is already in use`);
  return e;
}

/** Runs the broker command; resolves with the exit code once the broker has stopped. */
export async function brokerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string" },
      port: { type: "string", short: "p" },
      "secure-port": { type: "string" },
      certfile: { type: "string" },
      keyfile: { type: "string" },
      cafile: { type: "string" },
      config: { type: "string" },
      "connect-timeout": { type: "string" },
      "log-level": { type: "string" },
      thread: { type: "boolean" },
      "password-file": { type: "string" },
      "allow-anonymous": { type: "boolean" },
      "acl-file": { type: "string" },
      persistence: { type: "string" },
      durability: { type: "string" },
      "sys-interval": { type: "string" },
      cluster: { type: "string" },
      "cluster-name": { type: "string" },
      "slow-consumer-policy": { type: "string" },
      "slow-consumer-timeout": { type: "string" },
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
  const config = values.config === undefined ? { listeners: [], limits: {} } : await readConfig(values.config);
  const limits: Partial<BrokerOptions> = { ...config.limits };
  for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
    const v = values[flag as keyof typeof values];
    if (typeof v === "string") (limits as Record<string, number>)[key] = integerFlag(flag, v, ZERO_ALLOWED.includes(key) ? 0 : 1);
  }
  if (values["connect-timeout"] !== undefined) limits.connectTimeoutMs = integerFlag("connect-timeout", values["connect-timeout"], 1) * 1000;
  if (values["password-file"] !== undefined) limits.passwordFile = values["password-file"];
  if (values["allow-anonymous"]) limits.allowAnonymous = true;
  if (values["acl-file"] !== undefined) limits.aclFile = values["acl-file"];
  if (values.persistence !== undefined) limits.persistenceFile = values.persistence;
  if (values["slow-consumer-policy"] !== undefined) limits.slowConsumerPolicy = slowConsumerPolicy("--slow-consumer-policy", values["slow-consumer-policy"]);
  if (values["slow-consumer-timeout"] !== undefined) limits.slowConsumerTimeoutMs = integerFlag("slow-consumer-timeout", values["slow-consumer-timeout"], 1) * 1000;
  if (values.durability !== undefined) {
    if (values.durability !== "process" && values.durability !== "power") throw new UsageError(`--durability must be process or power, not '${values.durability}'`);
    limits.durability = values.durability;
  }
  if (values["sys-interval"] !== undefined) limits.sysIntervalMs = integerFlag("sys-interval", values["sys-interval"], 0) * 1000;
  if (values.cluster !== undefined) limits.cluster = { ...(limits.cluster ?? { name: DEFAULT_CLUSTER_NAME }), servers: clusterServers("--cluster", values.cluster) };
  if (values["cluster-name"] !== undefined) {
    if (limits.cluster === undefined || limits.cluster === null) throw new UsageError("--cluster-name needs --cluster (or [cluster] in --config)");
    limits.cluster = { ...limits.cluster, name: clusterName("--cluster-name", values["cluster-name"]) };
  }
  // the command's own --log-level, else the global one (mqtttools --log-level LEVEL broker; default error)
  const logLevel = values["log-level"] !== undefined ? parseLogLevel(values["log-level"]) : globalLogLevel();
  const port = (flag: "port" | "secure-port", fallback: string) => integerFlag(flag, values[flag] ?? fallback, 0, 65535);
  const { certfile, keyfile, cafile } = values;
  if ((certfile === undefined) !== (keyfile === undefined)) throw new UsageError("--certfile and --keyfile go together");
  if (certfile === undefined && (cafile !== undefined || values["secure-port"] !== undefined)) {
    throw new UsageError(`--${cafile !== undefined ? "cafile" : "secure-port"} needs --certfile and --keyfile`);
  }
  const host = values.host ?? "localhost";
  let listeners: Address[] = config.listeners;
  const listenerFlags = ["host", "port", "secure-port", "certfile", "keyfile", "cafile"] as const;
  if (listeners.length === 0 || listenerFlags.some((f) => values[f] !== undefined)) {
    listeners = [[host, port("port", "1883")]];
    if (certfile !== undefined) listeners.push([host, port("secure-port", "8883"), await tlsOptions("--", certfile, keyfile!, cafile)]);
  }

  const broker = values.thread ? new BrokerThread(listeners, { ...limits, logLevel }) : new Broker(listeners, { ...limits, logLevel });
  const ports = await broker.start().catch((e: unknown) => {
    throw listenError(e);
  });
  const where = listeners.map((l, i) => `${(l as [string, number])[0]}:${ports[i]}${(l as unknown[])[2] !== undefined ? " (TLS)" : ""}`);
  const r = broker.recovery;
  if (r !== null) {
    console.log(
      `Restored from ${r.file} in ${r.ms.toFixed(1)} ms: ${r.sessions} sessions (${r.subscriptions} subscriptions, ${r.queued} queued and ${r.inflight} in-flight messages, ` +
        `${r.incomingQos2} incoming QoS 2 identifiers), ${r.retained} retained messages, ${r.wills} pending wills.`,
    );
  }
  console.log(`Listening on ${where.join(", ")}${values.thread ? " (in a worker thread)" : ""}. Press Ctrl-C to stop.`);
  const stop = () => {
    console.log("Stopping.");
    void broker.stop();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  await broker.serveForever(); // resolves once stop() ran
  return 0;
}
