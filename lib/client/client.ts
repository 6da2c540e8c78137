/**
 * The client: a thin shell around ClientState that owns the transport (transport/: TCP or TLS on
 * Bun.connect, or the standard WebSocket), timers and reconnects.
 *
 * Output is coalesced as in the broker: packets are encoded straight into one output buffer and
 * written once per event-loop turn (or whenever 256 KB have gathered); what the kernel does not take stays buffered and goes out on
 * `drain`. publish() of QoS 0 resolves at once while that buffer is below its high-water mark,
 * and otherwise once it has drained below it, so a publishing loop that awaits stays bounded.
 */
import type { TLSOptions } from "bun";
import { PacketType, type ProtocolVersion, type QoS } from "../codec/constants";
import { Framer } from "../codec/framer";
import { encodePacketInto, remainingLength, type Packet } from "../codec/packet";
import { varintSize } from "../codec/writer";
import type { ConnackPacket } from "../codec/packets/connack";
import type { ConnectProperties } from "../codec/properties";
import { MqttError, ReasonCode, reasonName } from "../codec/reason-codes";
import { describePacket } from "../codec/describe";
import { ClientError, ConnectError, ConnectionLostError, ConnectionRefusedError, ProtocolError, SessionResumeError, SubscribeError, TimeoutError, UnsubscribeError } from "./errors";
import { Message } from "./message";
import { MessageQueue } from "./queue";
import { ClientState } from "./state";
import type { ClientTransport } from "./transport/transport";
import { connectTcp } from "./transport/tcp";
import { connectWebSocket } from "./transport/ws";
import { parseBrokerUrl } from "./url";

/** Options of a Client (the seed's names). */
export interface ClientOptions {
  clientId?: string;
  willTopic?: string;
  willMessage?: string | Uint8Array;
  willRetain?: boolean;
  willQos?: QoS;
  willDelayInterval?: number;
  /** Keep alive in seconds (default 60; 0 = none). */
  keepAliveS?: number;
  /** Seconds to wait for CONNACK, SUBACK and UNSUBACK (default 5). */
  responseTimeout?: number;
  /** Topics published with a topic alias (v5). */
  topicAliases?: string[];
  /** Aliases the broker may assign us (default 10). */
  topicAliasMaximum?: number;
  /** Session Expiry Interval in seconds (default 0); > 0 resumes the session after a lost connection. */
  sessionExpiryInterval?: number;
  /** Subscribed in start(): a topic, or [topic, retainHandling]. */
  subscriptions?: (string | [string, 0 | 1 | 2])[];
  /** Seconds between connection attempts in start(); the last repeats. Default [1, 2, 4, 8]; [] = one attempt. */
  connectDelays?: number[];
  /** Seconds between attempts to reconnect after a lost connection; the last repeats. Default: connectDelays; [] = one attempt. */
  reconnectDelays?: number[];
  username?: string;
  password?: string | Uint8Array;
  /** true, or Bun TLS options (ca, cert, key, rejectUnauthorized, ...). */
  tls?: boolean | TLSOptions;
  /** MQTT over WebSocket (ws://, with tls wss://) at this path (default "/mqtt"), instead of plain TCP. */
  websocket?: { path?: string };
  /** 5 (default) or 4 (MQTT 3.1.1). */
  protocolVersion?: 5 | 4;
  /** "info": one line per packet sent or received; "debug": every field of every packet; otherwise (default "error") none. */
  logLevel?: "debug" | "info" | "warning" | "error";
  /** Where log lines go (default: stderr). */
  logger?: (line: string) => void;
}

/** Options of a subscription. */
export interface SubscribeOptions {
  qos?: QoS;
  retainHandling?: 0 | 1 | 2;
  noLocal?: boolean;
  retainAsPublished?: boolean;
}

const HIGH_WATER = 1024 * 1024;
/** What publish() returns when there is nothing to wait for: one settled promise, shared. */
const RESOLVED: Promise<void> = Promise.resolve();
const OUT_INITIAL = 64 * 1024;
/** Output this large is written at once rather than at the end of the turn. */
const FLUSH_AT = 256 * 1024;

/** setImmediate where there is one (Bun, Node), else a zero timeout (a browser). */
const nextTurn: (f: () => void) => void = typeof setImmediate === "function" ? (f) => setImmediate(f) : (f) => setTimeout(f, 0);

function randomClientId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(7));
  return "mqtttools-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

/** An MQTT 5.0 / 3.1.1 client over TCP, TLS (Bun.connect) or WebSocket (the standard WebSocket). */
export class Client {
  readonly clientId: string;
  /** Received messages; null marks a lost connection. */
  readonly messages = new MessageQueue();
  /** Called for each received message and for null (lost connection); by default queues it. */
  onMessage: (m: Message | null) => void = (m) => this.messages.put(m);
  /** Called each time a connection is made (CONNACK accepted, subscriptions restored); `reconnected` is false for the one start() makes. */
  onConnect: ((info: { sessionPresent: boolean; reconnected: boolean }) => void) | null = null;
  /** The last error that ended a connection (a broker's bad packet, a lost socket), if any. */
  lastError: Error | null = null;
  /** The error that ends the current connection attempt, if any. */
  private attemptError: Error | null = null;

  private readonly version: ProtocolVersion;
  private readonly state: ClientState;
  private readonly delays: number[];
  private readonly reconnectDelays: number[];
  private readonly subscriptions = new Map<string, SubscribeOptions>();
  private socket: ClientTransport | null = null;
  private framer = new Framer();
  private connected = false;
  private stopping = true;
  private connack: PromiseWithResolvers<ConnackPacket> | null = null;
  private closed: PromiseWithResolvers<void> | null = null;
  private abort = new AbortController();
  private keepAliveMs: number;
  private keepAliveTimer: Timer | null = null;
  private lastSent = 0;
  private lastReceived = 0;
  private out: Uint8Array = new Uint8Array(0);
  private outLen = 0;
  private flushScheduled = false;
  private roomWaiters: (() => void)[] = [];
  private reconnecting = false;
  /** Packet logging: 0 none, 1 compact (info), 2 every field (debug). */
  private readonly packetLog: 0 | 1 | 2;

  /** The broker's host and port. */
  readonly host: string;
  readonly port: number;
  private readonly options: ClientOptions;

  /**
   * `new Client(url, options)`: mqtt://, mqtts://, ws://host:port/path or wss://..., with user and
   * password taken from the URL unless the options give them; or `new Client(host, port, options)`.
   */
  constructor(url: string, options?: ClientOptions);
  constructor(host: string, port: number, options?: ClientOptions);
  constructor(hostOrUrl: string, portOrOptions: number | ClientOptions = {}, maybeOptions: ClientOptions = {}) {
    let options: ClientOptions;
    if (typeof portOrOptions === "number") {
      this.host = hostOrUrl;
      this.port = portOrOptions;
      options = maybeOptions;
    } else {
      const u = parseBrokerUrl(hostOrUrl);
      this.host = u.host;
      this.port = u.port;
      options = { ...portOrOptions };
      if (u.username !== undefined) options.username ??= u.username;
      if (u.password !== undefined) options.password ??= u.password;
      if (u.tls) options.tls ??= true;
      if (u.websocketPath !== null) options.websocket = { path: u.websocketPath };
    }
    this.options = options;
    this.clientId = options.clientId ?? randomClientId();
    this.version = options.protocolVersion ?? 5;
    this.delays = options.connectDelays ?? [1, 2, 4, 8];
    this.reconnectDelays = options.reconnectDelays ?? this.delays;
    this.keepAliveMs = (options.keepAliveS ?? 60) * 1000;
    this.state = new ClientState(this.version, options.topicAliases ?? [], this.version === 5 ? (options.topicAliasMaximum ?? 10) : 0);
    this.packetLog = options.logLevel === "debug" ? 2 : options.logLevel === "info" ? 1 : 0;
  }

  /** Logs a packet sent or received (callers check packetLog first). */
  private logPacket(direction: "Sent" | "Received", p: Packet): void {
    const line = `${new Date().toISOString()} ${this.packetLog === 2 ? "debug" : "info"}: ${direction} ${describePacket(p, this.packetLog === 2)}`;
    (this.options.logger ?? ((l: string) => console.error(l)))(line);
  }

  /** Bytes encoded and not yet taken by the kernel. */
  get pending(): number {
    return this.outLen;
  }

  /** True while a connection to the broker is up. */
  get isConnected(): boolean {
    return this.connected;
  }

  /**
   * Connects (retrying with connectDelays; with [] one attempt, whose error is thrown) and makes
   * the configured subscriptions. With resumeSession, throws SessionResumeError when the broker
   * had no session for us (the new session stays connected).
   */
  async start({ resumeSession = false }: { resumeSession?: boolean } = {}): Promise<void> {
    this.stopping = false;
    this.abort = new AbortController();
    for (const s of this.options.subscriptions ?? []) {
      const [topic, retainHandling] = typeof s === "string" ? [s, 0 as const] : s;
      this.subscriptions.set(topic, { retainHandling });
    }
    const present = await this.connectWithRetry(resumeSession, this.delays);
    this.onConnect?.({ sessionPresent: present, reconnected: false });
    if (resumeSession && !present) throw new SessionResumeError();
  }

  /** Tries to connect until it works (or once, with delays []); resolves with session present. */
  private async connectWithRetry(resume: boolean, delays: number[]): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.connectOnce(resume);
      } catch (e) {
        // a refused subscription is connected and final: retrying would not change the answer
        if (delays.length === 0 || this.stopping || e instanceof SubscribeError) throw e;
        this.lastError = e as Error;
        await sleep(delays[Math.min(attempt, delays.length - 1)]! * 1000, this.abort.signal);
        if (this.stopping) throw new ConnectionLostError("the client was stopped");
      }
    }
  }

  /** One connection: TCP (or TLS), CONNECT, CONNACK, then restoring state and subscriptions. */
  private async connectOnce(resume: boolean): Promise<boolean> {
    const { host, port, options } = this;
    this.attemptError = null; // what ends this attempt, not an earlier one
    this.framer = new Framer();
    this.outLen = 0;
    this.closed = Promise.withResolvers<void>();
    const closed = this.closed;
    let socket: ClientTransport;
    try {
      const events = {
        data: (data: Uint8Array) => this.receive(data),
        drain: () => this.flush(),
        close: () => this.socketClosed(closed),
        error: (e: Error) => { this.lastError = this.attemptError = e; },
      };
      socket = options.websocket === undefined
        ? await connectTcp(host, port, options.tls, events)
        : await connectWebSocket(this.websocketUrl(options.websocket.path), typeof options.tls === "object" ? (options.tls as Record<string, unknown>) : undefined, events);
    } catch (e) {
      const code = (e as { code?: string }).code;
      throw new ConnectionRefusedError(host, port, code ?? (e as Error).message);
    }
    this.socket = socket;
    this.state.connectionStarted();
    this.connack = Promise.withResolvers<ConnackPacket>();
    const properties: ConnectProperties = {};
    if (this.version === 5) {
      if (options.sessionExpiryInterval) properties.sessionExpiryInterval = options.sessionExpiryInterval;
      const aliasMax = options.topicAliasMaximum ?? 10;
      if (aliasMax > 0) properties.topicAliasMaximum = aliasMax;
    }
    const keepSession = resume || (this.reconnecting && (this.version === 4 ? false : (options.sessionExpiryInterval ?? 0) > 0));
    const will = options.willTopic === undefined ? null : {
      topic: options.willTopic,
      payload: typeof options.willMessage === "string" ? new TextEncoder().encode(options.willMessage) : (options.willMessage ?? new Uint8Array(0)),
      qos: options.willQos ?? 0,
      retain: options.willRetain ?? false,
      properties: options.willDelayInterval ? { willDelayInterval: options.willDelayInterval } : {},
    };
    this.send({
      type: PacketType.CONNECT,
      protocolVersion: this.version,
      cleanStart: !keepSession,
      keepAlive: Math.round(this.keepAliveMs / 1000),
      clientId: this.clientId,
      will,
      username: options.username ?? null,
      password: options.password === undefined ? null : typeof options.password === "string" ? new TextEncoder().encode(options.password) : options.password,
      properties,
    });
    let ack: ConnackPacket;
    try {
      ack = await this.withTimeout(this.connack.promise, "CONNACK");
    } catch (e) {
      socket.terminate();
      await closed.promise;
      throw e instanceof ClientError ? e : new ConnectionRefusedError(host, port, (e as Error).message);
    }
    if (ack.reasonCode !== 0) {
      socket.end();
      await closed.promise;
      throw new ConnectError(ack.reasonCode, ack.properties.reasonString, this.version); // 3.1.1 return codes have their own names
    }
    this.connected = true;
    this.reconnecting = false;
    const p = ack.properties;
    this.state.brokerReceiveMaximum = p.receiveMaximum ?? 65535;
    this.state.brokerTopicAliasMaximum = p.topicAliasMaximum ?? 0;
    if (p.serverKeepAlive !== undefined) this.keepAliveMs = p.serverKeepAlive * 1000; // [MQTT-3.1.2-21]
    this.startKeepAlive();
    for (const packet of this.state.resume(ack.sessionPresent)) this.send(packet);
    if (!ack.sessionPresent) {
      // a new session holds no subscriptions: make them (again); a refused one does not stop the
      // others, and the first refusal is thrown once all were tried
      let refused: SubscribeError | null = null;
      for (const [topic, o] of [...this.subscriptions]) {
        try {
          await this.subscribe(topic, o);
        } catch (e) {
          if (!(e instanceof SubscribeError)) throw e;
          refused ??= e;
        }
      }
      if (refused !== null) throw refused;
    }
    return ack.sessionPresent;
  }

  /** The ws:// or wss:// URL of the broker. */
  private websocketUrl(path = "/mqtt"): string {
    const host = this.host.includes(":") ? `[${this.host}]` : this.host;
    return `${this.options.tls ? "wss" : "ws"}://${host}:${this.port}${path.startsWith("/") ? path : `/${path}`}`;
  }

  private withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
    const ms = (this.options.responseTimeout ?? 5) * 1000;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new TimeoutError(`Timed out after ${ms / 1000} s waiting for ${what} from ${this.host}:${this.port}`)), ms);
      promise.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
    });
  }

  // ---- input -------------------------------------------------------------------------------

  private receive(data: Uint8Array): void {
    this.lastReceived = Date.now();
    try {
      this.framer.push(data);
      for (let p = this.framer.nextPacket(this.version); p !== null; p = this.framer.nextPacket(this.version)) {
        if (this.packetLog !== 0) this.logPacket("Received", p);
        if (this.connack !== null) {
          if (p.type !== PacketType.CONNACK) throw new MqttError(ReasonCode.ProtocolError, `protocol error: expected CONNACK, got packet type ${p.type}`);
          const c = this.connack;
          this.connack = null;
          c.resolve(p);
          continue;
        }
        if (p.type === PacketType.DISCONNECT && this.version === 5) {
          // the broker ends the connection (section 3.14): no DISCONNECT in answer; its reason is kept
          const why = p.properties.reasonString;
          this.lastError = this.attemptError = new ConnectionLostError(`Disconnected by ${this.host}:${this.port}: ${reasonName(p.reasonCode)} (0x${p.reasonCode.toString(16).padStart(2, "0")})${why ? `: ${why}` : ""}`, p.reasonCode);
          this.socket?.end();
          return;
        }
        const { reply, message } = this.state.receive(p);
        for (const r of reply) this.send(r);
        if (message !== null) this.onMessage(message);
      }
    } catch (e) {
      this.fail(e);
    }
  }

  /** Ends the connection over bad input from the broker: DISCONNECT with the reason (v5), then close. */
  private fail(e: unknown): void {
    const code = e instanceof MqttError ? e.reasonCode : ReasonCode.UnspecifiedError;
    this.lastError = this.attemptError = new ProtocolError(`Bad packet from ${this.host}:${this.port}: ${(e as Error).message}`, code);
    if (this.version === 5 && this.socket !== null) this.send({ type: PacketType.DISCONNECT, reasonCode: code, properties: {} });
    this.flush();
    this.connack?.reject(this.lastError);
    this.connack = null;
    this.socket?.end();
  }

  private socketClosed(closed: PromiseWithResolvers<void>): void {
    const wasConnected = this.connected;
    this.connected = false;
    this.socket = null;
    this.stopKeepAlive();
    this.connack?.reject(this.attemptError ?? new ConnectionLostError(`Connection to ${this.host}:${this.port} closed before CONNACK`));
    this.connack = null;
    this.state.failAcks(new ConnectionLostError("the connection was lost"));
    this.wakeRoomWaiters();
    closed.resolve();
    if (!wasConnected || this.stopping) return;
    this.onMessage(null);
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    this.reconnecting = true;
    let present: boolean;
    try {
      present = await this.connectWithRetry(false, this.reconnectDelays);
    } catch (e) {
      this.lastError = e as Error; // gave up (reconnectDelays []) or stopped
      return;
    }
    this.onConnect?.({ sessionPresent: present, reconnected: true });
  }

  // ---- output ------------------------------------------------------------------------------

  /** Encodes a packet into the output buffer; flushed at the end of this turn. */
  private send(p: Packet): void {
    if (this.packetLog !== 0) this.logPacket("Sent", p);
    const rl = remainingLength(p, this.version);
    const size = 1 + varintSize(rl) + rl;
    if (this.outLen + size > this.out.length) {
      const grown = new Uint8Array(Math.max(OUT_INITIAL, this.out.length * 2, this.outLen + size));
      grown.set(this.out.subarray(0, this.outLen));
      this.out = grown;
    }
    this.outLen = encodePacketInto(p, this.version, this.out, this.outLen, rl);
    if (this.outLen >= FLUSH_AT) this.flush();
    else if (!this.flushScheduled) {
      // setImmediate, not a microtask: a loop of `await publish()` runs on microtasks, and would
      // otherwise get one write per message
      this.flushScheduled = true;
      nextTurn(this.flushBound);
    }
  }

  private readonly flushBound = () => this.flush();

  private flush(): void {
    this.flushScheduled = false;
    if (this.socket === null || this.outLen === 0) return;
    this.lastSent = Date.now();
    const written = this.socket.write(this.out, 0, this.outLen);
    if (written >= this.outLen) this.outLen = 0;
    else if (written > 0) {
      this.out.copyWithin(0, written, this.outLen);
      this.outLen -= written;
    }
    if (this.outLen < HIGH_WATER) this.wakeRoomWaiters();
  }

  private wakeRoomWaiters(): void {
    const w = this.roomWaiters;
    this.roomWaiters = [];
    for (const f of w) f();
  }

  // ---- keep alive --------------------------------------------------------------------------

  private startKeepAlive(): void {
    this.stopKeepAlive();
    if (this.keepAliveMs <= 0) return;
    this.lastReceived = this.lastSent = Date.now();
    this.keepAliveTimer = setInterval(() => {
      const now = Date.now();
      if (now - this.lastReceived > this.keepAliveMs * 1.5) {
        this.lastError = new TimeoutError(`No answer from ${this.host}:${this.port} within 1.5 x keep alive`);
        this.socket?.terminate(); // a dead connection [MQTT-3.1.2-22 from the client's side]
      } else if (now - this.lastSent >= this.keepAliveMs || now - this.lastReceived >= this.keepAliveMs) {
        this.send({ type: PacketType.PINGREQ }); // [MQTT-3.1.2-20]
      }
    }, Math.max(50, this.keepAliveMs / 4));
    (this.keepAliveTimer as { unref?: () => void }).unref?.(); // a number in a browser
  }

  private stopKeepAlive(): void {
    if (this.keepAliveTimer !== null) clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = null;
  }

  // ---- API ---------------------------------------------------------------------------------

  /**
   * Publishes a message. Resolves at once for QoS 0 (or when the output buffer has room again),
   * on PUBACK / PUBCOMP for QoS 1/2. A QoS 0 message published while disconnected is dropped.
   */
  publish(message: Message): Promise<void> {
    if (message.qos === 0) {
      const packet = this.state.publishQos0(message, this.connected);
      if (packet !== null) this.send(packet);
      if (this.outLen < HIGH_WATER || !this.connected) return RESOLVED;
      return new Promise((resolve) => this.roomWaiters.push(resolve));
    }
    const { packet, done } = this.state.publishTracked(message, this.connected);
    if (packet !== null) this.send(packet);
    else if (this.connected) for (const p of this.state.sendable()) this.send(p);
    return done;
  }

  /** Subscribes; resolves with the granted QoS, throws SubscribeError when refused. */
  async subscribe(topic: string, options: SubscribeOptions = {}): Promise<number> {
    const { packetId, done } = this.state.expectAck();
    this.subscriptions.set(topic, options);
    this.send({
      type: PacketType.SUBSCRIBE,
      packetId,
      subscriptions: [{ topicFilter: topic, qos: options.qos ?? 0, noLocal: options.noLocal ?? false, retainAsPublished: options.retainAsPublished ?? false, retainHandling: options.retainHandling ?? 0 }],
      properties: {},
    });
    const [code = ReasonCode.UnspecifiedError] = await this.awaitAck(packetId, done, "SUBACK");
    if (code >= 0x80) {
      this.subscriptions.delete(topic);
      throw new SubscribeError(code, topic);
    }
    return code;
  }

  /** Unsubscribes; throws UnsubscribeError when the broker refuses (v5). */
  async unsubscribe(topic: string): Promise<void> {
    const { packetId, done } = this.state.expectAck();
    this.subscriptions.delete(topic);
    this.send({ type: PacketType.UNSUBSCRIBE, packetId, topicFilters: [topic], properties: {} });
    const [code = 0] = await this.awaitAck(packetId, done, "UNSUBACK");
    if (code >= 0x80) throw new UnsubscribeError(code, topic);
  }

  private async awaitAck(packetId: number, done: Promise<number[]>, what: string): Promise<number[]> {
    try {
      return await this.withTimeout(done, what);
    } catch (e) {
      this.state.dropAck(packetId, e as Error);
      throw e;
    }
  }

  /** Disconnects (DISCONNECT 0x00: no will) and stops reconnecting; pending operations fail. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    this.stopKeepAlive();
    const socket = this.socket;
    if (socket !== null) {
      if (this.connected) this.send({ type: PacketType.DISCONNECT, reasonCode: 0, properties: {} });
      this.flush();
      // what the kernel did not take yet (the tail of a fast publishing loop) goes out first
      const deadline = Date.now() + (this.options.responseTimeout ?? 5) * 1000;
      while (this.outLen > 0 && this.socket !== null && Date.now() < deadline) {
        await Promise.race([new Promise<void>((resolve) => this.roomWaiters.push(resolve)), new Promise<void>((resolve) => setTimeout(resolve, 50))]);
      }
      socket.end();
      await this.closed?.promise;
    }
    this.state.failAll(new ConnectionLostError("the client was stopped"));
    this.wakeRoomWaiters();
  }

  /** `await using client = ...` stops it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

