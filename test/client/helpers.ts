/**
 * Shared helpers of the client tests: a real Mosquitto broker (Debian's /usr/sbin/mosquitto)
 * started on a free port with a generated configuration (optionally a password file, an ACL file
 * and a TLS listener), a self-signed certificate made with openssl, free ports, and the clients a
 * test made, stopped after it.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Client, type ClientOptions } from "../../lib/client/client";
import type { Message } from "../../lib/client/message";

/** A new private temporary directory; remove it with removeDir. */
export function tempDir(prefix = "mqtttools-client-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Removes a directory made by tempDir. */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A TCP port nothing listens on right now: bound on port 0, then released. Another process may
 * take it before the caller does; callers that listen on it retry on the rare clash.
 */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** A self-signed certificate for 127.0.0.1 and localhost: PEM text and the files holding it. */
export interface Certificate {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

/** Makes a self-signed certificate (CN=localhost, SAN IP:127.0.0.1 and DNS:localhost) in `dir` with openssl. */
export function makeCertificate(dir: string): Certificate {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  const made = Bun.spawnSync([
    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-keyout", keyFile, "-out", certFile,
  ], { stdout: "pipe", stderr: "pipe" });
  if (made.exitCode !== 0) throw new Error(`openssl could not make a certificate: ${made.stderr.toString()}`);
  return { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8"), certFile, keyFile };
}

/** How to configure a Mosquitto broker. */
export interface MosquittoOptions {
  /** Port to listen on; by default a free one (retried on a clash). */
  port?: number;
  /** Users of a password file (made with mosquitto_passwd); anonymous clients are then refused unless allowAnonymous. */
  users?: Record<string, string>;
  allowAnonymous?: boolean;
  /** An access control file (acl_file), given as its text. */
  acl?: string;
  /**
   * Topic filters no anonymous client may subscribe to (SUBACK 0x87 / 0x80), through Mosquitto's
   * dynamic security plugin: its acl_file never refuses a SUBSCRIBE, and an invalid filter makes
   * it close the connection rather than answer with a failure code.
   */
  deniedFilters?: string[];
  /** Serve TLS with this certificate instead of plain TCP. */
  tls?: Certificate;
  /** Serve MQTT over WebSocket (`protocol websockets`, any path) instead of plain TCP. */
  websocket?: boolean;
}

/** Path of the Mosquitto broker; throws (never skips) when it is not installed. */
export function mosquittoPath(): string {
  const path = Bun.which("mosquitto", { PATH: `/usr/sbin:/usr/local/sbin:${process.env.PATH ?? ""}` });
  if (path === null) throw new Error("mosquitto is not installed: the client tests need Debian's mosquitto package (apt-get install mosquitto)");
  return path;
}

/** Path of Mosquitto's dynamic security plugin (in the mosquitto package). */
function dynamicSecurityPlugin(): string {
  for (const dir of ["/usr/lib", "/usr/local/lib"].filter((d) => existsSync(d))) {
    for (const pattern of ["*/mosquitto_dynamic_security.so", "mosquitto_dynamic_security.so"]) {
      for (const path of new Bun.Glob(pattern).scanSync({ cwd: dir, absolute: true })) return path;
    }
  }
  throw new Error("mosquitto_dynamic_security.so not found: it comes with Debian's mosquitto package");
}

/** A running Mosquitto broker started by startMosquitto; stop() it in afterAll/afterEach. */
export class Mosquitto {
  /** Everything Mosquitto logged so far (it logs to stderr). */
  log = "";
  private stopped = false;
  private readonly reading: Promise<void>;
  private logWaiters: (() => void)[] = [];

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly process: Subprocess<"ignore", "ignore", "pipe">,
  ) {
    this.reading = this.read();
  }

  private async read(): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of this.process.stderr) {
      this.log += decoder.decode(chunk, { stream: true });
      for (const w of this.logWaiters.splice(0)) w();
    }
  }

  /** Waits until Mosquitto has logged a line containing `text` (e.g. `Client X disconnected`). */
  async logged(text: string): Promise<void> {
    while (!this.log.includes(text)) {
      if (this.stopped) throw new Error(`mosquitto stopped without logging '${text}':\n${this.log}`);
      const { promise, resolve } = Promise.withResolvers<void>();
      this.logWaiters.push(resolve);
      await promise;
    }
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Kills the broker, waits for it to exit and removes its directory. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.process.kill();
    await this.process.exited;
    await this.reading;
    for (const w of this.logWaiters.splice(0)) w();
    removeDir(this.dir);
  }
}

/** True once something accepts a TCP connection on 127.0.0.1:port. */
export async function accepts(port: number): Promise<boolean> {
  try {
    const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    s.end();
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts Mosquitto on 127.0.0.1 with a configuration generated in a new temporary directory and
 * waits until it accepts connections. Without `port`, a free port is picked and another one tried
 * when Mosquitto could not listen on it.
 */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const binary = mosquittoPath();
  for (let attempt = 0; ; attempt++) {
    const port = options.port ?? freePort();
    const dir = tempDir("mqtttools-mosquitto-");
    // Debian's 2.0.11 fails to start a websockets listener given a bind address, so it gets none;
    // and it refuses to start with no plain listener at all ("Unable to start any listening
    // sockets"), so a TCP one on another free port comes first
    const config = options.websocket ? [`listener ${freePort()} 127.0.0.1`, `listener ${port}`, "protocol websockets"] : [`listener ${port} 127.0.0.1`];
    // as root, Mosquitto drops to the `mosquitto` user before reading the password file, which it
    // could not read in our private directory
    if (process.getuid?.() === 0) config.push("user root");
    if (options.users !== undefined) {
      const passwordFile = join(dir, "passwords");
      writeFileSync(passwordFile, "");
      for (const [user, password] of Object.entries(options.users)) {
        const made = Bun.spawnSync(["mosquitto_passwd", "-b", passwordFile, user, password], { stdout: "pipe", stderr: "pipe" });
        if (made.exitCode !== 0) throw new Error(`mosquitto_passwd failed: ${made.stderr.toString()}`);
      }
      config.push(`allow_anonymous ${options.allowAnonymous === true}`, `password_file ${passwordFile}`);
    } else {
      config.push("allow_anonymous true");
    }
    if (options.deniedFilters !== undefined) {
      const dynsecFile = join(dir, "dynamic-security.json");
      writeFileSync(dynsecFile, JSON.stringify({
        defaultACLAccess: { publishClientSend: true, publishClientReceive: true, subscribe: true, unsubscribe: true },
        clients: [],
        groups: [{ groupname: "anonymous", roles: [{ rolename: "denied" }] }],
        roles: [{ rolename: "denied", acls: options.deniedFilters.map((topic) => ({ acltype: "subscribePattern", topic, priority: 0, allow: false })) }],
        anonymousGroup: "anonymous",
      }));
      config.push(`plugin ${dynamicSecurityPlugin()}`, `plugin_opt_config_file ${dynsecFile}`);
    }
    if (options.acl !== undefined) {
      writeFileSync(join(dir, "acl"), options.acl);
      config.push(`acl_file ${join(dir, "acl")}`);
    }
    if (options.tls !== undefined) config.push(`certfile ${options.tls.certFile}`, `keyfile ${options.tls.keyFile}`);
    const configFile = join(dir, "mosquitto.conf");
    writeFileSync(configFile, config.join("\n") + "\n");
    const proc = Bun.spawn([binary, "-c", configFile], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const broker = new Mosquitto(port, dir, proc);
    while (broker.running && !(await accepts(port))) await Bun.sleep(10);
    if (broker.running) return broker;
    await broker.stop();
    if (options.port !== undefined || attempt >= 4 || !/Address already in use/i.test(broker.log)) {
      throw new Error(`mosquitto exited with code ${proc.exitCode} on port ${port}:\n${broker.log}`);
    }
  }
}

/** The clients one test made: `stopAll()` (in afterEach) stops every one of them. */
export class Clients {
  private all: Client[] = [];

  /** A new client of the broker at 127.0.0.1:port, stopped by stopAll(). */
  make(port: number, options: ClientOptions = {}): Client {
    const c = new Client("127.0.0.1", port, options);
    this.all.push(c);
    return c;
  }

  /** Stops every client made since the last call. */
  async stopAll(): Promise<void> {
    await Promise.all(this.all.splice(0).map((c) => c.stop()));
  }
}

/**
 * The next message on the client's queue; fails on null (a lost connection), and after `ms`
 * without one: a clear failure before the test's own timeout (bun test kills the processes a
 * timed-out test spawned, Mosquitto among them).
 */
export async function nextMessage(client: Client, ms = 3000): Promise<Message> {
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no message arrived at client ${client.clientId} within ${ms} ms`)), ms);
  });
  try {
    const m = await Promise.race([client.messages.get(), deadline]);
    if (m === null) throw new Error(`client ${client.clientId} lost its connection: ${client.lastError?.message ?? "no error recorded"}`);
    return m;
  } finally {
    clearTimeout(timer);
  }
}

/** Reads messages until one with payload `last` arrives; resolves with all of them as `topic:text`. */
export async function messagesUntil(client: Client, last: string): Promise<string[]> {
  const got: string[] = [];
  for (;;) {
    const m = await nextMessage(client);
    got.push(`${m.topic}:${m.text}`);
    if (m.text === last) return got;
  }
}

// ---- a scripted broker: Bun.listen and the codec, for what no real broker does on purpose ------
// (imports are hoisted; aliased so they cannot clash with the names above)

import type { Socket as FakeSocket, TCPSocketListener as FakeListener } from "bun";
import { Framer as FakeFramer } from "../../lib/codec/framer";
import { decodePacket as fakeDecode, encodePacket as fakeEncode, type Packet as FakePacket } from "../../lib/codec/packet";
import { PacketType as FakeType, type ProtocolVersion as FakeProtocolVersion } from "../../lib/codec/constants";
import type { ConnackPacket as FakeConnack } from "../../lib/codec/packets/connack";
import type { ConnectPacket as FakeConnect } from "../../lib/codec/packets/connect";

/**
 * One connection to a FakeBroker: every packet the client sent, decoded, and a way to answer with
 * packets or raw bytes. Nothing here answers on its own; the test plays the broker.
 */
export class FakeConnection {
  readonly received: FakePacket[] = [];
  readonly closed = Promise.withResolvers<void>();
  isClosed = false;
  /** What the client sent that did not decode (a client bug); next() rejects once there is any. */
  readonly errors: Error[] = [];
  /** Protocol version: 5 until the client's CONNECT says otherwise. */
  version: FakeProtocolVersion = 5;
  private waiters: { match: (p: FakePacket) => boolean; resolve: (p: FakePacket) => void; reject: (e: Error) => void }[] = [];
  private framer = new FakeFramer();

  constructor(readonly socket: FakeSocket<FakeConnection>) {}

  /** @internal the socket's data handler */
  onData(data: Uint8Array): void {
    try {
      this.framer.push(data);
      for (let f = this.framer.next(); f !== null; f = this.framer.next()) {
        const p = fakeDecode(f.slice(), this.version);
        if (p.type === FakeType.CONNECT) this.version = p.protocolVersion;
        const i = this.waiters.findIndex((w) => w.match(p));
        if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(p);
        else this.received.push(p);
      }
    } catch (e) {
      this.errors.push(e as Error);
      for (const w of this.waiters.splice(0)) w.reject(e as Error);
    }
  }

  /** @internal the socket's close handler */
  onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closed.resolve();
  }

  /** Sends a packet (encoded at the connection's version) or raw bytes. */
  send(data: FakePacket | Uint8Array | number[]): void {
    const bytes = Array.isArray(data) ? new Uint8Array(data) : data instanceof Uint8Array ? data : fakeEncode(data, this.version);
    this.socket.write(bytes);
  }

  /** Answers CONNECT with a CONNACK: accepted, no session, no properties unless `fields` say otherwise. */
  connack(fields: Partial<FakeConnack> = {}): void {
    this.send({ type: FakeType.CONNACK, sessionPresent: false, reasonCode: 0, properties: {}, ...fields });
  }

  /**
   * The next packet the client sent (of `type`, when given, and matching `predicate`), waiting for
   * it. Packets of other kinds that arrive meanwhile are kept for later calls.
   */
  next<T extends FakePacket["type"]>(
    type?: T,
    predicate: (p: Extract<FakePacket, { type: T }>) => boolean = () => true,
  ): Promise<Extract<FakePacket, { type: T }>> {
    type P = Extract<FakePacket, { type: T }>;
    const match = (p: FakePacket) => (type === undefined || p.type === type) && predicate(p as P);
    if (this.errors.length > 0) return Promise.reject(this.errors[0]);
    const i = this.received.findIndex(match);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0] as P);
    const { promise, resolve, reject } = Promise.withResolvers<P>();
    this.waiters.push({ match, resolve: resolve as (p: FakePacket) => void, reject });
    return promise;
  }

  /** Takes every packet of `type` received and not yet taken, in arrival order. */
  take<T extends FakePacket["type"]>(type: T): Extract<FakePacket, { type: T }>[] {
    const taken: Extract<FakePacket, { type: T }>[] = [];
    for (const p of this.received.splice(0)) {
      if (p.type === type) taken.push(p as Extract<FakePacket, { type: T }>);
      else this.received.push(p);
    }
    return taken;
  }

  /** Closes the connection (FIN) without DISCONNECT: a lost connection, from the client's view. */
  end(): void {
    if (!this.isClosed) this.socket.end();
  }
}

/**
 * A scripted MQTT "broker" on 127.0.0.1 and a free port: it accepts connections and hands each
 * to the test, which reads what the client sent and answers as it likes, including with packets
 * no real broker would send (malformed, out of order, never). `stop()` it in afterEach.
 */
export class FakeBroker {
  readonly connections: FakeConnection[] = [];
  private taken = 0;
  private waiters: ((c: FakeConnection) => void)[] = [];
  private constructor(private readonly listener: FakeListener<FakeConnection>) {}

  /** The port it listens on. */
  get port(): number {
    return this.listener.port;
  }

  /** Listens on 127.0.0.1 and a free port. */
  static start(): FakeBroker {
    let broker: FakeBroker | null = null;
    const listener = Bun.listen<FakeConnection>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (socket) => {
          const c = new FakeConnection(socket);
          socket.data = c;
          broker!.opened(c);
        },
        data: (socket, data) => socket.data.onData(data),
        close: (socket) => socket.data?.onClose(),
        error: (socket) => socket.data?.onClose(),
      },
    });
    broker = new FakeBroker(listener);
    return broker;
  }

  private opened(c: FakeConnection): void {
    this.connections.push(c);
    const w = this.waiters.shift();
    if (w !== undefined) {
      this.taken++;
      w(c);
    }
  }

  /** The next connection no call has taken yet, waiting for it. */
  nextConnection(): Promise<FakeConnection> {
    if (this.taken < this.connections.length) return Promise.resolve(this.connections[this.taken++]!);
    const { promise, resolve } = Promise.withResolvers<FakeConnection>();
    this.waiters.push(resolve);
    return promise;
  }

  /**
   * The next connection and its CONNECT, answered with a CONNACK (accepted, no session, no
   * properties unless `connack` says otherwise).
   */
  async accept(connack: Partial<FakeConnack> = {}): Promise<{ conn: FakeConnection; connect: FakeConnect }> {
    const conn = await this.nextConnection();
    const connect = await conn.next(FakeType.CONNECT);
    conn.connack(connack);
    return { conn, connect };
  }

  /** Closes every connection and the listener. */
  stop(): void {
    for (const c of this.connections) c.end();
    this.listener.stop(true);
  }
}
