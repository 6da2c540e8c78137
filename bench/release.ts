/**
 * Which `bun build --compile` flags the release binaries get: builds the CLI for this machine
 * with each set of flags and reports the file size and the start-up time (`--version`, median
 * and p90 of RUNS runs, from a directory without the sources).
 *
 *   bun bench/release.ts          (or: bun run bench:release)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ENTRIES } from "../scripts/release";

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const FLAG_SETS = [[], ["--minify"], ["--sourcemap"], ["--bytecode", "--format=esm"], ["--minify", "--bytecode", "--format=esm"], ["--minify", "--sourcemap", "--bytecode", "--format=esm"]];
const root = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "mqtttools-release-bench-"));

try {
  const rows: string[][] = [["flags", "size", "start-up p50", "start-up p90"]];
  for (const [i, flags] of FLAG_SETS.entries()) {
    const exe = join(dir, `mqtttools-${i}`);
    const b = Bun.spawnSync([process.execPath, "build", "--compile", ...flags, ...ENTRIES, "--outfile", exe], { cwd: root, stdout: "pipe", stderr: "pipe" });
    if (b.exitCode !== 0) throw new Error(`build with ${flags.join(" ")} failed: ${b.stderr}`);
    const times: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t0 = performance.now();
      const p = Bun.spawnSync([exe, "--version"], { cwd: dir, stdout: "pipe" });
      if (p.exitCode !== 0) throw new Error(`${exe} --version failed`);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const pct = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
    rows.push([flags.join(" ") || "(none)", `${(Bun.file(exe).size / 1048576).toFixed(1)} MiB`, `${pct(0.5).toFixed(1)} ms`, `${pct(0.9).toFixed(1)} ms`]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
