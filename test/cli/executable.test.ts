/** The single executable (`bun run build`): it runs every command exactly as `bun index.ts` does. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { finished } from "../broker/helpers";
import { entry, startBrokerProcess, tempDir } from "./broker-process";

const root = new URL("../..", import.meta.url).pathname;
let tmp: ReturnType<typeof tempDir>;
let exe: string;

/** The commands there are sources for (commands/*.ts other than the CLI's own modules). */
const commands = readdirSync(join(root, "commands"))
  .filter((f) => f.endsWith(".ts") && !["cli.ts", "usage.ts", "log.ts"].includes(f))
  .map((f) => f.slice(0, -3));

beforeAll(async () => {
  tmp = tempDir();
  exe = join(tmp.dir, "mqtttools");
  // the same command as `bun run build`, into a temporary directory
  const build = pkg.scripts.build.replace("dist/mqtttools", exe).split(" ");
  expect(build.slice(0, 3)).toEqual(["bun", "build", "--compile"]);
  const started = performance.now();
  const r = await finished(Bun.spawn([process.execPath, ...build.slice(1)], { cwd: root, stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
  const seconds = (performance.now() - started) / 1000;
  if (r.code !== 0) throw new Error(`the build failed: ${r.stderr}`);
  expect(seconds).toBeLessThan(60);
}, 60_000);

afterAll(() => tmp.remove());

/** Runs the executable from a directory outside the checkout, so nothing is read from the sources. */
const run = (...args: string[]) => finished(Bun.spawn([exe, ...args], { cwd: tmp.dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
const fromSource = (...args: string[]) => finished(Bun.spawn([process.execPath, entry, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }));

describe("the compiled executable", () => {
  test("--version prints the package version", async () => {
    const r = await run("--version");
    expect(r).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
  });

  test("--help is the same as from source", async () => {
    const [a, b] = await Promise.all([run("--help"), fromSource("--help")]);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
  });

  test.each(commands)("every command is bundled: %s --help is the same as from source", async (command) => {
    const [a, b] = await Promise.all([run(command, "--help"), fromSource(command, "--help")]);
    expect(a.code).toBe(b.code);
    expect(a.stdout).toBe(b.stdout);
  });

  test("usage errors and the global --log-level behave as from source", async () => {
    for (const args of [["frobnicate"], ["--log-level", "loud", "broker"], ["broker", "--bogus"]]) {
      const [a, b] = await Promise.all([run(...args), fromSource(...args)]);
      expect(a).toEqual(b);
    }
  });

  test("the broker round trip: a client subscribes and receives its own message, packets logged at info", async () => {
    const b = await startBrokerProcess(["--log-level", "info", "broker", "--host", "127.0.0.1", "--port", "0"], [exe]);
    try {
      const mqtt = (await import("mqtt")).default;
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.ports[0]}`, { reconnectPeriod: 0, clientId: "exe" });
      const got = Promise.withResolvers<string>();
      client.on("message", (_t, m) => got.resolve(m.toString()));
      await client.subscribeAsync("exe/test");
      await client.publishAsync("exe/test", "from the executable");
      expect(await got.promise).toBe("from the executable");
      await client.endAsync();
      const err = await b.waitStderr(/Received DISCONNECT\(14\)/);
      expect(err).toContain("Received CONNECT(1): ClientId=exe");
      expect(err).toContain("Sent CONNACK(2)");
    } finally {
      expect(await b.stop()).toBe(0);
    }
  });
});
