/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/// <reference lib="dom.asynciterable" />
/**
 * The dashboard page, bundled by Bun from index.html (no build step of its own): the broker's
 * state from /api/state once a second (rates from the counters' deltas, drawn as charts; the
 * connected clients), and the live topics through MQTT over WebSocket with the project's own
 * Client, kept in the terminal monitor's model (lib/monitor/model.ts) and shown with its
 * payload formatting and sparklines. With a password file it asks for a user name and password
 * and uses them for both. Read-only: it subscribes to `#` and never publishes.
 */
import { Client } from "../../../client/client";
import type { Message } from "../../../client/message";
import { HISTORY, MonitorModel, topicTree, type TopicState } from "../../../monitor/model";
import { clock, formatPayload, sparkline } from "../../../monitor/format";
import type { ClientState, DashboardState } from "../state";

/** Samples a chart keeps (one a second). */
const SAMPLES = 120;
/** Milliseconds between polls of /api/state. */
const POLL_MS = 1000;
/** Milliseconds between redraws of the topic view while messages arrive. */
const RENDER_MS = 200;
/** Tree lines drawn at most. */
const MAX_TREE_LINES = 2000;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

/** A line chart of the last SAMPLES values on a canvas. */
class Chart {
  readonly values: number[] = [];

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly label: HTMLElement,
  ) {}

  /** Adds a sample and redraws. */
  push(v: number): void {
    this.values.push(v);
    if (this.values.length > SAMPLES) this.values.shift();
    this.label.textContent = Number.isInteger(v) ? String(v) : v.toFixed(1);
    this.draw();
  }

  private draw(): void {
    const { canvas, values } = this;
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width;
    const h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
    if (canvas.height !== Math.round(h * ratio)) canvas.height = Math.round(h * ratio);
    const g = canvas.getContext("2d");
    if (g === null) return;
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const max = Math.max(1, ...values);
    const style = getComputedStyle(document.documentElement);
    g.fillStyle = style.getPropertyValue("--muted");
    g.font = "10px system-ui, sans-serif";
    g.fillText(String(Math.round(max)), 2, 10);
    g.strokeStyle = style.getPropertyValue("--accent");
    g.lineWidth = 1.5;
    g.beginPath();
    const step = w / (SAMPLES - 1);
    const x0 = w - (values.length - 1) * step;
    values.forEach((v, i) => {
      const x = x0 + i * step;
      const y = h - 2 - (v / max) * (h - 14);
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  }
}

/** The credentials in use, once the page has asked for them. */
let credentials: { username: string; password: string } | null = null;
let previous: DashboardState | null = null;
let mqtt: Client | null = null;
const model = new MonitorModel();
const charts = {
  in: new Chart($<HTMLCanvasElement>("chart-in"), $("value-in")),
  out: new Chart($<HTMLCanvasElement>("chart-out"), $("value-out")),
  connections: new Chart($<HTMLCanvasElement>("chart-connections"), $("value-connections")),
  dropped: new Chart($<HTMLCanvasElement>("chart-dropped"), $("value-dropped")),
};
let samples = 0;
let paused = false;
let filter = "";
let selected: string | null = null;
let renderTimer: ReturnType<typeof setTimeout> | null = null;

function setStatus(text: string, error = false): void {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

/** Seconds as "3d 4h", "5m 6s". */
function duration(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return m > 0 ? `${m}m ${s % 60}s` : `${s % 60}s`;
}

// ---- broker state ------------------------------------------------------------------------

/** Fetches /api/state; null when credentials are wanted (the login form is then shown). */
async function fetchState(): Promise<DashboardState | null> {
  const headers: Record<string, string> = {};
  if (credentials !== null) headers.authorization = `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(`${credentials.username}:${credentials.password}`)))}`;
  const res = await fetch("/api/state", { headers, cache: "no-store" });
  if (res.status === 401) {
    const tried = credentials !== null;
    credentials = null;
    showLogin(tried ? "Refused: wrong user name or password." : "");
    return null;
  }
  if (!res.ok) throw new Error(`/api/state answered ${res.status}`);
  return (await res.json()) as DashboardState;
}

function showLogin(error: string): void {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = error;
  setStatus("sign in");
  $<HTMLInputElement>("username").focus();
}

/** One poll: the charts, the gauges, the client list, and the MQTT connection once it is known where to. */
async function poll(): Promise<void> {
  let state: DashboardState | null;
  try {
    state = await fetchState();
  } catch (e) {
    setStatus(`broker unreachable (${(e as Error).message})`, true);
    setTimeout(poll, POLL_MS);
    return;
  }
  if (state === null) return; // waiting for the login form
  $("login").hidden = true;
  $("main").hidden = false;
  $("version").textContent = `v${state.version}`;
  $("uptime").textContent = `up ${duration(state.uptimeSeconds)}`;
  if (previous !== null) {
    const seconds = Math.max(0.001, (state.time - previous.time) / 1000);
    charts.in.push((state.received - previous.received) / seconds);
    charts.out.push((state.sent - previous.sent) / seconds);
    charts.dropped.push(Math.max(0, state.dropped - previous.dropped) / seconds);
    charts.connections.push(state.connections);
    $("charts").dataset.samples = String(++samples);
  }
  previous = state;
  $("gauges").textContent = `${state.sessions} sessions · ${state.subscriptions} subscriptions · ${state.retained} retained · ${state.queued} queued · ${state.inflight} in flight · ${state.received} received · ${state.sent} sent · ${state.dropped} dropped`;
  if (!paused) renderClients(state.clients, state.clientsTotal);
  if (mqtt === null) connectMqtt(state);
  setTimeout(poll, POLL_MS);
}

function cell(text: string | number, numeric = false): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (numeric) td.className = "num";
  return td;
}

function renderClients(clients: ClientState[], total: number): void {
  const body = $<HTMLTableElement>("clients").tBodies[0]!;
  const rows = clients.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.clientId = c.id;
    tr.append(cell(c.id), cell(c.address), cell(c.transport), cell(c.protocol), cell(c.subscriptions, true), cell(c.queued, true), cell(c.inflight, true), cell(duration(c.connectedSeconds)));
    return tr;
  });
  body.replaceChildren(...rows);
  $("clients-count").textContent = total > clients.length ? `(${clients.length} of ${total})` : `(${total})`;
}

// ---- live topics ---------------------------------------------------------------------------

/** Connects to the broker over WebSocket and subscribes to everything. */
function connectMqtt(state: DashboardState): void {
  const ws = state.websockets[0];
  if (ws === undefined) {
    $("topics-status").textContent = "No WebSocket listener: start the broker with --ws-port (the same port as --http-port serves both) to see live topics.";
    return;
  }
  const path = ws.path === "*" ? "/mqtt" : ws.path;
  const url = ws.shared
    ? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`
    : `${ws.tls ? "wss" : "ws"}://${location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname}:${ws.port}${path}`;
  const id = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
  const client = new Client(url, {
    clientId: `mqtttools-dashboard-${id}`,
    keepAliveS: 30,
    subscriptions: ["#"],
    connectDelays: [1, 2, 5],
    ...(credentials === null ? {} : { username: credentials.username, password: credentials.password }),
  });
  mqtt = client;
  client.onMessage = (m: Message | null) => {
    if (m === null) {
      setStatus("MQTT connection lost: reconnecting…", true);
      return;
    }
    model.add(m.topic, m.payload, m.qos, m.retain);
    scheduleRender();
  };
  client.onConnect = () => setStatus(`live: ${url}`);
  client.start().catch((e: Error) => {
    setStatus(`MQTT: ${e.message}`, true);
  });
}

/** Redraws the topic view soon (paused: only the message count). */
function scheduleRender(): void {
  if (renderTimer !== null) return;
  renderTimer = setTimeout(() => {
    renderTimer = null;
    if (paused) showCount();
    else renderTopics();
  }, RENDER_MS);
}

function showCount(): void {
  $("topics-status").textContent = `${model.total} messages${paused ? " · paused" : ""}`;
}

/** The topics shown: all, or those whose name contains the filter. */
function shown(): TopicState[] {
  const all = model.sortedTopics();
  return filter === "" ? all : all.filter((t) => t.topic.includes(filter));
}

function renderTopics(): void {
  const topics = shown();
  $("topics-count").textContent = filter === "" ? `(${model.topics.size})` : `(${topics.length} of ${model.topics.size})`;
  showCount();
  const items: HTMLLIElement[] = [];
  const path: string[] = [];
  for (const line of topicTree(topics)) {
    if (items.length >= MAX_TREE_LINES) break;
    path.length = line.depth;
    path.push(line.name);
    const full = path.join("/");
    const t = model.topics.get(full);
    const li = document.createElement("li");
    li.style.paddingLeft = `${0.4 + line.depth * 1.1}rem`;
    const name = document.createElement("span");
    name.textContent = line.name === "" ? "(empty)" : line.name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = ` (${line.count})`;
    li.append(name, count);
    if (t !== undefined && (filter === "" || full.includes(filter))) {
      li.className = full === selected ? "topic selected" : "topic";
      li.dataset.topic = full;
      const last = document.createElement("span");
      last.className = "last";
      last.textContent = ` = ${formatPayload(t.last.payload, "text")[0]!.slice(0, 60)}`;
      li.append(last);
      if (t.values.length > 1) {
        const spark = document.createElement("span");
        spark.className = "spark";
        spark.textContent = ` ${sparkline(t.values.slice(-24))}`;
        li.append(spark);
      }
    }
    items.push(li);
  }
  $("tree").replaceChildren(...items);
  renderDetail();
}

function renderDetail(): void {
  const detail = $("detail");
  const t = selected === null ? undefined : model.topics.get(selected);
  if (t === undefined) {
    detail.replaceChildren(Object.assign(document.createElement("p"), { className: "hint", textContent: "Select a topic to see its latest message and history." }));
    return;
  }
  const h = document.createElement("h3");
  h.textContent = t.topic;
  const meta = document.createElement("p");
  meta.className = "hint";
  meta.textContent = `${t.count} messages · last at ${clock(t.last.time)} · QoS ${t.last.qos}${t.last.retain ? " · retained" : ""} · ${t.last.payload.length} bytes`;
  const latest = document.createElement("pre");
  latest.id = "latest";
  latest.textContent = formatPayload(t.last.payload, "auto").join("\n");
  const parts: HTMLElement[] = [h, meta, latest];
  if (t.values.length > 1) {
    const spark = document.createElement("p");
    spark.className = "spark";
    spark.textContent = `${sparkline(t.values.slice(-48))}  min ${Math.min(...t.values)} · max ${Math.max(...t.values)}`;
    parts.push(spark);
  }
  const title = document.createElement("h4");
  title.textContent = "History (newest first)";
  const list = document.createElement("ol");
  list.id = "history";
  for (const e of t.history.slice(-HISTORY).reverse()) {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = clock(e.time);
    li.append(time, formatPayload(e.payload, "auto").join("\n"));
    list.append(li);
  }
  parts.push(title, list);
  detail.replaceChildren(...parts);
}

// ---- controls ----------------------------------------------------------------------------

$<HTMLFormElement>("login").addEventListener("submit", (event) => {
  event.preventDefault();
  credentials = { username: $<HTMLInputElement>("username").value, password: $<HTMLInputElement>("password").value };
  $("login-error").textContent = "";
  setStatus("signing in…");
  void poll();
});

$<HTMLInputElement>("filter").addEventListener("input", (event) => {
  filter = (event.target as HTMLInputElement).value;
  renderTopics();
});

$("pause").addEventListener("click", () => {
  paused = !paused;
  const button = $("pause");
  button.textContent = paused ? "Resume" : "Pause";
  button.setAttribute("aria-pressed", String(paused));
  if (paused) showCount();
  else renderTopics();
});

$("tree").addEventListener("click", (event) => {
  const li = (event.target as HTMLElement).closest("li");
  if (li?.dataset.topic === undefined) return;
  selected = li.dataset.topic;
  for (const other of $("tree").querySelectorAll("li.selected")) other.classList.remove("selected");
  li.classList.add("selected");
  renderDetail();
});

void poll();
