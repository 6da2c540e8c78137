import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { MonitorModel, numericPayload, topicTree } from "../../lib/monitor/model";
import { fit, parseKeys } from "../../commands/monitor/renderer";
import { drawFrame, handleKey, initialState } from "../../commands/monitor/view";
import { formatPayload, sparkline } from "../../lib/monitor/format";
import { startBroker } from "../broker/helpers";
import { entry } from "./broker-process";
import { Screen } from "./screen";


let broker: Awaited<ReturnType<typeof startBroker>>;
let client: Client;

beforeEach(async () => {
  broker = await startBroker();
  client = new Client("127.0.0.1", broker.port, { connectDelays: [] });
  await client.start();
});

afterEach(async () => {
  Screen.killAll();
  await client.stop();
  await broker.stop();
});

/** Starts a monitor of '#' on the test broker and waits until it is subscribed and drawn. */
async function monitor(width = 100, height = 30, ...args: string[]): Promise<Screen> {
  const screen = Screen.start(["#", "--host", "127.0.0.1", "--port", String(broker.port), ...args], width, height);
  await screen.shows("TOPIC & MESSAGE"); // drawn once subscribed
  return screen;
}

const publish = (topic: string, payload: string | Uint8Array, options: { qos?: 0 | 1 | 2; retain?: boolean } = {}) =>
  client.publish(new Message(topic, payload, options));

/** The status line's message count. */
const messages = (n: number) => `Messages: ${n} `;

describe("mqtttools monitor (in a terminal)", () => {
  test("shows the TIMESTAMP / TOPIC & MESSAGE table with the latest message of each topic", async () => {
    const screen = await monitor();
    expect(screen.format("alternate_on")).toBe("1");
    await publish("a/b", "hello");
    await publish("a/b", "world");
    await publish("sensors/json", '{"t":21.5,"ok":true}');
    for (const v of ["1", "5", "3", "9"]) await publish("sensors/n", v);
    await publish("bin", new Uint8Array([0, 1, 2, 0x61, 0x62, 0x63]));
    const text = await screen.shows(messages(8));
    expect(text).toContain("TIMESTAMP     TOPIC & MESSAGE");
    expect(text).toContain("q: Quit, p: Play/Pause, f: Format (auto)");
    expect(text).toMatch(/\d\d:\d\d:\d\d\.\d{3}  a\/b  \(2\)\n {14}world\n/);
    expect(text).not.toContain("hello");
    expect(text).toContain('  "t": 21.5,'); // JSON pretty-printed, one field a line
    expect(text).toContain("0000  00 01 02 61 62 63"); // not printable: hex
    expect(text).toMatch(/sensors\/n  \(4\)  [▁▂▃▄▅▆▇█]{4} 9/); // numbers: a sparkline
    expect(text).toContain("Topics: 4");
  });

  test("p freezes the view while messages keep being counted", async () => {
    const screen = await monitor();
    await publish("a/b", "before");
    await screen.shows("before");
    screen.keys("p");
    await screen.shows("PAUSED");
    await publish("a/b", "after");
    await publish("c/d", "new topic");
    let text = await screen.shows(messages(3));
    expect(text).toContain("before");
    expect(text).not.toContain("after");
    expect(text).not.toContain("c/d");
    screen.keys("p");
    text = await screen.shows("after");
    expect(text).toContain("c/d");
    expect(text).not.toContain("PAUSED");
  });

  test("f cycles the format: auto, binary (hex dump), text", async () => {
    const screen = await monitor();
    await publish("a/b", '{"k":"hello"}');
    await screen.shows('"k": "hello"');
    screen.keys("f");
    let text = await screen.shows("f: Format (binary)");
    expect(text).toContain("0000  7b 22 6b 22 3a 22 68 65  6c 6c 6f 22 7d");
    screen.keys("f");
    text = await screen.shows("f: Format (text)");
    expect(text).toContain('{"k":"hello"}');
    screen.keys("f");
    await screen.shows("f: Format (auto)");
  });

  test("/ filters the topics by substring; Enter applies, Esc clears", async () => {
    const screen = await monitor();
    for (const t of ["home/kitchen/temp", "home/garage/door", "office/temp"]) await publish(t, "x");
    await screen.shows(messages(3));
    screen.keys("/");
    screen.type("temp");
    await screen.shows("Filter: temp");
    screen.keys("Enter");
    let text = await screen.shows("Filter: 'temp' (2 shown)");
    expect(text).toContain("home/kitchen/temp");
    expect(text).toContain("office/temp");
    expect(text).not.toContain("home/garage/door");
    screen.keys("Escape");
    text = await screen.shows("home/garage/door");
    expect(text).not.toContain("Filter:");
  });

  test("arrow keys select a topic and Enter shows its history (time, QoS, retain, size); Esc goes back", async () => {
    await publish("b", "kept", { qos: 1, retain: true }); // comes to the monitor as retained
    const screen = await monitor(100, 30, "--qos", "1");
    await publish("a", "first");
    await publish("b", "three", { qos: 1 });
    await publish("c", "last");
    await screen.shows(messages(4));
    screen.keys("Down", "Enter");
    const text = await screen.shows("History of b: last 2 of 2 message(s)");
    expect(text).toContain("TIME          QOS  RETAIN      SIZE  PAYLOAD");
    const [newest, oldest] = text.split("\n").slice(2, 4);
    expect(newest).toMatch(/^\d\d:\d\d:\d\d\.\d{3}  1    no             5  three$/);
    expect(oldest).toMatch(/^\d\d:\d\d:\d\d\.\d{3}  1    yes            4  kept$/);
    screen.keys("Escape");
    await screen.shows("TOPIC & MESSAGE");
    screen.keys("Down", "Enter");
    await screen.shows("History of c:");
    screen.keys("Enter");
    await screen.shows("TOPIC & MESSAGE");
  });

  test("PgDn, PgUp, End and Home scroll a list longer than the screen", async () => {
    const screen = await monitor(80, 12); // 10 table rows: the header and 4 topics of 2 lines
    for (let i = 0; i < 30; i++) await publish(`t/${String(i).padStart(2, "0")}`, `m${i}`);
    await screen.shows(messages(30));
    expect(screen.text()).toContain("t/03");
    screen.keys("PageDown", "PageDown"); // a page is the 4 topics on screen: t/08 is selected
    // wait for the frame after both keys: one drawn between them has scrolled away from t/00 too
    const text = await screen.until((t) => t.includes("t/08  (1)\n              m8"), "t/08 is on screen");
    expect(text).not.toContain("t/00");
    screen.keys("PageUp", "PageUp");
    await screen.shows("t/00");
    screen.keys("End");
    await screen.until((t) => t.includes("t/29") && !t.includes("t/00"), "the last topic is shown");
    screen.keys("Home");
    await screen.until((t) => t.includes("t/00") && !t.includes("t/29"), "the first topic is shown");
  });

  test("t switches to the topic tree with counts per branch", async () => {
    const screen = await monitor();
    await publish("home/kitchen/temp", "20");
    await publish("home/kitchen/temp", "21");
    await publish("home/garage/door", "open");
    await publish("office", "x");
    await screen.shows(messages(4));
    screen.keys("t");
    const text = await screen.shows("TOPIC TREE");
    const tree = text.split("\n").slice(1, 7).map((l) => l.trimEnd());
    expect(tree).toEqual(["home  3 in 2 topics", "  garage  1", "    door  1", "  kitchen  2", "    temp  2", "office  1"]);
    screen.keys("t");
    await screen.shows("TOPIC & MESSAGE");
  });

  test("a resize redraws the whole screen at the new size", async () => {
    const screen = await monitor(100, 30);
    await publish("a/b", "hello");
    await screen.shows("hello");
    Screen.tmux("resize-window", "-t", Screen.session, "-x", "120", "-y", "40");
    let rows = (await screen.until((_, r) => r.length === 40 && r[39]!.startsWith("q: Quit"), "the menu moves to the new last row")).split("\n");
    expect(rows[0]).toStartWith("TIMESTAMP");
    expect(rows.filter((r) => r.startsWith("q: Quit"))).toHaveLength(1);
    Screen.tmux("resize-window", "-t", Screen.session, "-x", "50", "-y", "10");
    // the old bottom rows may stay in view until the redraw: wait for the table on top
    rows = (await screen.until((_, r) => r.length === 10 && r[0]!.startsWith("TIMESTAMP") && r[1]!.includes("a/b"), "the table is redrawn")).split("\n");
    expect(rows[8]).toContain("Messages: 1");
    expect(rows[9]).toStartWith("q: Quit");
  });

  test.each([
    ["q", ["q"]],
    ["Ctrl-C", ["C-c"]],
  ])("%s quits with exit code 0 and gives the terminal back", async (_, keys) => {
    const screen = await monitor();
    expect(screen.format("cursor_flag")).toBe("0");
    screen.keys(...keys);
    const text = await screen.shows("EXIT=0");
    expect(text).toContain("BEFORE-MONITOR");
    expect(text).not.toContain("TOPIC & MESSAGE");
    expect(screen.format("alternate_on")).toBe("0");
    expect(screen.format("cursor_flag")).toBe("1");
  });

  test("SIGTERM quits with exit code 0 and gives the terminal back", async () => {
    const screen = await monitor();
    const shell = screen.format("pane_pid");
    const pids = Bun.spawnSync(["pgrep", "-P", shell]).stdout.toString().trim().split("\n");
    expect(pids).toHaveLength(1);
    process.kill(Number(pids[0]), "SIGTERM");
    const text = await screen.shows("EXIT=0");
    expect(text).not.toContain("TOPIC & MESSAGE");
    expect(screen.format("alternate_on")).toBe("0");
    expect(screen.format("cursor_flag")).toBe("1");
  });

  test("a refused connection is one line and exit code 1, the terminal untouched", async () => {
    const port = broker.port;
    await client.stop();
    await broker.stop();
    const screen = Screen.start(["#", "--host", "127.0.0.1", "--port", String(port)]);
    const text = await screen.shows("EXIT=1");
    expect(text).toContain(`mqtttools monitor: Connection refused: 127.0.0.1:${port}`);
    expect(screen.format("alternate_on")).toBe("0");
    broker = await startBroker(); // for afterEach
    client = new Client("127.0.0.1", broker.port, { connectDelays: [] });
  });

  test("stays responsive under a flood over thousands of topics", async () => {
    const screen = await monitor();
    const n = 20_000;
    const sends: Promise<void>[] = [];
    for (let i = 0; i < n; i++) sends.push(publish(`load/${i % 2000}`, String(i)));
    await Promise.all(sends);
    await screen.until((t) => t.includes(messages(n)) && t.includes("Topics: 2000"), "every message is counted");
    screen.keys("p");
    await screen.shows("PAUSED");
    screen.keys("q");
    await screen.shows("EXIT=0");
  });
});

describe("mqtttools monitor (without a terminal)", () => {
  test("refuses to run with output to a pipe: exit code 2", async () => {
    const proc = Bun.spawn([process.execPath, entry, "monitor", "#", "--port", String(broker.port)], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(2);
    expect(stderr.trim()).toBe("mqtttools monitor: monitor needs a terminal (stdin and stdout) (see 'mqtttools monitor --help')");
  });

  test("--help describes the keys", async () => {
    const proc = Bun.spawn([process.execPath, entry, "monitor", "--help"], { stdout: "pipe", stderr: "pipe" });
    const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    expect(code).toBe(0);
    expect(stdout).toContain("q: Quit, p: Play/Pause");
    expect(stdout).toContain("--port");
  });
});

describe("monitor pieces", () => {
  test.each([
    ["a", ["a"]],
    ["\x1b[A\x1b[B\x1b[5~\x1b[6~", ["up", "down", "pageup", "pagedown"]],
    ["\x1bOA", ["up"]],
    ["\x1b", ["escape"]],
    ["\r\x7f\x03/", ["enter", "backspace", "ctrl-c", "/"]],
    ["é😀", ["é", "😀"]],
  ])("parseKeys(%j)", (input, keys) => {
    expect(parseKeys(input)).toEqual(keys);
  });

  test("fit cuts and pads to the width, keeping colour codes", () => {
    expect(fit("abc", 5)).toBe("abc  ");
    expect(Bun.stripANSI(fit("\x1b[31mabcdef\x1b[39m", 3))).toBe("abc");
    expect(Bun.stringWidth(fit("日本語", 3))).toBeLessThanOrEqual(3);
  });

  test.each([
    ["auto", '{"a":[1]}', ["{", '  "a": [', "    1", "  ]", "}"]],
    ["auto", "plain text", ["plain text"]],
    ["auto", "\x01\x02", ["0000  01 02" + " ".repeat(45) + "|..|"]],
    ["text", "line1\nline2", ["line1", "line2"]],
    ["binary", "AB", ["0000  41 42" + " ".repeat(45) + "|AB|"]],
    ["auto", "", ["(empty)"]],
  ] as const)("formatPayload as %s: %j", (format, payload, lines) => {
    expect(formatPayload(new TextEncoder().encode(payload), format)).toEqual([...lines]);
  });

  test("numbers are recognised; a sparkline spans the minimum to the maximum", () => {
    const bytes = (s: string) => new TextEncoder().encode(s);
    expect(numericPayload(bytes("21.5"))).toBe(21.5);
    expect(numericPayload(bytes("-3"))).toBe(-3);
    expect(numericPayload(bytes("12abc"))).toBeNull();
    expect(numericPayload(bytes("on"))).toBeNull();
    expect(sparkline([0, 7, 14])).toBe("▁▅█");
    expect(sparkline([2, 2])).toBe("▄▄");
  });

  test("the model keeps the last message per topic and bounds the history", () => {
    const model = new MonitorModel();
    for (let i = 0; i < 1000; i++) model.add(`t/${i % 3}`, new TextEncoder().encode(String(i)), 0, false);
    expect(model.total).toBe(1000);
    expect(model.topics.size).toBe(3);
    const t0 = model.topics.get("t/0")!;
    expect(t0.count).toBe(334);
    expect(new TextDecoder().decode(t0.last.payload)).toBe("999");
    expect(t0.history.length).toBeLessThan(200);
    expect(topicTree(model.sortedTopics())[0]).toEqual({ depth: 0, name: "t", count: 1000, topics: 3 });
  });

  test("a frame always has the screen's height; keys move the selection within bounds", () => {
    const model = new MonitorModel();
    for (let i = 0; i < 50; i++) model.add(`x/${i}`, new TextEncoder().encode("v"), 0, false);
    const state = initialState();
    expect(drawFrame(model, state, 40, 10)).toHaveLength(10);
    handleKey(model, state, "up");
    expect(state.selected).toBe(0);
    handleKey(model, state, "end");
    drawFrame(model, state, 40, 10);
    expect(state.selected).toBe(49);
    expect(handleKey(model, state, "q")).toBe("quit");
  });
});
