/** Test helpers: the broker command run as a process (from source or as the executable), and test certificates. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { finished, startBroker } from "../broker/helpers";
import { startMosquitto } from "../client/helpers";

export const entry = new URL("../../index.ts", import.meta.url).pathname;

/** A running `mqtttools broker`: its bound ports (in listener order) and everything it wrote to stderr so far. */
export interface BrokerProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  ports: number[];
  stdout: string;
  stderr: () => string;
  /** Resolves once stderr matches `pattern` (rejects if the process ends first). */
  waitStderr: (pattern: RegExp) => Promise<string>;
  /** SIGTERM, then the exit code (once all of stderr is read). */
  stop: () => Promise<number>;
}

/**
 * Runs `[...cmd, ...args]` (cmd defaults to the CLI from source) and resolves once it printed its
 * "Listening on ..." line; rejects with its output when it exits first.
 */
export async function startBrokerProcess(args: string[], cmd: string[] = [process.execPath, entry], cwd?: string): Promise<BrokerProcess> {
  const proc = Bun.spawn([...cmd, ...args], { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let err = "";
  const errWaiters: (() => void)[] = [];
  const exited = proc.exited.then(() => errWaiters.splice(0).forEach((w) => w()));
  const errDone = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) {
      err += dec.decode(chunk, { stream: true });
      errWaiters.splice(0).forEach((w) => w());
    }
  })();
  const reader = proc.stdout.getReader();
  let out = "";
  try {
    while (!/Listening on (.*)\. Press/.test(out)) {
      const { value, done } = await reader.read();
      if (done) {
        await exited;
        throw new Error(`the broker exited with code ${proc.exitCode}: ${out}${err}`);
      }
      out += new TextDecoder().decode(value);
    }
  } catch (e) {
    proc.kill("SIGKILL");
    throw e;
  }
  reader.releaseLock();
  void proc.stdout.pipeTo(new WritableStream()).catch(() => {});
  const ports = [...(/Listening on (.*)\. Press/.exec(out)![1]!.matchAll(/:(\d+)/g))].map((m) => Number(m[1]));
  return {
    proc,
    ports,
    stdout: out,
    stderr: () => err,
    waitStderr: async (pattern) => {
      while (!pattern.test(err)) {
        if (proc.exitCode !== null) throw new Error(`the broker exited before printing ${pattern}: ${err}`);
        await new Promise<void>((resolve) => errWaiters.push(resolve));
      }
      return err;
    },
    stop: async () => {
      proc.kill("SIGTERM");
      const code = await proc.exited;
      await errDone;
      return code;
    },
  };
}

/** A temporary directory, removed by the returned function. */
export function tempDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "mqtttools-cli-"));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function openssl(dir: string, ...args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "ignore", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
}

/**
 * Makes a test CA and, signed by it, a server certificate for localhost / 127.0.0.1 and a client
 * certificate, in `dir`: ca.crt, server.crt, server.key, client.crt, client.key.
 */
export function makeCertificates(dir: string): void {
  openssl(dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=mqtttools test CA");
  writeFileSync(join(dir, "server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  for (const name of ["server", "client"]) {
    openssl(dir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name === "server" ? "localhost" : "mqtttools test client"}`);
    openssl(dir, "x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.crt`, "-days", "1", ...(name === "server" ? ["-extfile", "server.ext"] : []));
  }
}

/**
 * The broker processes one test file starts: `broker(...args)` runs `mqtttools broker ARGS`,
 * `stop(b)` stops one and expects exit code 0, `stopAll()` (in afterAll) stops what is left.
 */
export function brokerProcesses(): { broker: (...args: string[]) => Promise<BrokerProcess>; track: (b: BrokerProcess) => BrokerProcess; stop: (b: BrokerProcess) => Promise<void>; stopAll: () => Promise<void> } {
  const running = new Set<BrokerProcess>();
  const track = (b: BrokerProcess) => {
    running.add(b);
    return b;
  };
  return {
    broker: async (...args) => track(await startBrokerProcess(["broker", ...args])),
    track,
    stop: async (b) => {
      running.delete(b);
      const code = await b.stop();
      if (code !== 0) throw new Error(`the broker exited with code ${code}: ${b.stderr()}`);
    },
    stopAll: async () => {
      for (const b of running) await b.stop();
      running.clear();
    },
  };
}

/** Runs the CLI from source to its end, stdin closed: exit code, stdout and stderr. */
export const runCli = (...args: string[]) => finished(Bun.spawn([process.execPath, entry, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" }));

/** The brokers a CLI test runs against: ours (in-process) and Mosquitto, each on a free port. */
export const BOTH_BROKERS: [string, () => Promise<{ port: number; stop: () => Promise<void> }>][] = [
  ["the project's broker", () => startBroker()],
  ["Mosquitto", () => startMosquitto()],
];
