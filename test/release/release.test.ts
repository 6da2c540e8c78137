/**
 * `bun run release`: one binary per platform and SHA256SUMS. The linux-x64 binary is run (from an
 * empty directory, so nothing is read from the sources); the others are checked by their headers,
 * since this machine cannot run them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { artifactName, TARGETS } from "../../scripts/release";
import { finished } from "../broker/helpers";
import { startBrokerProcess, tempDir } from "../cli/broker-process";
import { CliProcesses } from "../cli/cli-process";

const root = new URL("../..", import.meta.url).pathname;
let out: ReturnType<typeof tempDir>;
let empty: ReturnType<typeof tempDir>;
const file = (target: string) => join(out.dir, artifactName(TARGETS.find((t) => t.name === target)!));

beforeAll(async () => {
  out = tempDir();
  empty = tempDir();
  // what `bun run release` runs, into a temporary directory
  expect(pkg.scripts.release).toBe("bun scripts/release.ts");
  const r = await finished(Bun.spawn([process.execPath, "scripts/release.ts", "--outdir", out.dir], { cwd: root, stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
  if (r.code !== 0) throw new Error(`the release build failed: ${r.stdout}${r.stderr}`);
}, 300_000); // six targets; each target's runtime is fetched from the npm registry the first time

afterAll(() => {
  out.remove();
  empty.remove();
});

describe("bun run release", () => {
  test("one binary per platform, named mqtttools-VERSION-OS-ARCH, and SHA256SUMS that sha256sum -c accepts", async () => {
    const names = TARGETS.map((t) => `mqtttools-${pkg.version}-${t.name}${t.name.startsWith("windows") ? ".exe" : ""}`);
    expect(readdirSync(out.dir).sort()).toEqual([...names, "SHA256SUMS"].sort());
    const check = await finished(Bun.spawn(["sha256sum", "-c", "SHA256SUMS"], { cwd: out.dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
    expect(check.code).toBe(0);
    expect(check.stdout.trim().split("\n").sort()).toEqual(names.map((n) => `${n}: OK`).sort());
  });

  /** The first bytes of a file. */
  const head = async (path: string, n = 4096) => new Uint8Array(await Bun.file(path).slice(0, n).arrayBuffer());
  const u16 = (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8);
  const u32 = (b: Uint8Array, at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

  test.each([
    ["linux-x64", 0x3e, "ld-linux-x86-64"],
    ["linux-x64-musl", 0x3e, "ld-musl-x86_64"],
    ["linux-arm64", 0xb7, "ld-linux-aarch64"],
  ])("%s is an ELF executable for e_machine %d with interpreter %s", async (target, machine, interpreter) => {
    const b = await head(file(target));
    expect([...b.slice(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]); // \x7fELF
    expect(b[4]).toBe(2); // 64-bit
    expect(u16(b, 18)).toBe(machine); // e_machine
    expect(new TextDecoder("latin1").decode(b)).toContain(interpreter);
  });

  test.each([
    ["darwin-x64", 0x01000007],
    ["darwin-arm64", 0x0100000c],
  ])("%s is a 64-bit Mach-O executable for CPU type %d", async (target, cputype) => {
    const b = await head(file(target));
    expect(u32(b, 0)).toBe(0xfeedfacf); // MH_MAGIC_64
    expect(u32(b, 4)).toBe(cputype);
    expect(u32(b, 12)).toBe(2); // MH_EXECUTE
  });

  test("windows-x64 is a PE executable for x86-64", async () => {
    const b = await head(file("windows-x64"));
    expect(String.fromCharCode(b[0]!, b[1]!)).toBe("MZ");
    const pe = u32(b, 0x3c);
    expect([...b.slice(pe, pe + 4)]).toEqual([0x50, 0x45, 0, 0]); // "PE\0\0"
    expect(u16(b, pe + 4)).toBe(0x8664); // IMAGE_FILE_MACHINE_AMD64
  });
});

describe("the linux-x64 binary, run from an empty directory", () => {
  test("--version prints the package's version", async () => {
    const r = await finished(Bun.spawn([file("linux-x64"), "--version"], { cwd: empty.dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
    expect(r).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
  });

  test.each([[[]], [["--thread"]]])("broker %p serves its own subscribe and publish", async (extra) => {
    const exe = file("linux-x64");
    const b = await startBrokerProcess(["broker", ...extra, "--host", "127.0.0.1", "--port", "0"], [exe], empty.dir);
    const cli = new CliProcesses([exe], empty.dir);
    try {
      const at = ["--host", "127.0.0.1", "--port", String(b.ports[0])];
      const sub = await cli.subscriber([...at, "-C", "1", "-q", "1", "release/t"]);
      expect((await cli.run(["publish", ...at, "-q", "1", "release/t", "from the release binary"])).code).toBe(0);
      await sub.line("Message: from the release binary");
      expect(await sub.exit()).toBe(0);
    } finally {
      cli.killAll();
      expect(await b.stop()).toBe(0);
    }
  });
});
