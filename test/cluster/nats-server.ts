/** Test helper: Debian's nats-server (2.9) as a process, with JetStream, on ports it picks (or given), in a temporary directory. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type StreamInfo } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";

/** Path of nats-server; throws (never skips) when it is not installed. */
export function natsServerPath(): string {
  const path = Bun.which("nats-server") ?? Bun.which("nats-server", { PATH: "/usr/sbin:/usr/bin:/usr/local/bin" });
  if (path === null) throw new Error("nats-server is not installed: the cluster tests need Debian's nats-server package (apt-get install nats-server)");
  return path;
}

/** How to start one server: a route port and the routes of a NATS cluster, or none for a lone server. */
export interface NatsServerOptions {
  /** Client port; 0 = any free one (nats-server's -1). */
  port?: number;
  /** For a NATS cluster: this server's name, its route port, and every server's route URL. */
  cluster?: { name: string; routePort: number; routes: string[] };
}

/** A running nats-server: its client URL and monitoring port; kill, restart and remove. */
export class NatsServer {
  proc!: Subprocess<"ignore", "ignore", "pipe">;
  port = 0;
  monitorPort = 0;
  log = "";
  private readonly dir = mkdtempSync(join(tmpdir(), "mqtttools-nats-"));

  private constructor(private readonly options: NatsServerOptions) {}

  /** Starts a server and resolves once it is ready for clients. */
  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const s = new NatsServer(options);
    try {
      await s.run(options.port ?? 0);
    } catch (e) {
      s.remove();
      throw e;
    }
    return s;
  }

  /** nats://127.0.0.1:port */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  private async run(port: number): Promise<void> {
    const args = ["-js", "-sd", this.dir, "-a", "127.0.0.1", "-p", String(port === 0 ? -1 : port), "-m", "-1"];
    const c = this.options.cluster;
    if (c !== undefined) args.push("-n", c.name, "--cluster_name", "mqtttools-test", "--cluster", `nats://127.0.0.1:${c.routePort}`, "--routes", c.routes.join(","));
    this.proc = Bun.spawn([natsServerPath(), ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    this.log = "";
    const dec = new TextDecoder();
    const reader = this.proc.stderr.getReader();
    while (!/Server is ready/.test(this.log)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`nats-server exited with code ${await this.proc.exited}:\n${this.log}`);
      this.log += dec.decode(value, { stream: true });
    }
    reader.releaseLock();
    void this.proc.stderr.pipeTo(new WritableStream({ write: (chunk) => void (this.log += dec.decode(chunk, { stream: true })) })).catch(() => {});
    this.port = Number(/Listening for client connections on [^\s]+:(\d+)/.exec(this.log)![1]);
    this.monitorPort = Number(/Starting http monitor on [^\s]+:(\d+)/.exec(this.log)![1]);
  }

  /** Kills the server (SIGKILL by default) and waits until it is gone. */
  async kill(signal: "SIGKILL" | "SIGTERM" = "SIGKILL"): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    await this.proc.exited;
  }

  /** Starts it again on the same client port, with the same JetStream directory. */
  async restart(): Promise<void> {
    await this.kill();
    await this.run(this.port);
  }

  /** Messages the server sent to (out) and received from (in) each client connection, by connection name. */
  async connections(): Promise<Map<string, { in: number; out: number }>> {
    const r = (await (await fetch(`http://127.0.0.1:${this.monitorPort}/connz?limit=1000`)).json()) as { connections: { name?: string; in_msgs: number; out_msgs: number }[] };
    return new Map(r.connections.map((c) => [c.name ?? "", { in: c.in_msgs, out: c.out_msgs }]));
  }

  /** The subjects a client connection (by name) is subscribed to. */
  async subscriptions(name: string): Promise<string[]> {
    const r = (await (await fetch(`http://127.0.0.1:${this.monitorPort}/connz?subs=1&limit=1000`)).json()) as { connections: { name?: string; subscriptions_list?: string[] }[] };
    return r.connections.find((c) => c.name === name)?.subscriptions_list ?? [];
  }

  /** Runs `fn` with a NATS connection of its own to this server, closed afterwards. */
  private async withClient<T>(fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
    const nc = await connect({ servers: this.url });
    try {
      return await fn(nc);
    } finally {
      await nc.close();
    }
  }

  /** A stream's description (config, state, cluster) as JetStream gives it. */
  private streamInfo(stream: string): Promise<StreamInfo> {
    return this.withClient(async (nc) => (await jetstreamManager(nc)).streams.info(stream));
  }

  /** The server name of a stream's leader (`-n` of a clustered server), from this server's view; null when it has none. */
  async streamLeader(stream: string): Promise<string | null> {
    return (await this.streamInfo(stream)).cluster?.leader ?? null;
  }

  /** A stream's last sequence number. */
  async lastSeq(stream: string): Promise<number> {
    return (await this.streamInfo(stream)).state.last_seq;
  }

  /** A stream's max_age in nanoseconds (0: kept until deleted). */
  async maxAge(stream: string): Promise<number> {
    return (await this.streamInfo(stream)).config.max_age;
  }

  /** The values of a key-value bucket (`KV_{bucket}` stream), parsed as JSON, by key. */
  bucket(bucket: string): Promise<Map<string, unknown>> {
    return this.withClient(async (nc) => {
      const kv = await new Kvm(nc).open(bucket);
      const out = new Map<string, unknown>();
      for await (const key of await kv.keys()) {
        const e = await kv.get(key);
        if (e !== null && e.operation === "PUT") out.set(key, JSON.parse(new TextDecoder().decode(e.value)));
      }
      return out;
    });
  }

  /** Makes a key-value bucket whose entries expire after `ttlMs` (as an earlier version of the broker made its heartbeat bucket). */
  async makeBucket(bucket: string, ttlMs: number): Promise<void> {
    await this.withClient((nc) => new Kvm(nc).create(bucket, { history: 1, ttl: ttlMs }));
  }

  /** Asks a stream's leader to step down, so another server leads it. */
  async stepDown(stream: string): Promise<void> {
    await this.withClient((nc) => nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, new Uint8Array(0), { timeout: 5000 }));
  }

  /** Kills the server and removes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    this.remove();
  }

  private remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
