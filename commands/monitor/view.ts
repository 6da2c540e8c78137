/**
 * The monitor's screens, as pure functions of the model and the UI state: the TIMESTAMP / TOPIC &
 * MESSAGE table (latest message per topic), a topic's history, and the topic tree; plus the key
 * bindings that change the UI state.
 *
 * Only the entries that fit on the screen are formatted, so a frame costs the same with ten topics
 * or ten thousand (apart from filtering the sorted topic list, a linear scan of names).
 */
import pc from "picocolors";
import { HISTORY, SPARK, type Entry, type MonitorModel, type TopicState, topicTree } from "../../lib/monitor/model";
import { clock, formatPayload, sparkline, type Format } from "../../lib/monitor/format";
import type { Key } from "./renderer";

const FORMATS: Format[] = ["auto", "binary", "text"];

/** The state of the UI (what the keys change). */
export interface ViewState {
  mode: "table" | "history" | "tree";
  format: Format;
  /** The topics as they were when the view was paused; null while playing. */
  frozen: TopicState[] | null;
  /** Index of the selected topic among the shown ones, and of the first one on screen. */
  selected: number;
  top: number;
  /** Topics that fit on the last frame (the PgUp/PgDn step). */
  page: number;
  /** The topic whose history is shown, and the first history line on screen. */
  historyTopic: string;
  historyTop: number;
  treeTop: number;
  /** The applied filter (a substring of topic names), and the one being typed after `/`. */
  filter: string;
  draft: string | null;
  /** The topic whose retained message `c` asks to clear (y clears it), and the line telling what was done. */
  confirmClear: string | null;
  notice: string | null;
}

/** A fresh UI state. */
export function initialState(): ViewState {
  return { mode: "table", format: "auto", frozen: null, selected: 0, top: 0, page: 1, historyTopic: "", historyTop: 0, treeTop: 0, filter: "", draft: null, confirmClear: null, notice: null };
}

/** The menu line of the origin's view, then the keys added beyond it. */
export function menuLine(format: Format): string {
  return `q: Quit, p: Play/Pause, f: Format (${format})   ↑↓ PgUp PgDn, Enter: History, /: Filter, t: Tree, c: Clear retained`;
}

const TIME_WIDTH = 14;
/** The most lines one message takes in the table. */
const MAX_PAYLOAD_LINES = 10;

/** The topics the table shows: all (or as frozen by Pause), filtered by the applied filter. */
export function shownTopics(model: MonitorModel, state: ViewState): TopicState[] {
  const all = state.frozen ?? model.sortedTopics();
  return state.filter === "" ? all : all.filter((t) => t.topic.includes(state.filter));
}

/** The copy of the topics that Pause shows while messages keep being counted. */
function freeze(model: MonitorModel): TopicState[] {
  return model.sortedTopics().map((t) => ({ ...t, history: t.history.slice(-HISTORY), values: t.values.slice(-SPARK) }));
}

/** The lines of one table entry: time and topic, then the payload. */
function entryLines(t: TopicState, format: Format, selected: boolean, width: number): string[] {
  const pad = " ".repeat(TIME_WIDTH);
  let head = `${t.topic}  ${pc.dim(`(${t.count})`)}`;
  if (t.values.length > 1) head += `  ${pc.green(sparkline(t.values.slice(-SPARK)))} ${t.values[t.values.length - 1]}`;
  const topicLine = clock(t.last.time).padEnd(TIME_WIDTH) + (selected ? pc.inverse(pc.bold(head)) : pc.bold(pc.cyan(head)));
  const body = formatPayload(t.last.payload, format);
  const lines = [topicLine];
  const room = Math.max(1, width - TIME_WIDTH);
  for (const line of body.slice(0, MAX_PAYLOAD_LINES)) lines.push(pad + Bun.sliceAnsi(line, 0, room));
  if (body.length > MAX_PAYLOAD_LINES) lines.push(pad + pc.dim(`… ${body.length - MAX_PAYLOAD_LINES} more lines`));
  return lines;
}

/** The table of the latest message per topic, scrolled so that the selected topic is on screen. */
function drawTable(model: MonitorModel, state: ViewState, width: number, rows: number): string[] {
  const topics = shownTopics(model, state);
  const out = [pc.inverse(pc.bold("TIMESTAMP".padEnd(TIME_WIDTH) + "TOPIC & MESSAGE".padEnd(Math.max(0, width - TIME_WIDTH))))];
  if (topics.length === 0) {
    out.push(pc.dim(model.topics.size === 0 ? "Waiting for messages…" : `No topic contains '${state.filter}'.`));
    return out;
  }
  state.selected = Math.min(Math.max(0, state.selected), topics.length - 1);
  state.top = Math.min(Math.max(0, state.top), state.selected);
  const cache = new Map<number, string[]>();
  const linesOf = (i: number) => {
    let l = cache.get(i);
    if (l === undefined) {
      l = entryLines(topics[i]!, state.format, i === state.selected, width);
      cache.set(i, l);
    }
    return l;
  };
  const body = rows - 1;
  // scroll down until the selected entry fits below the top one
  for (;;) {
    let used = 0;
    for (let i = state.top; i <= state.selected; i++) used += linesOf(i).length;
    if (used <= body || state.top === state.selected) break;
    state.top++;
  }
  let shown = 0;
  for (let i = state.top; i < topics.length && out.length < rows; i++) {
    const lines = linesOf(i);
    if (out.length + lines.length <= rows) shown++;
    for (const line of lines) {
      if (out.length >= rows) break;
      out.push(line);
    }
  }
  state.page = Math.max(1, shown);
  return out;
}

/** One history line: time, QoS, retain, size, and the start of the payload. */
function historyLine(e: Entry, format: Format): string {
  const payload = formatPayload(e.payload, format).join(" ⏎ ");
  return `${clock(e.time).padEnd(TIME_WIDTH)}${String(e.qos).padEnd(5)}${(e.retain ? "yes" : "no").padEnd(8)}${String(e.payload.length).padStart(8)}  ${payload}`;
}

/** The last messages of one topic, newest first. */
function drawHistory(model: MonitorModel, state: ViewState, width: number, rows: number): string[] {
  const t = (state.frozen?.find((f) => f.topic === state.historyTopic)) ?? model.topics.get(state.historyTopic);
  const history = t === undefined ? [] : t.history.slice(-HISTORY).reverse();
  const out = [
    pc.inverse(pc.bold(`History of ${state.historyTopic}: last ${history.length} of ${t?.count ?? 0} message(s)  (Esc/Enter: back)`.padEnd(width))),
    pc.bold(`${"TIME".padEnd(TIME_WIDTH)}${"QOS".padEnd(5)}${"RETAIN".padEnd(8)}${"SIZE".padStart(8)}  PAYLOAD`),
  ];
  const body = rows - out.length;
  state.historyTop = Math.min(Math.max(0, state.historyTop), Math.max(0, history.length - body));
  for (const e of history.slice(state.historyTop, state.historyTop + body)) out.push(historyLine(e, state.format));
  state.page = Math.max(1, body);
  return out;
}

/** The topic tree with message counts per branch. */
function drawTree(model: MonitorModel, state: ViewState, width: number, rows: number): string[] {
  const tree = topicTree(shownTopics(model, state));
  const out = [pc.inverse(pc.bold("TOPIC TREE (messages per branch)".padEnd(width)))];
  const body = rows - 1;
  state.treeTop = Math.min(Math.max(0, state.treeTop), Math.max(0, tree.length - body));
  for (const line of tree.slice(state.treeTop, state.treeTop + body)) {
    const name = line.name === "" ? pc.dim("(empty)") : line.name;
    const topics = line.topics > 1 ? pc.dim(` in ${line.topics} topics`) : "";
    out.push(`${"  ".repeat(line.depth)}${name}  ${pc.cyan(String(line.count))}${topics}`);
  }
  state.page = Math.max(1, body);
  return out;
}

/** The status line: counts, rate and what the view shows. */
function statusLine(model: MonitorModel, state: ViewState): string {
  const parts = [model.connected ? model.broker : pc.red(`${model.broker} disconnected, reconnecting…`), `Messages: ${model.total}`, `Topics: ${model.topics.size}`, `Rate: ${model.rate} msg/s`];
  if (state.filter !== "") parts.push(`Filter: '${state.filter}' (${shownTopics(model, state).length} shown)`);
  if (state.frozen !== null) parts.push(pc.yellow(pc.bold("PAUSED")));
  return parts.join("  ");
}

/** The lines of a whole frame. */
export function drawFrame(model: MonitorModel, state: ViewState, width: number, height: number): string[] {
  const rows = Math.max(1, height - 2);
  const screen = state.mode === "history" ? drawHistory(model, state, width, rows) : state.mode === "tree" ? drawTree(model, state, width, rows) : drawTable(model, state, width, rows);
  while (screen.length < rows) screen.push("");
  screen.length = rows;
  const menu = state.draft !== null
    ? `Filter: ${state.draft}▏  (Enter: apply, Esc: clear)`
    : state.confirmClear !== null
      ? pc.yellow(`Clear the retained message of '${state.confirmClear}'? y: yes, any other key: no`)
      : state.notice ?? menuLine(state.format);
  return [...screen, pc.inverse(statusLine(model, state).padEnd(width)), menu].slice(-height);
}

/**
 * Applies a key press to the UI state; returns "quit" for q and Ctrl-C, and { clear: topic } when
 * the user confirmed (y) clearing the retained message of the topic selected with c.
 */
export function handleKey(model: MonitorModel, state: ViewState, key: Key): "quit" | { clear: string } | undefined {
  if (key === "ctrl-c") return "quit";
  state.notice = null;
  if (state.confirmClear !== null) {
    const topic = state.confirmClear;
    state.confirmClear = null;
    if (key === "y" || key === "Y") return { clear: topic };
    state.notice = "Nothing cleared.";
    return;
  }
  if (state.draft !== null) {
    // typing a filter after `/`
    if (key === "enter") {
      state.filter = state.draft;
      state.draft = null;
      state.selected = state.top = state.treeTop = 0;
    } else if (key === "escape") {
      state.filter = "";
      state.draft = null;
    } else if (key === "backspace") state.draft = state.draft.slice(0, -1);
    else if ([...key].length === 1) state.draft += key;
    return;
  }
  if (state.mode === "history" && (key === "escape" || key === "enter")) {
    state.mode = "table";
    return;
  }
  const move = (by: number) => {
    if (state.mode === "table") state.selected = Math.max(0, state.selected + by);
    else if (state.mode === "history") state.historyTop = Math.max(0, state.historyTop + by);
    else state.treeTop = Math.max(0, state.treeTop + by);
  };
  switch (key) {
    case "q":
      return "quit";
    case "p":
      state.frozen = state.frozen === null ? freeze(model) : null;
      break;
    case "f":
      state.format = FORMATS[(FORMATS.indexOf(state.format) + 1) % FORMATS.length]!;
      break;
    case "t":
      state.mode = state.mode === "tree" ? "table" : "tree";
      break;
    case "/":
      state.draft = state.filter;
      break;
    case "escape":
      if (state.mode === "tree") state.mode = "table";
      else state.filter = "";
      break;
    case "c": {
      const t = state.mode === "table" ? shownTopics(model, state)[state.selected] : state.mode === "history" ? { topic: state.historyTopic } : undefined;
      if (t !== undefined) state.confirmClear = t.topic;
      break;
    }
    case "enter": {
      const t = state.mode === "table" ? shownTopics(model, state)[state.selected] : undefined;
      if (t !== undefined) {
        state.mode = "history";
        state.historyTopic = t.topic;
        state.historyTop = 0;
      }
      break;
    }
    case "up":
      move(-1);
      break;
    case "down":
      move(1);
      break;
    case "pageup":
      move(-state.page);
      break;
    case "pagedown":
      move(state.page);
      break;
    case "home":
      move(-Infinity);
      break;
    case "end":
      move(1e9);
      break;
  }
  return;
}
