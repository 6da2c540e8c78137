/**
 * `mqtttools broker --config FILE.toml` takes every BrokerOptions field, checks each value, and
 * `--print-config` prints the effective configuration as TOML that --config reads back unchanged.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_OPTIONS } from "../../lib/broker/options";
import { OPTIONS } from "../../commands/broker-config";
import { PacketType } from "../../lib/codec/constants";
import { RawClient, connectPacket } from "../broker/helpers";
import { startBrokerProcess, tempDir, runCli } from "./broker-process";

let tmp: ReturnType<typeof tempDir>;
beforeAll(() => (tmp = tempDir()));
afterAll(() => tmp.remove());

const file = (name: string) => join(tmp.dir, name);
const cli = runCli;

/** Runs `broker ARGS --print-config`: its output, checked to be a success with nothing on stderr. */
async function printed(...args: string[]): Promise<string> {
  const r = await cli("broker", ...args, "--print-config");
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return r.stdout;
}

/** A file setting every option to a value other than its default, in the tables where the README puts them. */
const EVERY_OPTION = `
[[listener]]
host = "127.0.0.1"
port = 0

[[listener]]
host = "127.0.0.1"
port = 0
certfile = "certs/server.crt"   # relative to this file
keyfile = "certs/server.key"
cafile = "certs/ca.crt"

[[listener]]
host = "127.0.0.1"
port = 0
protocol = "websocket"
path = "/ws"
trustProxy = true

[limits]
maxConnections = 5000
maxConnectionRate = 0
fdReserve = 10
maxMemoryBytes = 1073741824
maxPacketSize = 65536
maxQueuedMessages = 50
maxQueuedBytes = 100000
maxOutputBytes = 200000
maxInflight = 7
maxKeepAlive = 30
connectTimeoutMs = 4000
slowConsumerPolicy = "drop"
slowConsumerTimeoutMs = 9000
lingerMs = 500
maxLingering = 3
maxRetainedMessages = 1000
maxRetainedBytes = 65536
maxSubscriptionsPerClient = 200
maxTopicLevels = 16

[mqtt]
receiveMaximum = 20
maximumQoS = 1
retainAvailable = false
topicAliasMaximum = 0
wildcardSubscriptionAvailable = false
subscriptionIdentifierAvailable = false
sharedSubscriptionAvailable = false
responseInformation = "replies/\\"quoted\\""

[auth]
passwordFile = "passwords"
allowAnonymous = true
aclFile = "acl"
deniedTopicFilters = ["secret/#", "private/+/x"]

[persistence]
durability = "power"

[redirect]
reference = "other.example:1883"
permanent = true

[sys]
sysIntervalMs = 0

[http]
host = "127.0.0.1"
port = 0

[cluster]
servers = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
name = "fleet"
user = "broker"
pass = "secret"
replicas = 3
`;

describe("--print-config", () => {
  test("the file above sets every BrokerOptions field", () => {
    const set = OPTIONS.map((o) => o.option).filter((o) => new RegExp(`^${o === "persistenceFile" ? "file" : o} = `, "m").test(EVERY_OPTION));
    // persistenceFile is not used with cluster (the broker refuses both): the next test sets it
    expect([...set, "redirect", "http", "cluster", "persistenceFile"].sort()).toEqual(Object.keys(DEFAULT_OPTIONS).sort());
  });

  test("[persistence] file is printed as an absolute file name, and refused together with [cluster]", async () => {
    writeFileSync(file("persist.toml"), '[persistence]\nfile = "broker.db"\n');
    expect(await printed("--config", file("persist.toml"))).toContain(`file = "${file("broker.db")}"`);
    writeFileSync(file("both.toml"), '[persistence]\nfile = "broker.db"\n[cluster]\nservers = ["nats://127.0.0.1:4222"]\n');
    const r = await cli("broker", "--config", file("both.toml"), "--print-config");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--persistence is not used with --cluster");
  });

  test("a file holding every option: printed with the values it set (file names made absolute), and the output read back prints the same", async () => {
    writeFileSync(file("every.toml"), EVERY_OPTION);
    const first = await printed("--config", file("every.toml"));
    for (const line of EVERY_OPTION.split("\n")) {
      if (!/^\w+ = /.test(line) || /(file|File) = /.test(line)) continue;
      expect(first).toContain(line.replace(/\s+#.*$/, ""));
    }
    expect(first).toContain(`certfile = "${file("certs/server.crt")}"`);
    expect(first).toContain(`passwordFile = "${file("passwords")}"`);
    expect(first).toContain(`aclFile = "${file("acl")}"`);
    expect(first.split("\n").slice(2).filter((l) => l.startsWith("#") && !l.startsWith("# file"))).toEqual([]); // no option left unset (commented out) but the persistence file
    writeFileSync(file("printed.toml"), first);
    expect(await printed("--config", file("printed.toml"))).toBe(first);
  });

  test("without --config: every default, the listener of the flags, null options as comments; read back unchanged", async () => {
    const first = await printed();
    expect(first).toContain('[[listener]]\nhost = "localhost"\nport = 1883\n');
    for (const o of OPTIONS) {
      const v = DEFAULT_OPTIONS[o.option];
      if (v === null) expect(first).toMatch(new RegExp(`^# ${o.key} = .*# unset: `, "m"));
      else expect(first).toContain(`\n${o.key} = ${typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? "[]" : v}\n`);
    }
    expect(first).toContain("# [redirect]");
    expect(first).toContain("# [http]");
    expect(first).toContain("# [cluster]");
    writeFileSync(file("defaults.toml"), first);
    expect(await printed("--config", file("defaults.toml"))).toBe(first);
  });

  test("flags override the file in the printed configuration too", async () => {
    writeFileSync(file("flags.toml"), "[limits]\nmaxConnections = 5\n");
    const out = await printed("--config", file("flags.toml"), "--max-connections", "6", "--sys-interval", "3", "--host", "127.0.0.1", "--port", "0");
    expect(out).toContain("\nmaxConnections = 6\n");
    expect(out).toContain("\nsysIntervalMs = 3000\n");
    expect(out).toContain('[[listener]]\nhost = "127.0.0.1"\nport = 0\n');
  });

  test("a broker started on a printed file serves with its [mqtt] settings (CONNACK shows them)", async () => {
    writeFileSync(file("mqtt.toml"), `[[listener]]\nhost = "127.0.0.1"\nport = 0\n\n[mqtt]\nreceiveMaximum = 20\nmaximumQoS = 1\nretainAvailable = false\ntopicAliasMaximum = 3\n` +
      `wildcardSubscriptionAvailable = false\nsubscriptionIdentifierAvailable = false\nsharedSubscriptionAvailable = false\nresponseInformation = "replies/"\n`);
    writeFileSync(file("mqtt-printed.toml"), await printed("--config", file("mqtt.toml")));
    const b = await startBrokerProcess(["broker", "--config", file("mqtt-printed.toml")]);
    try {
      const raw = await RawClient.open(b.ports[0]!);
      raw.send(connectPacket({ clientId: "c", properties: { requestResponseInformation: 1 } }));
      const ack = await raw.next(PacketType.CONNACK);
      expect(ack.type === PacketType.CONNACK && ack.properties).toMatchObject({
        receiveMaximum: 20, maximumQoS: 1, retainAvailable: 0, topicAliasMaximum: 3,
        wildcardSubscriptionAvailable: 0, subscriptionIdentifierAvailable: 0, sharedSubscriptionAvailable: 0, responseInformation: "replies/",
      });
      raw.end();
    } finally {
      expect(await b.stop()).toBe(0);
    }
  });
});

describe("a bad --config is one line naming the file, the key and what was expected; exit code 2", () => {
  test.each([
    ["an integer of the wrong type", '[limits]\nmaxPacketSize = "big"\n', '[limits] maxPacketSize must be an integer from 1 to 268435460, not "big"'],
    ["an integer out of range", "[limits]\nmaxConnectionRate = -1\n", "[limits] maxConnectionRate must be an integer of at least 0, not -1"],
    ["a QoS out of range", "[mqtt]\nmaximumQoS = 3\n", "[mqtt] maximumQoS must be an integer from 0 to 2, not 3"],
    ["a fraction", "[mqtt]\nreceiveMaximum = 1.5\n", "[mqtt] receiveMaximum must be an integer from 1 to 65535, not 1.5"],
    ["a boolean", '[mqtt]\nretainAvailable = "yes"\n', '[mqtt] retainAvailable must be true or false, not "yes"'],
    ["a string", "[mqtt]\nresponseInformation = 5\n", "[mqtt] responseInformation must be a string, not 5"],
    ["a choice", '[limits]\nslowConsumerPolicy = "fast"\n', '[limits] slowConsumerPolicy must be one of "backpressure", "drop", "disconnect", not "fast"'],
    ["a choice of durability", '[persistence]\ndurability = "disk"\n', '[persistence] durability must be one of "process", "power", not "disk"'],
    ["a file name", "[auth]\npasswordFile = 3\n", "[auth] passwordFile must be a file name (a string), not 3"],
    ["a list of topic filters", '[auth]\ndeniedTopicFilters = "secret/#"\n', '[auth] deniedTopicFilters must be an array of topic filters'],
    ["a topic filter", '[auth]\ndeniedTopicFilters = ["a/#/b"]\n', '[auth] deniedTopicFilters holds "a/#/b", which is not a valid topic filter'],
    ["a redirect without reference", "[redirect]\npermanent = true\n", "[redirect] reference must be a server reference"],
    ["a redirect flag", '[redirect]\nreference = "x:1883"\npermanent = "yes"\n', '[redirect] permanent must be true or false, not "yes"'],
    ["a cluster without servers", '[cluster]\nname = "x"\n', "[cluster] needs servers"],
    ["a cluster server that is no NATS URL", '[cluster]\nservers = ["http://x:4222"]\n', '[cluster] servers takes NATS server URLs such as nats://host:4222, not ["http://x:4222"]'],
    ["a replica count out of range", '[cluster]\nservers = ["nats://x:4222"]\nreplicas = 7\n', "[cluster] replicas must be an integer from 1 to 5 (JetStream's limit), not 7"],
    ["an HTTP port out of range", "[http]\nport = 70000\n", "[http] port must be an integer from 0 to 65535, not 70000"],
    ["an unknown key", "[limits]\nmaxBananas = 3\n", "unknown key 'maxBananas' in [limits] (expected maxConnections, "],
    ["a key in the wrong table", "[limits]\nreceiveMaximum = 3\n", "unknown key 'receiveMaximum' in [limits]"],
    ["an unknown table", 'colour = "blue"\n', "unknown key 'colour' (expected [[listener]], [limits], [mqtt], [auth], [persistence], [redirect], [sys], [http], [cluster])"],
    ["a table that is not one", "limits = 3\n", "'limits' must be a table ([limits])"],
    ["a key that is gone", "[persistence]\nintervalMs = 1000\n", "[persistence] intervalMs is gone"],
    ["a listener port", "[[listener]]\nport = 70000\n", "[[listener]] 1 port must be an integer from 0 to 65535, not 70000"],
    ["a listener key", "[[listener]]\nport = 1\ntls = true\n", "unknown key 'tls' in [[listener]] 1"],
    ["a listener certificate alone", '[[listener]]\ncertfile = "a.crt"\n', "[[listener]] 1: certfile and keyfile go together"],
    ["TOML syntax", "[limits\n", "cannot read --config"],
  ])("%s", async (_what, toml, message) => {
    writeFileSync(file("bad.toml"), toml);
    const r = await cli("broker", "--config", file("bad.toml"));
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(`'${file("bad.toml")}'`);
    expect(r.stderr).toContain(message);
  });
});
