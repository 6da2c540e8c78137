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
