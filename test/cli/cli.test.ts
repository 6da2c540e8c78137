import { describe, expect, test } from "bun:test";
import pkg from "../../package.json" with { type: "json" };

const entry = new URL("../../index.ts", import.meta.url).pathname;

/** Runs the CLI as a user would and returns its exit code and output. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, entry, ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

describe("mqtttools CLI", () => {
  test("--version prints the package version", async () => {
    const r = await cli("--version");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  test("--help lists the commands and exits 0", async () => {
    const r = await cli("--help");
    expect(r.code).toBe(0);
    for (const word of ["Usage", "broker", "subscribe", "publish", "monitor", "--version"]) {
      expect(r.stdout).toContain(word);
    }
  });

  test("an unknown command is a one-line error and exit code 2", async () => {
    const r = await cli("frobnicate");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });

  test("the library entry exports the codec without running the CLI", async () => {
    const lib = await import("../../index.ts");
    expect(typeof lib.decodePacket).toBe("function");
    expect(typeof lib.encodePacket).toBe("function");
    expect(lib.ReasonCode.MalformedPacket).toBe(0x81);
  });
});

describe("mqtttools broker", () => {
  test("starts on a free port, serves a client, and stops cleanly on SIGTERM", async () => {
    const proc = Bun.spawn([process.execPath, entry, "broker", "--host", "127.0.0.1", "--port", "0", "--log-level", "error"], { stdout: "pipe", stderr: "pipe" });
    try {
      const reader = proc.stdout.getReader();
      let out = "";
      while (!/Listening on .*:(\d+)/.test(out)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`broker exited early: ${out}`);
        out += new TextDecoder().decode(value);
      }
      const port = Number(/Listening on .*:(\d+)/.exec(out)![1]);
      const mqtt = (await import("mqtt")).default;
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
      const got = Promise.withResolvers<string>();
      client.on("message", (_t, m) => got.resolve(m.toString()));
      await client.subscribeAsync("cli/test");
      await client.publishAsync("cli/test", "hello");
      expect(await got.promise).toBe("hello");
      await client.endAsync();
      reader.releaseLock();
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    } finally {
      proc.kill("SIGKILL");
    }
  });

  test.each([
    [["--port", "x"], "--port must be an integer"],
    [["--bogus"], "Unknown option '--bogus'"],
    [["--log-level", "loud"], "--log-level must be"],
  ])("bad arguments %p are a one-line usage error, exit code 2", async (args, message) => {
    const r = await cli("broker", ...args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(message);
  });

  test("a port in use is a one-line run-time error, exit code 1", async () => {
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const r = await cli("broker", "--host", "127.0.0.1", "--port", String(server.port));
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    } finally {
      server.stop(true);
    }
  });
});
