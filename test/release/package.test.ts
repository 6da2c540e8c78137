/**
 * The npm package: `npm pack` carries exactly what a user needs, and a new project that installs
 * the packed tarball with `bun add` imports the library (type-checked with tsc), runs it, and runs
 * the CLI with `bunx mqtttools`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { finished } from "../broker/helpers";
import { tempDir } from "../cli/broker-process";

const root = new URL("../..", import.meta.url).pathname;
let dir: ReturnType<typeof tempDir>;
let project: string;
let tarball: string;

/** Runs a command to the end; throws with its output when it fails. */
async function run(cmd: string[], cwd: string): Promise<string> {
  const r = await finished(Bun.spawn(cmd, { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } }));
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited with ${r.code}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  dir = tempDir();
  const packed = JSON.parse(await run(["npm", "pack", "--json", "--pack-destination", dir.dir], root)) as { filename: string }[];
  tarball = join(dir.dir, packed[0]!.filename);
  project = join(dir.dir, "app");
  await run(["mkdir", "-p", project], dir.dir);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  await run([process.execPath, "add", tarball], project); // its dependencies come from the npm registry
}, 120_000);

afterAll(() => dir.remove());

describe("the npm package", () => {
  test("npm pack lists exactly the library, the CLI, README, LICENSE and package.json: no tests, benchmarks or fixtures", async () => {
    const [listing] = JSON.parse(await run(["npm", "pack", "--dry-run", "--json"], root)) as { files: { path: string }[] }[];
    const tracked = (await run(["git", "ls-files", "index.ts", "lib", "commands", "README.md", "LICENSE", "package.json"], root)).trim().split("\n");
    expect(listing!.files.map((f) => f.path).sort()).toEqual(tracked.sort());
    expect(tracked.some((f) => f.startsWith("test/") || f.startsWith("bench/"))).toBe(false);
  });

  test("a TypeScript file importing Client and Broker from the installed package, and mqtttools/testing, type-checks under tsc --noEmit and runs", async () => {
    writeFileSync(
      join(project, "app.ts"),
      `import { Broker, Client, Message } from "mqtttools";
import { measurePublishes, testBroker } from "mqtttools/testing";
const broker = new Broker([["127.0.0.1", 0]]);
const [port] = await broker.start();
const client = new Client("127.0.0.1", port!);
await client.start();
await client.subscribe("app/t");
await client.publish(new Message("app/t", "hello from a project"));
const m = await client.messages.get();
console.log(m?.text);
await client.stop();
await broker.stop();
await using kit = await testBroker();
const r = await measurePublishes({ url: kit.url, topic: "app/load", count: 100, qos: 1 });
console.log(\`\${r.received} of \${r.sent}\`);
`,
    );
    const options = { ...(await Bun.file(join(root, "tsconfig.json")).json()).compilerOptions, typeRoots: [join(root, "node_modules")], types: ["bun-types"] };
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify({ compilerOptions: options, include: ["app.ts"] }));
    await run([join(root, "node_modules/.bin/tsc"), "--noEmit", "-p", project], project);
    expect(await run([process.execPath, "app.ts"], project)).toBe("hello from a project\n100 of 100\n");
  });

  test("bunx mqtttools --version runs the installed CLI", async () => {
    expect(await run([process.execPath, "x", "mqtttools", "--version"], project)).toBe(`${pkg.version}\n`);
  });

  test("prepublishOnly runs the type check and the tests", () => {
    expect(pkg.scripts.prepublishOnly).toBe("tsc --noEmit && bun test --timeout 20000");
  });
});
