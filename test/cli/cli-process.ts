/** CLI processes for the tests: stdout read line by line as it comes, stderr as one string. */
import type { Subprocess } from "bun";
import { entry } from "./broker-process";

const decoder = new TextDecoder();

/** A CLI process whose stdout is read line by line as it comes. */
export class Cli {
  readonly lines: string[] = [];
  stderr = "";
  private waiters: (() => void)[] = [];
  private ended = false;
  private readonly reading: Promise<void>;

  constructor(readonly proc: Subprocess<"pipe" | "ignore", "pipe", "pipe">) {
    this.reading = Promise.all([this.readOut(), this.readErr()]).then(() => undefined);
  }

  private async readOut(): Promise<void> {
    let rest = "";
    for await (const chunk of this.proc.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop()!;
      this.lines.push(...parts);
      for (const w of this.waiters.splice(0)) w();
    }
    if (rest !== "") this.lines.push(rest);
    this.ended = true;
    for (const w of this.waiters.splice(0)) w();
  }

  private async readErr(): Promise<void> {
    for await (const chunk of this.proc.stderr) {
      this.stderr += decoder.decode(chunk, { stream: true });
      for (const w of this.waiters.splice(0)) w();
    }
  }

  /** Waits until stdout or stderr has a line equal to `line` or matching it (fails when the process ends first). */
  async line(line: string | RegExp): Promise<void> {
    const is = (l: string) => (typeof line === "string" ? l === line : line.test(l));
    while (!this.lines.some(is) && !this.stderr.split("\n").some(is)) {
      if (this.ended) throw new Error(`exited without printing '${line}': ${JSON.stringify(this.lines)} ${this.stderr}`);
      const { promise, resolve } = Promise.withResolvers<void>();
      this.waiters.push(resolve);
      await promise;
    }
  }

  /** The exit code, once all output is read. */
  async exit(): Promise<number> {
    const code = await this.proc.exited;
    await this.reading;
    return code;
  }
}

/** The CLI processes one test started; killAll() in afterEach. */
export class CliProcesses {
  private readonly running: Cli[] = [];

  /**
   * @param command how the CLI is run: from source by default, or the compiled executable
   * @param cwd the directory it runs in (default: this process's)
   */
  constructor(
    private readonly command: string[] = [process.execPath, entry],
    private readonly cwd?: string,
  ) {}

  /** Starts the CLI (or another command, `cmd`); `stdin` is written and closed. */
  spawn(args: string[], stdin?: string | Uint8Array, cmd = this.command): Cli {
    const proc = Bun.spawn([...cmd, ...args], {
      cwd: this.cwd,
      stdin: stdin === undefined ? "ignore" : "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    if (stdin !== undefined && typeof proc.stdin !== "number" && proc.stdin !== undefined) {
      proc.stdin.write(stdin);
      void proc.stdin.end();
    }
    const cli = new Cli(proc as Subprocess<"pipe" | "ignore", "pipe", "pipe">);
    this.running.push(cli);
    return cli;
  }

  /** Runs the CLI to the end. */
  async run(args: string[], stdin?: string | Uint8Array): Promise<{ code: number; stdout: string[]; stderr: string }> {
    const p = this.spawn(args, stdin);
    const code = await p.exit();
    return { code, stdout: p.lines, stderr: p.stderr };
  }

  /** A subscriber that has printed "Connected." (so it is subscribed). */
  async subscriber(args: string[]): Promise<Cli> {
    const p = this.spawn(["subscribe", ...args]);
    await p.line("Connected.");
    return p;
  }

  killAll(): void {
    for (const c of this.running.splice(0)) c.proc.kill("SIGKILL");
  }
}
