/**
 * Builds the downloadable `mqtttools` executables, one per platform, and their SHA256SUMS.
 *
 *   bun run release                               every target, into dist/release/
 *   bun scripts/release.ts --targets linux-x64,darwin-arm64 --outdir DIR
 *
 * Each is `bun build --compile` of the CLI with the broker's Worker entry (thread mode works), for
 * one `--target`; Bun fetches each target's runtime from the npm registry the first time. The
 * version printed by `--version` is package.json's, inlined at build time. BUILD_FLAGS are the
 * ones that measured best (bench/release.ts): bytecode halves the start-up time for 2 MB more.
 * Files: mqtttools-VERSION-OS-ARCH[.exe]; SHA256SUMS in the format `sha256sum -c` reads.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };

/** A platform users download a binary for: its name in file names and Bun's --target. */
export interface ReleaseTarget {
  name: string;
  bunTarget: string;
  exe: boolean;
}

/** Every platform a release is built for. */
export const TARGETS: ReleaseTarget[] = [
  { name: "linux-x64", bunTarget: "bun-linux-x64", exe: false },
  { name: "linux-x64-musl", bunTarget: "bun-linux-x64-musl", exe: false },
  { name: "linux-arm64", bunTarget: "bun-linux-arm64", exe: false },
  { name: "darwin-x64", bunTarget: "bun-darwin-x64", exe: false },
  { name: "darwin-arm64", bunTarget: "bun-darwin-arm64", exe: false },
  { name: "windows-x64", bunTarget: "bun-windows-x64", exe: true },
];

/** The build flags of every release binary (and of `bun run build`): see bench/release.ts for why. */
export const BUILD_FLAGS = ["--minify", "--bytecode", "--format=esm"];

/** The entry points: the CLI and the Worker that thread mode starts. */
export const ENTRIES = ["index.ts", "lib/thread/worker.ts"];

const root = resolve(import.meta.dir, "..");

/** The file name of one target's binary. */
export function artifactName(target: ReleaseTarget, version = pkg.version): string {
  return `mqtttools-${version}-${target.name}${target.exe ? ".exe" : ""}`;
}

/** Builds one binary; rejects with the compiler's output when it fails. */
async function build(target: ReleaseTarget, outfile: string): Promise<void> {
  const proc = Bun.spawn([process.execPath, "build", "--compile", ...BUILD_FLAGS, `--target=${target.bunTarget}`, ...ENTRIES, "--outfile", outfile], {
    cwd: root,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`building ${target.name} failed:\n${out}${err}`);
}

/** SHA-256 of a file, in hex. */
async function sha256(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  hasher.update(await Bun.file(path).arrayBuffer());
  return hasher.digest("hex");
}

/** Builds the targets into `outdir` (emptied first) and writes SHA256SUMS; returns the files with their digests. */
export async function buildRelease(outdir: string, targets: ReleaseTarget[] = TARGETS): Promise<{ file: string; sha256: string }[]> {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const built: { file: string; sha256: string }[] = [];
  for (const t of targets) {
    const file = join(outdir, artifactName(t));
    await build(t, file);
    rmSync(`${file}.map`, { force: true });
    built.push({ file, sha256: await sha256(file) });
  }
  writeFileSync(join(outdir, "SHA256SUMS"), built.map((b) => `${b.sha256}  ${basename(b.file)}\n`).join(""));
  return built;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const names = value("--targets")?.split(",");
  const targets = names === undefined ? TARGETS : names.map((n) => TARGETS.find((t) => t.name === n) ?? fail(`unknown target '${n}' (one of ${TARGETS.map((t) => t.name).join(", ")})`));
  const outdir = resolve(value("--outdir") ?? join(root, "dist/release"));
  const started = performance.now();
  for (const b of await buildRelease(outdir, targets)) console.log(`${b.sha256}  ${b.file} (${(Bun.file(b.file).size / 1048576).toFixed(1)} MiB)`);
  console.log(`${targets.length} binaries and SHA256SUMS in ${outdir}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

function fail(message: string): never {
  console.error(`release: ${message}`);
  process.exit(2);
}
