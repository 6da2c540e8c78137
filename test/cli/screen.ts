/** A pseudo-terminal for the monitor tests: tmux, driven with send-keys and read with capture-pane. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { entry } from "./broker-process";

const root = new URL("../..", import.meta.url).pathname;

/**
 * `mqtttools monitor` in a pseudo-terminal: a tmux session of fixed size on a private tmux server,
 * whose screen is read with capture-pane. The session runs a shell that prints a marker, runs the
 * monitor and prints its exit code, so that the screen after the monitor shows whether the
 * terminal was given back.
 */
export class Screen {
  /** A tmux server of its own for each test (a socket in a new temporary directory), so that none waits for another. */
  static dir = "";
  static readonly session = "monitor";

  /** Runs a tmux command on the private server; returns its output. */
  static tmux(...args: string[]): string {
    const env = { ...process.env };
    delete env.TMUX;
    const r = Bun.spawnSync(["tmux", "-S", join(Screen.dir, "socket"), ...args], { env, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`tmux ${args.join(" ")}: ${r.stderr.toString().trim()}`);
    return r.stdout.toString();
  }

  /** Starts `mqtttools monitor ARGS...` (from source, or `command`; another subcommand with `subcommand`) in a new session of the given size. */
  static start(args: string[], width = 100, height = 30, command = [process.execPath, entry], cwd = root, subcommand = "monitor"): Screen {
    Screen.dir = mkdtempSync(join(tmpdir(), "mqtttools-monitor-"));
    const script = 'echo BEFORE-MONITOR; "$0" "$@"; echo "EXIT=$?"; exec sleep 600';
    Screen.tmux("new-session", "-d", "-s", Screen.session, "-x", String(width), "-y", String(height), "-c", cwd, "sh", "-c", script, ...command, subcommand, ...args);
    return new Screen();
  }

  /** Ends the tmux server, and with it the monitor and the shell (SIGHUP), and removes its socket. */
  static killAll(): void {
    if (Screen.dir === "") return;
    try {
      Screen.tmux("kill-server");
    } catch {
      // no server running
    }
    rmSync(Screen.dir, { recursive: true, force: true });
    Screen.dir = "";
  }

  /** The visible text of the pane, one string per row. */
  rows(): string[] {
    return Screen.tmux("capture-pane", "-p", "-t", Screen.session).replace(/\n$/, "").split("\n");
  }

  text(): string {
    return this.rows().join("\n");
  }

  /** A tmux format variable of the pane, such as alternate_on or cursor_flag. */
  format(name: string): string {
    return Screen.tmux("display-message", "-p", "-t", Screen.session, `#{${name}}`).trim();
  }

  /** Sends keys by tmux name ("q", "Enter", "Escape", "Down", "C-c", ...). */
  keys(...keys: string[]): void {
    Screen.tmux("send-keys", "-t", Screen.session, ...keys);
  }

  /** Types a literal string. */
  type(text: string): void {
    Screen.tmux("send-keys", "-t", Screen.session, "-l", text);
  }

  /** Waits until the screen satisfies `condition`; fails with the last screen. */
  async until(condition: (text: string, rows: string[]) => boolean, what: string, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const rows = this.rows();
      const text = rows.join("\n");
      if (condition(text, rows)) return text;
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}; the screen:\n${text}`);
      await Bun.sleep(20);
    }
  }

  /** Waits until the screen shows `s`. */
  shows(s: string): Promise<string> {
    return this.until((t) => t.includes(s), `the screen shows '${s}'`);
  }
}
