/**
 * The CLI for scripts and for mosquitto_sub/pub users (issue 20): subscribe's script formats and
 * ways to stop, read, publish's new payload sources and properties, rr, clear-retained, the exit
 * codes, and the MQTTTOOLS_* / profile defaults. Each runs against the project's broker and
 * against Mosquitto; where the issue says "as mosquitto does", the output of mosquitto_sub is
 * the expected one, byte for byte.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { mosquittoClient, startBroker, waitUntil } from "../broker/helpers";
import { freePort, removeDir, startMosquitto, tempDir } from "../client/helpers";
import { entry, BOTH_BROKERS } from "./broker-process";
import { Cli } from "./cli-process";

/** A HOME with no config file, and no MQTTTOOLS_* variables: the tests' defaults are their own. */
const home = tempDir("mqtttools-home-");
const cleanEnv: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("MQTTTOOLS_") && k !== "XDG_CONFIG_HOME" && v !== undefined) cleanEnv[k] = v;
cleanEnv.HOME = home;
afterAll(() => removeDir(home));

const started: Cli[] = [];
afterEach(() => {
  for (const c of started.splice(0)) c.proc.kill("SIGKILL");
});

/** Spawns `cmd` (the CLI by default) with the clean environment plus `env`. */
function spawn(args: string[], options: { stdin?: string | Uint8Array; env?: Record<string, string>; cmd?: string[] } = {}): Cli {
  const proc = Bun.spawn([...(options.cmd ?? [process.execPath, entry]), ...args], {
    env: { ...cleanEnv, ...options.env },
    stdin: options.stdin === undefined ? "ignore" : "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  if (options.stdin !== undefined && typeof proc.stdin !== "number" && proc.stdin !== undefined) {
    proc.stdin.write(options.stdin);
    void proc.stdin.end();
  }
  const cli = new Cli(proc as Subprocess<"pipe" | "ignore", "pipe", "pipe">);
  started.push(cli);
  return cli;
}

/** Runs a command to its end: exit code, stdout as bytes, stderr. */
async function runBytes(args: string[], options: { stdin?: string | Uint8Array; env?: Record<string, string>; cmd?: string[] } = {}): Promise<{ code: number; out: Uint8Array; stderr: string }> {
  const proc = Bun.spawn([...(options.cmd ?? [process.execPath, entry]), ...args], {
    env: { ...cleanEnv, ...options.env },
    stdin: options.stdin === undefined ? "ignore" : new Blob([typeof options.stdin === "string" ? options.stdin : new Uint8Array(options.stdin)]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, stderr, code] = await Promise.all([new Response(proc.stdout).bytes(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out, stderr };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const run = async (args: string[], options: { stdin?: string | Uint8Array; env?: Record<string, string> } = {}) => {
  const r = await runBytes(args, options);
  return { code: r.code, stdout: text(r.out), stderr: r.stderr };
};
const mosquittoSub = (args: string[]) => runBytes(args, { cmd: [mosquittoClient("mosquitto_sub")] });
const mosquittoPub = (args: string[]) => runBytes(args, { cmd: [mosquittoClient("mosquitto_pub")] });

/** A CLI subscriber once subscribed (it prints "Connected." after the SUBACKs, to stderr in the script formats). */
async function subscriber(args: string[]): Promise<Cli> {
  const p = spawn(["subscribe", ...args]);
  await p.line("Connected.");
  return p;
}

/** The retained topics under `filter` (sorted), as a client sees them after subscribing. */
async function retainedTopics(port: number, filter: string): Promise<string[]> {
  const c = new Client("127.0.0.1", port, { connectDelays: [] });
  const topics: string[] = [];
  c.onMessage = (m) => {
    if (m !== null && m.retain) topics.push(m.topic);
  };
  await c.start();
  await c.subscribe(filter);
  await c.unsubscribe(`barrier/${crypto.randomUUID()}`); // the broker sent the retained messages before this UNSUBACK
  await c.stop();
  return topics.sort();
}

const brokers = BOTH_BROKERS;

describe.each(brokers)("against %s", (_name, start) => {
  let broker: { port: number; stop: () => Promise<void> };
  let at: string[];
  let mq: string[];
  let client: Client;
  beforeAll(async () => {
    broker = await start();
    at = ["--host", "127.0.0.1", "--port", String(broker.port)];
    mq = ["-h", "127.0.0.1", "-p", String(broker.port)];
    client = new Client("127.0.0.1", broker.port, { connectDelays: [] });
    await client.start();
  });
  afterAll(async () => {
    await client.stop();
    await broker.stop();
  });
  const retain = (topic: string, payload: string | Uint8Array, options: ConstructorParameters<typeof Message>[2] = {}) =>
    client.publish(new Message(topic, payload, { qos: 1, retain: true, ...options }));

  test("-v prints 'topic payload' lines, byte for byte as mosquitto_sub -v; -N leaves out the newlines", async () => {
    await retain("v/a", "hello world");
    await retain("v/b", new Uint8Array([0x00, 0xff, 0x0a, 0x41]));
    for (const extra of [[], ["-N"]]) {
      const ours = await runBytes(["subscribe", ...at, "-v", ...extra, "-C", "2", "v/#"]);
      const theirs = await mosquittoSub([...mq, "-v", ...extra, "-C", "2", "-t", "v/#"]);
      expect(ours.code).toBe(0);
      expect(theirs.code).toBe(0);
      expect(ours.out).toEqual(theirs.out);
      expect(ours.stderr).toContain("Connected."); // status lines on stderr, stdout has the messages only
    }
    const once = await runBytes(["subscribe", ...at, "-v", "-C", "1", "v/a"]);
    expect(text(once.out)).toBe("v/a hello world\n");
  });

  test("-F templates: the letters mosquitto_sub has give its output", async () => {
    await retain("f/t", "payload 1", { contentType: "text/plain", responseTopic: "f/reply", correlationData: "c-1", payloadFormatIndicator: 1, userProperties: [["k", "v"], ["k2", "v2"]] });
    const template = "%t|%p|%q|%r|%l|%x|%X|%P|%C|%R|%D|%F|%%|\\t|\\\\n";
    const ours = await runBytes(["subscribe", ...at, "--protocol", "5", "-F", template, "-C", "1", "f/t"]);
    const theirs = await mosquittoSub([...mq, "-V", "5", "-F", template, "-C", "1", "-t", "f/t"]);
    expect(ours.code).toBe(0);
    expect(text(ours.out)).toBe("f/t|payload 1|0|1|9|7061796c6f61642031|7061796C6F61642031|k:v k2:v2|text/plain|f/reply|c-1|1|%|\t|\\n\n");
    expect(text(ours.out)).toBe(text(theirs.out));
  });

  test("-F %j is mosquitto_sub's JSON (tst, topic, qos, retain, payloadlen, properties, payload); %I and %U are its times", async () => {
    await retain("j/t", 'say "hi"', { contentType: "text/x", userProperties: [["a", "1"]] });
    const ours = await runBytes(["subscribe", ...at, "-F", "%j", "-C", "1", "j/t"]);
    const theirs = await mosquittoSub([...mq, "-V", "5", "-F", "%j", "-C", "1", "-t", "j/t"]);
    const [o, t] = [JSON.parse(text(ours.out)), JSON.parse(text(theirs.out))];
    expect(Object.keys(o)).toEqual(Object.keys(t));
    expect({ ...o, tst: null }).toEqual({ ...t, tst: null });
    expect(Math.abs(Date.parse(o.tst) - Date.now())).toBeLessThan(60_000);
    const times = text((await runBytes(["subscribe", ...at, "-F", "%I %U", "-C", "1", "j/t"])).out);
    expect(times).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \d{10}\.\d{9}\n$/);
    const theirTimes = text((await mosquittoSub([...mq, "-F", "%I %U", "-C", "1", "-t", "j/t"])).out);
    expect(theirTimes).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \d{10}\.\d{9}\n$/);
    const unknown = await run(["subscribe", ...at, "-F", "%Q", "t"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown %Q");
  });

  test("--raw and read print the payload's bytes; value=$(mqtttools read TOPIC) takes it", async () => {
    const bytes = new Uint8Array([0x01, 0x02, 0xfe, 0x20, 0x41]);
    await retain("raw/bin", bytes);
    await retain("raw/text", "21.5");
    const raw = await runBytes(["subscribe", ...at, "--raw", "-C", "1", "raw/bin"]);
    expect(raw.out).toEqual(new Uint8Array([...bytes, 0x0a]));
    expect((await runBytes(["subscribe", ...at, "--raw", "-N", "-C", "1", "raw/bin"])).out).toEqual(bytes);
    expect((await runBytes(["read", ...at, "raw/bin"])).out).toEqual(new Uint8Array([...bytes, 0x0a]));
    expect((await runBytes(["read", ...at, "-N", "raw/bin"])).out).toEqual(bytes);
    // the same bytes as mosquitto_sub's default output
    expect((await runBytes(["read", ...at, "raw/bin"])).out).toEqual((await mosquittoSub([...mq, "-C", "1", "-t", "raw/bin"])).out);
    const sh = await runBytes(["-c", `value=$("$0" "$1" read --host 127.0.0.1 --port ${broker.port} raw/text) && echo "value=[$value]"`, process.execPath, entry], { cmd: ["sh"] });
    expect(text(sh.out)).toBe("value=[21.5]\n");
    expect(sh.code).toBe(0);
  });

  test("--timestamps: a Time line in text, a time field in JSON, an ISO time before -v lines", async () => {
    await retain("ts/t", "x");
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    const t = await run(["subscribe", ...at, "--timestamps", "-C", "1", "ts/t"]);
    const lines = t.stdout.trimEnd().split("\n");
    expect(lines[2]).toMatch(/^Time: {4}/);
    expect(lines[2]!.slice(9)).toMatch(iso);
    expect(lines.slice(3)).toEqual(["Topic:   ts/t", "Message: x"]);
    const j = JSON.parse((await run(["subscribe", ...at, "--timestamps", "-F", "json", "-C", "1", "ts/t"])).stdout);
    expect(j.time).toMatch(iso);
    expect(Object.keys(j)[0]).toBe("time");
    const v = (await run(["subscribe", ...at, "--timestamps", "-v", "-C", "1", "ts/t"])).stdout;
    expect(v).toMatch(/^\d{4}-\d\d-\d\dT\S+Z ts\/t x\n$/);
  });

  test("-W: exit status 27 and 'Timed out' when the messages do not come in time, as mosquitto_sub; 0 when they do", async () => {
    const ours = await run(["subscribe", ...at, "-W", "0.3", "-v", "w/none"]);
    const theirs = await mosquittoSub([...mq, "-W", "1", "-v", "-t", "w/none"]);
    expect(theirs.code).toBe(27);
    expect(ours.code).toBe(27);
    expect(ours.stdout).toBe("");
    expect(ours.stderr).toContain("Timed out");
    expect(theirs.stderr).toContain("Timed out");
    await retain("w/one", "1");
    const got = await run(["read", ...at, "-W", "10", "w/one"]);
    expect(got).toMatchObject({ code: 0, stdout: "1\n" });
    const short = await run(["read", ...at, "-W", "0.3", "w/none"]);
    expect(short.code).toBe(27);
  });

  test("-E exits once subscribed (printing nothing, as mosquitto_sub -E); the subscription was made", async () => {
    await retain("e/t", "stored");
    const ours = await run(["subscribe", ...at, "-E", "-v", "e/#"]);
    const theirs = await mosquittoSub([...mq, "-E", "-v", "-t", "e/#"]);
    expect(ours.code).toBe(0);
    expect(theirs.code).toBe(0);
    expect(ours.stdout).toBe(text(theirs.out));
    expect(ours.stdout).toBe("");
    // with a session kept, the subscription outlives the process: a message sent meanwhile waits for it
    const id = `e-${crypto.randomUUID().slice(0, 8)}`;
    expect((await run(["subscribe", ...at, "-E", "-i", id, "--session-expiry-interval", "60", "-q", "1", "-R", "e/later"])).code).toBe(0);
    await client.publish(new Message("e/later", "queued", { qos: 1 }));
    const resumed = new Client("127.0.0.1", broker.port, { clientId: id, connectDelays: [], sessionExpiryInterval: 0 });
    const got = Promise.withResolvers<string>();
    resumed.onMessage = (m) => {
      if (m !== null) got.resolve(m.text);
    };
    await resumed.start({ resumeSession: true });
    expect(await got.promise).toBe("queued");
    await resumed.stop();
  });

  test("-R skips the retained messages stored before the subscription and prints the live ones", async () => {
    await retain("r/t", "old");
    const sub = await subscriber([...at, "-R", "-v", "-C", "1", "r/t"]);
    await client.publish(new Message("r/t", "new", { qos: 1 }));
    expect(await sub.exit()).toBe(0);
    expect(sub.lines).toEqual(["r/t new"]);
    const theirs = spawn([...mq, "-R", "-v", "-C", "1", "-t", "r/t"], { cmd: ["stdbuf", "-oL", mosquittoClient("mosquitto_sub")] });
    // nothing tells when mosquitto_sub is subscribed: publish until it has printed the live message
    const publishing = setInterval(() => void client.publish(new Message("r/t", "new", { qos: 0 })), 50);
    try {
      expect(await theirs.exit()).toBe(0);
    } finally {
      clearInterval(publishing);
    }
    expect(theirs.lines).toEqual(sub.lines);
  });

  test("--retained-only prints the retained messages there are and exits; -t is repeatable", async () => {
    await retain("ro/a", "1");
    await retain("ro/b", "2");
    await retain("ro2/c", "3");
    const r = await run(["subscribe", ...at, "--retained-only", "-v", "-t", "ro/#", "-t", "ro2/#"]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n").filter((l) => l !== "").sort()).toEqual(["ro/a 1", "ro/b 2", "ro2/c 3"]);
    const none = await run(["subscribe", ...at, "--retained-only", "ro/none/#"]);
    expect(none.code).toBe(0);
  });

  test("publish -n -r clears a retained message, as mosquitto_pub -n -r; -n alone sends an empty message", async () => {
    await retain("n/t", "stored");
    expect(await retainedTopics(broker.port, "n/#")).toEqual(["n/t"]);
    const r = await run(["publish", ...at, "-r", "-n", "n/t"]);
    expect(r.code).toBe(0);
    expect(await retainedTopics(broker.port, "n/#")).toEqual([]);
    const sub = await subscriber([...at, "-F", "%l:%r", "-C", "1", "n/live"]);
    expect((await run(["publish", ...at, "--null", "-t", "n/live"])).code).toBe(0);
    expect(await sub.exit()).toBe(0);
    expect(sub.lines).toEqual(["0:0"]);
  });

  test("publish -f FILE, -s (the whole of stdin) and -t/-m carry the payload as it is", async () => {
    const dir = tempDir();
    try {
      const bytes = new Uint8Array([0, 1, 2, 10, 13, 0xff, 0x80]);
      writeFileSync(join(dir, "payload.bin"), bytes);
      const sub = await subscriber([...at, "--raw", "-N", "-C", "3", "-t", "pf/#"]);
      expect((await run(["publish", ...at, "-f", join(dir, "payload.bin"), "pf/file"])).code).toBe(0);
      expect((await run(["publish", ...at, "-s", "pf/stdin"], { stdin: "line 1\nline 2\n" })).code).toBe(0);
      expect((await run(["publish", ...at, "-t", "pf/m", "-m", "hi"])).code).toBe(0);
      expect(await sub.exit()).toBe(0);
      expect(sub.lines.join("\n")).toBe(text(new Uint8Array([...bytes, ...new TextEncoder().encode("line 1\nline 2\nhi")])));
      const missing = await run(["publish", ...at, "-f", join(dir, "nope"), "pf/file"]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain("cannot read --file");
    } finally {
      removeDir(dir);
    }
  });

  test("publish --repeat N --repeat-delay S sends N messages at least S apart", async () => {
    const sub = await subscriber([...at, "-F", "%p", "-C", "3", "rep/t"]);
    const times: number[] = [];
    const watch = setInterval(() => times.push(sub.lines.length), 5);
    const t0 = performance.now();
    const r = await run(["publish", ...at, "--repeat", "3", "--repeat-delay", "0.15", "rep/t", "x"]);
    const elapsed = performance.now() - t0;
    clearInterval(watch);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Published 3 message(s)");
    expect(await sub.exit()).toBe(0);
    expect(sub.lines).toEqual(["x", "x", "x"]);
    expect(elapsed).toBeGreaterThanOrEqual(300);
  });

  test("MQTT 5 properties: --content-type, --correlation-data, --payload-format, --topic-alias, -D as mosquitto_pub", async () => {
    const got: Message[] = [];
    const c = new Client("127.0.0.1", broker.port, { connectDelays: [] });
    c.onMessage = (m) => {
      if (m !== null) got.push(m);
    };
    await c.start();
    await c.subscribe("prop/#", { qos: 1 });
    try {
      const r = await run(["publish", ...at, "-q", "1", "--content-type", "application/json", "--correlation-data", "abc", "--payload-format", "1",
        "-D", "publish", "user-property", "k", "v w", "-D", "publish", "message-expiry-interval", "120", "-D", "publish", "response-topic", "prop/reply",
        "--topic-alias", "3", "--repeat", "2", "prop/t", "{}"]);
      expect(r.code).toBe(0);
      await waitUntil(() => got.length === 2, "2 messages");
      for (const m of got) {
        expect(m.topic).toBe("prop/t"); // the second PUBLISH carried the alias only, resolved by the broker
        expect(m.contentType).toBe("application/json");
        expect(m.correlationData).toEqual(new TextEncoder().encode("abc"));
        expect(m.payloadFormatIndicator).toBe(1);
        expect(m.userProperties).toEqual([["k", "v w"]]);
        expect(m.responseTopic).toBe("prop/reply");
        expect(m.messageExpiryInterval).toBeLessThanOrEqual(120);
      }
      // mosquitto_pub's -D gives the same properties
      got.length = 0;
      expect((await mosquittoPub([...mq, "-V", "5", "-q", "1", "-t", "prop/t", "-m", "{}", "-D", "publish", "user-property", "k", "v w", "-D", "publish", "content-type", "application/json"])).code).toBe(0);
      await waitUntil(() => got.length === 1, "mosquitto_pub's message");
      expect(got[0]!.userProperties).toEqual([["k", "v w"]]);
      expect(got[0]!.contentType).toBe("application/json");
    } finally {
      await c.stop();
    }
  });

  test("rr: publishes the request with a response topic and correlation data, prints the matching response", async () => {
    const responder = new Client("127.0.0.1", broker.port, { connectDelays: [] });
    const requests: Message[] = [];
    responder.onMessage = (m) => {
      if (m === null || m.responseTopic === undefined) return;
      requests.push(m);
      // a response to someone else's request first: rr must skip it
      void responder.publish(new Message(m.responseTopic, "not yours", { correlationData: "other" }));
      void responder.publish(new Message(m.responseTopic, `echo: ${m.text}`, { correlationData: m.correlationData }));
    };
    await responder.start();
    await responder.subscribe("rr/service");
    try {
      const r = await run(["rr", ...at, "rr/service", "ping", "--response-topic", "rr/reply", "-W", "10"]);
      expect(r).toMatchObject({ code: 0, stdout: "echo: ping\n" });
      expect(requests[0]!.responseTopic).toBe("rr/reply");
      expect(requests[0]!.correlationData!.length).toBeGreaterThan(0);
      const v = await run(["rr", ...at, "-t", "rr/service", "-m", "x", "-e", "rr/reply2", "--correlation-data", "id-7", "-v"]);
      expect(v).toMatchObject({ code: 0, stdout: "rr/reply2 echo: x\n" });
      expect(text(requests[1]!.correlationData!)).toBe("id-7");
      const none = await run(["rr", ...at, "rr/nobody", "x", "--response-topic", "rr/reply3", "-W", "0.3"]);
      expect(none.code).toBe(27);
      const v3 = await run(["rr", ...at, "--protocol", "3.1.1", "rr/service", "x", "--response-topic", "rr/reply"]);
      expect(v3.code).toBe(2);
    } finally {
      await responder.stop();
    }
  });

  test("clear-retained: --dry-run lists the matches and clears nothing; then it clears exactly them", async () => {
    for (const t of ["cr/a/x", "cr/b/x", "cr/b/y", "cr/c", "keep/x"]) await retain(t, "v");
    const dry = await run(["clear-retained", ...at, "--dry-run", "cr/+/x"]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe("cr/a/x\ncr/b/x\n");
    expect(dry.stderr).toContain("2 retained message(s) would be cleared");
    expect(await retainedTopics(broker.port, "#")).toContain("cr/a/x");
    const r = await run(["clear-retained", ...at, "cr/+/x", "-t", "cr/c"]); // no terminal: no question
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("Cleared 3 retained message(s).");
    expect((await retainedTopics(broker.port, "#")).filter((t) => t.startsWith("cr/") || t.startsWith("keep/"))).toEqual(["cr/b/y", "keep/x"]);
    expect((await run(["clear-retained", ...at, "cr/+/x"])).stderr).toContain("Cleared 0 retained message(s).");
  });

  test("exit codes: 2 for usage errors, 1 for run-time errors", async () => {
    for (const args of [
      ["subscribe", ...at, "-W", "soon", "t"],
      ["subscribe", ...at, "-v", "--raw", "t"],
      ["subscribe", ...at, "-R", "--retained-only", "t"],
      ["read", ...at, "a", "b"],
      ["publish", ...at, "-m", "x", "-f", "y", "t"],
      ["publish", ...at, "-D", "publish", "content-type"],
      ["publish", ...at, "-D", "subscribe", "user-property", "a", "b", "t", "m"],
      ["publish", ...at, "--payload-format", "2", "t", "m"],
      ["publish", ...at, "--repeat-delay", "1", "t", "m"],
      ["publish", ...at, "--size", "5", "t", "m"],
      ["rr", ...at, "t", "m"],
      ["clear-retained", ...at],
      ["bench", ...at],
      ["bench", "fly", ...at],
      ["bench", "conn", "--rate", "5", ...at],
    ]) {
      const r = await run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    const nobody = ["--host", "127.0.0.1", "--port", String(freePort())];
    for (const args of [["subscribe", ...nobody, "t"], ["read", ...nobody, "t"], ["publish", ...nobody, "t", "m"], ["rr", ...nobody, "t", "m", "-e", "r"], ["clear-retained", ...nobody, "#"]]) {
      expect({ args, code: (await run(args)).code }).toEqual({ args, code: 1 });
    }
  });

  test("defaults: a flag overrides MQTTTOOLS_*, which overrides the profile of ~/.config/mqtttools/config.toml", async () => {
    await retain("env/t", "found");
    const dir = tempDir();
    try {
      const wrong = String(freePort());
      mkdirSync(join(dir, ".config", "mqtttools"), { recursive: true });
      writeFileSync(join(dir, ".config", "mqtttools", "config.toml"),
        `[default]\nhost = "127.0.0.1"\nport = ${broker.port}\n\n[broken]\nhost = "127.0.0.1"\nport = ${wrong}\n\n[home]\nurl = "mqtt://127.0.0.1:${broker.port}"\n`);
      const envHome = { HOME: dir };
      const read = (args: string[], env: Record<string, string>) => run(["read", "-W", "10", ...args, "env/t"], { env: { ...envHome, ...env } });
      expect(await read([], {})).toMatchObject({ code: 0, stdout: "found\n" }); // [default]
      expect((await read(["--profile", "broken"], {})).code).toBe(1);
      expect(await read(["--profile", "home"], {})).toMatchObject({ code: 0, stdout: "found\n" });
      expect((await read([], { MQTTTOOLS_PROFILE: "broken" })).code).toBe(1);
      // the environment overrides the profile ...
      expect(await read(["--profile", "broken"], { MQTTTOOLS_PORT: String(broker.port) })).toMatchObject({ code: 0, stdout: "found\n" });
      expect((await read([], { MQTTTOOLS_PORT: wrong })).code).toBe(1);
      // ... and a flag overrides the environment
      expect(await read(["--port", String(broker.port)], { MQTTTOOLS_PORT: wrong })).toMatchObject({ code: 0, stdout: "found\n" });
      expect(await read(["--host", "127.0.0.1", "--port", String(broker.port)], { MQTTTOOLS_URL: `mqtt://127.0.0.1:${wrong}` })).toMatchObject({ code: 0, stdout: "found\n" });
      // the environment alone, no file
      expect(await run(["read", "-W", "10", "env/t"], { env: { MQTTTOOLS_HOST: "127.0.0.1", MQTTTOOLS_PORT: String(broker.port) } })).toMatchObject({ code: 0, stdout: "found\n" });
      const unknown = await read(["--profile", "work"], {});
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain("no profile 'work'");
    } finally {
      removeDir(dir);
    }
  });
});

describe("clear-retained compared with Mosquitto", () => {
  test("the same filter clears the same set on both brokers, and the set mosquitto_sub --remove-retained clears", async () => {
    const ours = await startBroker();
    const mosquitto = await startMosquitto();
    const other = await startMosquitto();
    try {
      const topics = ["s/a", "s/a/b", "s/b/c", "s/b/c/d", "t/a", "s", "x/s/a"];
      const filters = ["s/+/c", "s/a/#"];
      for (const port of [ours.port, mosquitto.port, other.port]) {
        const c = new Client("127.0.0.1", port, { connectDelays: [] });
        await c.start();
        for (const t of topics) await c.publish(new Message(t, "v", { qos: 1, retain: true }));
        await c.stop();
      }
      for (const port of [ours.port, mosquitto.port]) {
        const r = await run(["clear-retained", "--host", "127.0.0.1", "--port", String(port), ...filters]);
        expect(r.code).toBe(0);
      }
      // mosquitto_sub --remove-retained on the other Mosquitto: its -W is the only way it exits
      // (2.0.11 does not end --retained-only with --remove-retained), so its timeout is expected
      for (const f of filters) expect((await mosquittoSub(["-h", "127.0.0.1", "-p", String(other.port), "--remove-retained", "-t", f, "-W", "1"])).code).toBe(27);
      const left = await retainedTopics(ours.port, "#");
      expect(left).toEqual(["s", "s/b/c/d", "t/a", "x/s/a"]);
      expect(await retainedTopics(mosquitto.port, "#")).toEqual(left);
      expect(await retainedTopics(other.port, "#")).toEqual(left);
    } finally {
      await ours.stop();
      await mosquitto.stop();
      await other.stop();
    }
  });
});
