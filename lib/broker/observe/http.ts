/**
 * The broker's HTTP endpoint, on Bun.serve: `/metrics` (Prometheus), `/livez` (the event loop
 * answers) and `/readyz` (200 once the listeners are bound, persistence is recovered and the
 * cluster is connected; 503 while starting or stopping). Off unless `http` is set.
 */
import type { Server } from "bun";

/** What the endpoint serves, from the broker. */
export interface HttpSource {
  /** The Prometheus exposition, read now (or in slices: a promise). */
  metrics(): string | Promise<string>;
  /** null when ready, else why not (the 503's body). */
  notReady(): string | null;
}

/** The HTTP listener of one broker. */
export class HttpEndpoint {
  private server: Server<undefined> | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly source: HttpSource,
  ) {}

  /** Listens; resolves with the bound port. */
  start(): number {
    const source = this.source;
    this.server = Bun.serve({
      hostname: this.host,
      port: this.port,
      routes: {
        "/metrics": async () => new Response(await source.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } }),
        "/livez": () => new Response("ok\n"),
        "/readyz": () => {
          const why = source.notReady();
          return why === null ? new Response("ready\n") : new Response(`not ready: ${why}\n`, { status: 503 });
        },
      },
      fetch: () => new Response("not found\n", { status: 404 }),
    });
    return this.server.port!;
  }

  /** Stops listening; open requests are cut. */
  stop(): void {
    this.server?.stop(true);
    this.server = null;
  }
}
