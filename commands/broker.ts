/** `mqtttools broker`: runs the broker until Ctrl-C or SIGTERM. */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { TLSOptions } from "bun";
import pc from "picocolors";
import { Broker } from "../lib/broker/broker";
import { BrokerThread } from "../lib/thread/broker-thread";
import { DEFAULT_OPTIONS, normalizeAddresses, SLOW_CONSUMER_POLICIES, type Address, type BrokerOptions, type SlowConsumerPolicy } from "../lib/broker/options";
import { clusterName, clusterReplicas, clusterServers, printConfig, readConfig, type ListenerSpec } from "./broker-config";
import { logLevel as globalLogLevel, parseLogLevel } from "./log";
import { integerFlag, UsageError } from "./usage";
import { DEFAULT_CLUSTER_NAME } from "../lib/broker/cluster/cluster";

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
  --ws-port PORT              also listen for MQTT over WebSocket (ws://HOST:PORT/mqtt)
  --wss-port PORT             MQTT over secure WebSocket, with --certfile and --keyfile
  --ws-path PATH              the path WebSocket clients connect to (default /mqtt; * = any)
  --trust-proxy               WebSocket listeners are behind a reverse proxy: log the client
                              address from X-Forwarded-For
  --config FILE.toml          listeners and every broker option from a TOML file (below);
                              flags override it
  --print-config              print the effective configuration (the file, the flags and every
                              default) as TOML for --config, and exit
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
                              (nats://host:4222; JetStream on for QoS 1/2 and retained messages)
  --cluster-name NAME         the cluster to join on those servers (default mqtt)
  --cluster-replicas N        JetStream copies of QoS 1/2 and retained messages (default: the
                              NATS cluster's servers, at most 3)
  --sys-interval SECONDS      how often the $SYS/broker/... topics are updated, 0 = none (default 10)
  --http-port PORT            serve the web dashboard (/), /metrics (Prometheus), /livez and /readyz
                              over HTTP on this port (on --host; [http] in --config); a --ws-port
                              equal to it is served by the same listener
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

Config file (TOML); relative file names are relative to the file. 'mqtttools broker
--print-config' prints every key with its default: a file to start from. Keys are BrokerOptions
names (README, "The broker"); an unknown key or a bad value is an error naming it.
  [[listener]]                # one table per listener; none = the --host/--port default
  host = "0.0.0.0"
  port = 8883
  certfile = "server.crt"     # with keyfile: a TLS listener
  keyfile = "server.key"
  cafile = "ca.crt"           # optional: require client certificates
  protocol = "websocket"      # MQTT over WebSocket (default "mqtt": plain MQTT over TCP)
  path = "/mqtt"              # WebSocket only: the path served ("*" = any)
  trustProxy = true           # WebSocket only: client address from X-Forwarded-For in logs
  [limits]                    # maxConnections, maxConnectionRate, fdReserve, maxMemoryBytes,
                              # maxPacketSize, maxQueuedMessages, maxQueuedBytes, maxOutputBytes,
                              # maxInflight, maxKeepAlive, connectTimeoutMs, slowConsumerPolicy,
                              # slowConsumerTimeoutMs, lingerMs, maxLingering
  maxPacketSize = 65536
  slowConsumerPolicy = "backpressure"
  [mqtt]                      # receiveMaximum, maximumQoS, retainAvailable, topicAliasMaximum,
                              # wildcardSubscriptionAvailable, subscriptionIdentifierAvailable,
                              # sharedSubscriptionAvailable, responseInformation
  maximumQoS = 1
  [auth]
  passwordFile = "passwords"  # made with mosquitto_passwd
  allowAnonymous = false
  aclFile = "acl"             # topic/pattern/user rules, as Mosquitto's acl_file
  deniedTopicFilters = ["secret/#"]
  [persistence]
  file = "broker.db"          # retained messages and sessions across restarts (SQLite)
  durability = "process"      # or "power"
  [redirect]                  # send every client elsewhere (CONNACK 0x9C, 0x9D if permanent)
  reference = "other.example:1883"
  permanent = false
  [sys]
  sysIntervalMs = 10000       # $SYS/broker/... updates; 0 = none
  [cluster]
  servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
  name = "mqtt"               # brokers with the same name act as one
  user = "broker"             # NATS credentials: user and pass, token, or credsFile
  pass = "secret"
  replicas = 3                # JetStream copies (default: the NATS cluster's servers, at most 3)
Listener flags (--host, --port, --secure-port, --ws-port, --wss-port, --certfile, --keyfile,
--cafile) replace the
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

/** A slow-consumer policy named by a flag; `what` names it in the error. */
function slowConsumerPolicy(what: string, v: unknown): SlowConsumerPolicy {
  if (typeof v !== "string" || !(SLOW_CONSUMER_POLICIES as readonly string[]).includes(v)) throw new UsageError(`${what} must be one of ${SLOW_CONSUMER_POLICIES.join(", ")}, not ${JSON.stringify(v)}`);
  return v as SlowConsumerPolicy;
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

/** The broker's address of a listener, its certificate files read; `prefix` names where they came from in errors. */
async function address(l: ListenerSpec, prefix: string): Promise<Address> {
  const tls = l.certfile === undefined || l.keyfile === undefined ? undefined : await tlsOptions(prefix, l.certfile, l.keyfile, l.cafile);
  if (l.protocol === "websocket") return [l.host, l.port, { websocket: true, path: l.path, tls, trustProxy: l.trustProxy }];
  return tls === undefined ? [l.host, l.port] : [l.host, l.port, tls];
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
      "ws-port": { type: "string" },
      "wss-port": { type: "string" },
      "ws-path": { type: "string" },
      "trust-proxy": { type: "boolean" },
      certfile: { type: "string" },
      keyfile: { type: "string" },
      cafile: { type: "string" },
      config: { type: "string" },
      "print-config": { type: "boolean" },
      "connect-timeout": { type: "string" },
      "log-level": { type: "string" },
      thread: { type: "boolean" },
      "password-file": { type: "string" },
      "allow-anonymous": { type: "boolean" },
      "acl-file": { type: "string" },
      persistence: { type: "string" },
      durability: { type: "string" },
      "sys-interval": { type: "string" },
      "http-port": { type: "string" },
      cluster: { type: "string" },
      "cluster-name": { type: "string" },
      "cluster-replicas": { type: "string" },
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
  const config = values.config === undefined ? { listeners: [], options: {} } : await readConfig(values.config);
  const limits: Partial<BrokerOptions> = { ...config.options };
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
  if (values["http-port"] !== undefined) limits.http = { host: values.host ?? limits.http?.host ?? "localhost", port: integerFlag("http-port", values["http-port"], 0, 65535) };
  if (values.cluster !== undefined) limits.cluster = { ...(limits.cluster ?? { name: DEFAULT_CLUSTER_NAME }), servers: clusterServers("--cluster", values.cluster) };
  if (values["cluster-name"] !== undefined) {
    if (limits.cluster === undefined || limits.cluster === null) throw new UsageError("--cluster-name needs --cluster (or [cluster] in --config)");
    limits.cluster = { ...limits.cluster, name: clusterName("--cluster-name", values["cluster-name"]) };
  }
  if (values["cluster-replicas"] !== undefined) {
    if (limits.cluster === undefined || limits.cluster === null) throw new UsageError("--cluster-replicas needs --cluster (or [cluster] in --config)");
    limits.cluster = { ...limits.cluster, replicas: clusterReplicas("--cluster-replicas", values["cluster-replicas"]) };
  }
  if (limits.cluster != null && limits.persistenceFile != null) throw new UsageError("--persistence is not used with --cluster: in a cluster, sessions, QoS 1/2 and retained messages live in JetStream");
  // the command's own --log-level, else the global one (mqtttools --log-level LEVEL broker; default error)
  const logLevel = values["log-level"] !== undefined ? parseLogLevel(values["log-level"]) : globalLogLevel();
  const port = (flag: "port" | "secure-port" | "ws-port" | "wss-port", fallback: string) => integerFlag(flag, values[flag] ?? fallback, 0, 65535);
  const { certfile, keyfile, cafile } = values;
  if ((certfile === undefined) !== (keyfile === undefined)) throw new UsageError("--certfile and --keyfile go together");
  if (certfile === undefined && (cafile !== undefined || values["secure-port"] !== undefined || values["wss-port"] !== undefined)) {
    throw new UsageError(`--${cafile !== undefined ? "cafile" : values["secure-port"] !== undefined ? "secure-port" : "wss-port"} needs --certfile and --keyfile`);
  }
  const wsPath = values["ws-path"];
  if (wsPath !== undefined && wsPath !== "*" && !wsPath.startsWith("/")) throw new UsageError(`--ws-path must start with / (or be *), not '${wsPath}'`);
  if ((wsPath !== undefined || values["trust-proxy"]) && values["ws-port"] === undefined && values["wss-port"] === undefined) {
    throw new UsageError(`--${wsPath !== undefined ? "ws-path" : "trust-proxy"} needs --ws-port or --wss-port`);
  }
  const host = values.host ?? "localhost";
  let specs: ListenerSpec[] = config.listeners;
  let prefix = (i: number) => `[[listener]] ${i + 1} `;
  const listenerFlags = ["host", "port", "secure-port", "ws-port", "wss-port", "certfile", "keyfile", "cafile"] as const;
  if (specs.length === 0 || listenerFlags.some((f) => values[f] !== undefined)) {
    specs = [{ host, port: port("port", "1883") }];
    const files = certfile === undefined ? null : { certfile: resolve(certfile), keyfile: resolve(keyfile!), ...(cafile === undefined ? {} : { cafile: resolve(cafile) }) };
    if (files !== null) specs.push({ host, port: port("secure-port", "8883"), ...files });
    const ws = { protocol: "websocket", ...(wsPath === undefined ? {} : { path: wsPath }), ...(values["trust-proxy"] ? { trustProxy: true } : {}) } as const;
    if (values["ws-port"] !== undefined) specs.push({ host, port: port("ws-port", "8080"), ...ws });
    if (files !== null && values["wss-port"] !== undefined) specs.push({ host, port: port("wss-port", "8081"), ...ws, ...files });
    prefix = () => "--";
  }
  if (values["print-config"]) {
    console.log(printConfig(specs, limits));
    return 0;
  }
  const listeners: Address[] = [];
  for (const [i, l] of specs.entries()) listeners.push(await address(l, prefix(i)));

  const broker = values.thread ? new BrokerThread(listeners, { ...limits, logLevel }) : new Broker(listeners, { ...limits, logLevel });
  const ports = await broker.start().catch((e: unknown) => {
    throw listenError(e);
  });
  const where = normalizeAddresses(listeners).map((l, i) =>
    l.websocket === null ? `${l.host}:${ports[i]}${l.tls !== undefined ? " (TLS)" : ""}` : `${l.tls !== undefined ? "wss" : "ws"}://${l.host}:${ports[i]}${l.websocket.path === "*" ? "/*" : l.websocket.path}`,
  );
  const r = broker.recovery;
  if (r !== null) {
    console.log(
      `Restored from ${r.file} in ${r.ms.toFixed(1)} ms: ${r.sessions} sessions (${r.subscriptions} subscriptions, ${r.queued} queued and ${r.inflight} in-flight messages, ` +
        `${r.incomingQos2} incoming QoS 2 identifiers), ${r.retained} retained messages, ${r.wills} pending wills.`,
    );
  }
  if (broker.httpPort !== null) console.log(`HTTP on ${limits.http!.host}:${broker.httpPort}: the dashboard at /, /metrics, /livez, /readyz.`);
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
