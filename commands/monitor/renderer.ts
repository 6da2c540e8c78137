/**
 * The monitor's own ANSI renderer: a full-screen frame on the alternate screen with the cursor
 * hidden, keys read in raw mode, and a frame buffer diffed line by line so that only the lines
 * that changed are rewritten.
 *
 * Frames are drawn on demand (invalidate()) but at most FPS times a second: an invalidation
 * schedules one render, and further invalidations before it runs cost nothing. A resize (SIGWINCH
 * or the stdout 'resize' event) clears the screen and redraws every line.
 *
 * The terminal is restored (main screen, cursor shown, cooked mode) by stop(), which is
 * idempotent and also runs from a process 'exit' handler, so that every exit path — q, Ctrl-C,
 * SIGTERM, an error — leaves the shell usable.
 */
import { writeSync } from "node:fs";

/** The most frames drawn in a second. */
export const FPS = 30;

const ESC = "\x1b";
const ENTER_SCREEN = `${ESC}[?1049h${ESC}[?25l${ESC}[2J`;
const LEAVE_SCREEN = `${ESC}[0m${ESC}[?25h${ESC}[?1049l`;

/** A key press, by name: single characters as themselves, others as "up", "enter", "ctrl-c", ... */
export type Key = string;

const CSI_KEYS: Record<string, Key> = {
  A: "up", B: "down", C: "right", D: "left", H: "home", F: "end",
  "1~": "home", "4~": "end", "7~": "home", "8~": "end", "5~": "pageup", "6~": "pagedown", "3~": "delete",
};

/** Splits a chunk of terminal input into key names. */
export function parseKeys(data: string): Key[] {
  const keys: Key[] = [];
  let i = 0;
  while (i < data.length) {
    const c = data[i]!;
    if (c === ESC) {
      const next = data[i + 1];
      if (next === "[" || next === "O") {
        // CSI or SS3: parameters, then a final byte from @ to ~
        let j = i + 2;
        while (j < data.length && !(data.charCodeAt(j) >= 0x40 && data.charCodeAt(j) <= 0x7e)) j++;
        const body = data.slice(i + 2, j + 1).replace(/^1;\d+(?=[A-H])/, "");
        keys.push(CSI_KEYS[body] ?? `unknown:${body}`);
        i = j + 1;
        continue;
      }
      keys.push("escape");
      i++;
      continue;
    }
    if (c === "\r" || c === "\n") keys.push("enter");
    else if (c === "\x7f" || c === "\b") keys.push("backspace");
    else if (c === "\x03") keys.push("ctrl-c");
    else if (c === "\t") keys.push("tab");
    else if (c < " ") keys.push(`ctrl-${String.fromCharCode(c.charCodeAt(0) + 96)}`);
    else {
      // one key per code point (a surrogate pair stays whole)
      const cp = data.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      keys.push(ch);
      i += ch.length;
      continue;
    }
    i++;
  }
  return keys;
}

/** Cuts or pads a line (which may hold SGR colour codes) to exactly `width` columns. */
export function fit(line: string, width: number): string {
  let w = Bun.stringWidth(line);
  if (w > width) {
    // a wide character across the edge is left out whole
    for (let end = width; w > width && end > 0; end--) {
      line = Bun.sliceAnsi(line, 0, end);
      w = Bun.stringWidth(line);
    }
    if (w > width) return "";
  }
  return line + " ".repeat(width - w);
}

/** What the renderer asks of the screen it draws: the lines of a frame of the given size. */
export type Draw = (width: number, height: number) => string[];

/** Draws frames on the terminal and reports key presses; see the module comment. */
export class Renderer {
  private previous: string[] = [];
  private scheduled: Timer | null = null;
  private lastFrame = 0;
  private active = false;
  private width = 0;
  private height = 0;
  private readonly stdin = process.stdin;
  private readonly stdout = process.stdout;
  private readonly onData = (chunk: Buffer | string) => {
    try {
      for (const key of parseKeys(typeof chunk === "string" ? chunk : chunk.toString("utf8"))) this.onKey(key);
    } catch (e) {
      this.fail(e);
    }
  };
  private readonly onResize = () => this.resize();
  private readonly onExit = () => this.stop();

  /**
   * @param draw makes the lines of a frame
   * @param onKey called for each key press
   * @param onError called (after the terminal is restored) when draw or onKey throws, so that the
   *   error can be reported on the main screen rather than lost with the alternate one
   */
  constructor(
    private readonly draw: Draw,
    private readonly onKey: (key: Key) => void,
    private readonly onError: (e: unknown) => void = (e) => {
      throw e;
    },
  ) {}

  private fail(e: unknown): void {
    this.stop();
    this.onError(e);
  }

  /** The screen size in columns and rows. */
  get size(): { width: number; height: number } {
    return { width: this.stdout.columns || 80, height: this.stdout.rows || 24 };
  }

  /** Switches the terminal to the alternate screen and raw mode and draws the first frame. */
  start(): void {
    if (this.active) return;
    this.active = true;
    process.on("exit", this.onExit);
    this.write(ENTER_SCREEN);
    if (this.stdin.isTTY) this.stdin.setRawMode(true);
    this.stdin.on("data", this.onData);
    this.stdin.resume();
    this.stdout.on("resize", this.onResize);
    process.on("SIGWINCH", this.onResize);
    this.render();
  }

  /** Asks for a new frame; it is drawn at once or when the frame rate allows. */
  invalidate(): void {
    if (!this.active || this.scheduled !== null) return;
    const wait = Math.max(0, this.lastFrame + 1000 / FPS - performance.now());
    this.scheduled = setTimeout(() => {
      this.scheduled = null;
      this.render();
    }, wait);
  }

  /** Redraws everything (after a resize). */
  private resize(): void {
    if (!this.active) return;
    this.previous = [];
    this.write(`${ESC}[2J`);
    this.invalidate();
  }

  /** Draws a frame now, rewriting only the lines that differ from the previous frame. */
  render(): void {
    if (!this.active) return;
    this.lastFrame = performance.now();
    const { width, height } = this.size;
    if (width !== this.width || height !== this.height) {
      this.width = width;
      this.height = height;
      if (this.previous.length > 0) {
        this.previous = [];
        this.write(`${ESC}[2J`);
      }
    }
    let lines: string[];
    try {
      lines = this.draw(width, height);
    } catch (e) {
      this.fail(e);
      return;
    }
    let out = "";
    for (let row = 0; row < height; row++) {
      const line = fit(lines[row] ?? "", width);
      if (this.previous[row] === line) continue;
      this.previous[row] = line;
      out += `${ESC}[${row + 1};1H${line}${ESC}[0m`;
    }
    this.previous.length = height;
    if (out !== "") this.write(out);
  }

  /** Restores the terminal: main screen, cursor, cooked mode. Safe to call more than once. */
  stop(): void {
    if (!this.active) return;
    this.active = false;
    if (this.scheduled !== null) clearTimeout(this.scheduled);
    this.scheduled = null;
    this.stdin.off("data", this.onData);
    this.stdout.off("resize", this.onResize);
    process.off("SIGWINCH", this.onResize);
    process.off("exit", this.onExit);
    try {
      if (this.stdin.isTTY) this.stdin.setRawMode(false);
    } catch {
      // the terminal may be gone already
    }
    this.stdin.pause();
    this.write(LEAVE_SCREEN);
  }

  /** Writes synchronously, so that nothing is lost when the process exits right after. */
  private write(s: string): void {
    const bytes = Buffer.from(s);
    let done = 0;
    while (done < bytes.length) {
      try {
        done += writeSync(1, bytes, done);
      } catch (e) {
        if ((e as { code?: string }).code === "EAGAIN") continue; // a non-blocking terminal is full: retry
        return; // stdout closed: nothing left to draw on
      }
    }
  }
}
