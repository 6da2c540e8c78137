/**
 * The broker's HTTP endpoint, on Bun.serve: `/metrics` (Prometheus), `/livez` (the event loop
 * answers), `/readyz` (200 once the listeners are bound, persistence is recovered and the
 * cluster is connected; 503 while starting or stopping), and the dashboard: the page at `/`
 * (dashboard/index.html, bundled by Bun's HTML import, also inside the compiled executable) and
 * its JSON at `/api/state`. Off unless `http` is set.
 *
 * With a password file, /api/state wants `Authorization: Basic` credentials that the broker's
 * Authenticator accepts (401 otherwise, without a Basic challenge, so that a browser leaves the
 * asking to the page); the page itself and its scripts hold no data and are served to anyone.
 *
 * A WebSocket listener on the same host and port is served here too (`ws`): its upgrades go to
 * its handlers, through this one Bun.serve.
 */
import type { Server } from "bun";
import dashboard from "./dashboard/index.html";
import type { DashboardState } from "./state";
import { basicCredentials } from "./state";
import type { WsData, WsListener } from "../transport/ws";

/** What the endpoint serves, from the broker. */
export interface HttpSource {
  /** The Prometheus exposition, read now (or in slices: a promise). */
  metrics(): string | Promise<string>;
  /** null when ready, else why not (the 503's body). */
  notReady(): string | null;
  /** The dashboard's state, read now. */
  state(): DashboardState;
  /** Whether /api/state wants credentials (a password file is set). */
  authRequired(): boolean;
  /** Whether these credentials are accepted; null while the password file is not loaded yet. */
  authorize(username: string, password: Uint8Array): boolean | null;
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" };

/** A JSON response. */
function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });
}

/** The HTTP listener of one broker. */
export class HttpEndpoint {
  private server: Server<WsData> | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly source: HttpSource,
    /** A WebSocket listener served on this port too, or null. */
    private readonly ws: WsListener | null = null,
  ) {}

  /** Listens; returns the bound port. */
  start(): number {
    const source = this.source;
    const ws = this.ws?.handlers();
    this.server = Bun.serve<WsData>({
      hostname: this.host,
      port: this.port,
      development: false, // bundle the page once, minified, without the dev server's reloading
      routes: {
        "/": dashboard,
        "/api/state": (req: Request) => {
          if (source.authRequired()) {
            const credentials = basicCredentials(req.headers.get("authorization"));
            if (credentials === null) return json({ error: "credentials required" }, 401);
            const ok = source.authorize(credentials.username, credentials.password);
            if (ok === null) return json({ error: "starting" }, 503);
            if (!ok) return json({ error: "wrong user name or password" }, 401);
          }
          return json(source.state());
        },
        "/metrics": async () => new Response(await source.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } }),
        "/livez": () => new Response("ok\n"),
        "/readyz": () => {
          const why = source.notReady();
          return why === null ? new Response("ready\n") : new Response(`not ready: ${why}\n`, { status: 503 });
        },
      },
      ...(ws === undefined ? { fetch: () => new Response("not found\n", { status: 404 }) } : ws),
    });
    return this.server.port!;
  }

  /** Stops listening; open requests (and WebSockets served here) are cut. */
  stop(): void {
    this.server?.stop(true);
    this.server = null;
  }
}
