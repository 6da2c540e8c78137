/**
 * The client API, call by call, against two brokers: the project's Broker and a real Mosquitto
 * (Debian's 2.0). Every test talks to the broker over a real socket; the brokers listen on free
 * ports; every client a test makes is stopped after it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Broker } from "../../lib/broker/broker";
import { type Client, type ClientOptions } from "../../lib/client/client";
import { ConnectError, ConnectionLostError, ConnectionRefusedError, SubscribeError, TimeoutError } from "../../lib/client/errors";
import { Message } from "../../lib/client/message";
import { ReasonCode } from "../../lib/codec/reason-codes";
import { startBroker, waitUntil } from "../broker/helpers";
import { Clients, freePort, messagesUntil, nextMessage, startMosquitto } from "./helpers";

/** A broker under test: how to start one, and what it answers where brokers may differ. */
interface Target {
  name: string;
  /** Starts one on a free port (or on `port`); every filter under denied/ is refused to subscribers. */
  start(port?: number): Promise<Server>;
  /** SUBACK code of a refused subscription, by protocol version. */
  deniedCode: { 5: number; 4: number };
}

/** A running broker under test. */
interface Server {
  port: number;
  /** Resolves once the broker has dealt with the end of the client's connection. */
  gone(clientId: string): Promise<void>;
  stop(): Promise<void>;
}

const targets: Target[] = [
  {
    name: "Broker",
    async start(port = 0) {
      const broker = new Broker([["127.0.0.1", port]], { deniedTopicFilters: ["denied/#"] });
      const [bound] = await broker.start();
      return {
        port: bound!,
        gone: (id) => waitUntil(() => !broker.clients.has(id), `the broker saw ${id} go`),
        stop: () => broker.stop(),
      };
    },
    deniedCode: { 5: ReasonCode.UnspecifiedError, 4: 0x80 },
  },
  {
    name: "Mosquitto",
    async start(port?: number) {
      const mosquitto = await startMosquitto({ port, deniedFilters: ["denied/#"] });
      return {
        port: mosquitto.port,
        gone: (id) => mosquitto.logged(`Client ${id} disconnected`),
        stop: () => mosquitto.stop(),
      };
    },
    deniedCode: { 5: ReasonCode.NotAuthorized, 4: 0x80 }, // 0x80: the one 3.1.1 failure code
  },
];

const VERSIONS = [5, 4] as const;
const clients = new Clients();
afterEach(() => clients.stopAll());

describe.each(targets)("Client against $name", (target) => {
  let server: Server;
  let port: number;
  let n = 0;
  /** A topic no other test uses. */
  const topic = (name: string) => `api/${target.name}/${++n}/${name}`;

  beforeAll(async () => {
    server = await target.start();
    port = server.port;
  });
  afterAll(() => server.stop());

  /** A started client (one attempt: a failure fails the test at once). */
  async function started(options: ClientOptions = {}): Promise<Client> {
    const c = clients.make(port, { connectDelays: [], ...options });
    await c.start();
    return c;
  }

  test("start() connects; stop() sends DISCONNECT, so the will is not published [MQTT-3.1.2-10]; a second stop() is harmless", async () => {
    const will = topic("will");
    const watcher = await started();
    await watcher.subscribe(will, { qos: 1 });
    const c = clients.make(port, { connectDelays: [], willTopic: will, willMessage: "gone", willQos: 1 });
    expect(c.isConnected).toBe(false);
    await c.start();
    expect(c.isConnected).toBe(true);
    await c.stop();
    expect(c.isConnected).toBe(false);
    await c.stop();
    await server.gone(c.clientId);
    await watcher.publish(new Message(will, "marker", { qos: 1 }));
    expect((await nextMessage(watcher)).text).toBe("marker");
  });

  test("the default clientId is mqtttools- and 14 hex digits, new for each client; a given one is kept", async () => {
    const a = clients.make(port);
    const b = clients.make(port);
    expect(a.clientId).toMatch(/^mqtttools-[0-9a-f]{14}$/);
    expect(b.clientId).toMatch(/^mqtttools-[0-9a-f]{14}$/);
    expect(a.clientId).not.toBe(b.clientId);
    expect(clients.make(port, { clientId: "given-id" }).clientId).toBe("given-id");
    const c = await started();
    expect(c.clientId).toMatch(/^mqtttools-[0-9a-f]{14}$/);
    expect(c.isConnected).toBe(true);
  });

  describe.each(VERSIONS)("protocol version %p", (protocolVersion) => {
    test.each([0, 1, 2] as const)("publish at QoS %p comes back through the client's own subscription", async (qos) => {
      const t = topic(`qos${qos}`);
      const c = await started({ protocolVersion });
      expect(await c.subscribe(t, { qos: 2 })).toBe(2);
      await c.publish(new Message(t, `at qos ${qos}`, { qos }));
      const m = await nextMessage(c);
      expect(m.topic).toBe(t);
      expect(m.text).toBe(`at qos ${qos}`);
      expect(m.qos).toBe(qos);
      expect(m.retain).toBe(false);
    });

    test.each([0, 1, 2] as const)("subscribe at QoS %p resolves with that granted QoS; delivery is at most that QoS [MQTT-3.8.4-8]", async (qos) => {
      const t = topic(`granted${qos}`);
      const c = await started({ protocolVersion });
      expect(await c.subscribe(t, { qos })).toBe(qos);
      await c.publish(new Message(t, "x", { qos: 2 }));
      expect((await nextMessage(c)).qos).toBe(qos);
    });

    test("unsubscribe: no more messages on that filter [MQTT-3.10.4-2]", async () => {
      const gone = topic("gone");
      const kept = topic("kept");
      const c = await started({ protocolVersion });
      await c.subscribe(gone);
      await c.subscribe(kept);
      await c.unsubscribe(gone);
      await c.publish(new Message(gone, "after unsubscribe", { qos: 1 }));
      await c.publish(new Message(kept, "marker", { qos: 1 }));
      expect(await messagesUntil(c, "marker")).toEqual([`${kept}:marker`]);
    });

    test("SubscribeError on a refused filter, with the broker's reason code; the client stays usable", async () => {
      const c = await started({ protocolVersion });
      const error = await c.subscribe("denied/x", { qos: 1 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SubscribeError);
      expect((error as SubscribeError).reasonCode).toBe(target.deniedCode[protocolVersion]);
      expect((error as SubscribeError).message).toContain("denied/x");
      expect(c.isConnected).toBe(true);
      const t = topic("after-refusal");
      expect(await c.subscribe(t, { qos: 1 })).toBe(1);
      await c.publish(new Message(t, "still works", { qos: 1 }));
      expect((await nextMessage(c)).text).toBe("still works");
    });

    test("a refused subscription of the subscriptions option makes start() throw SubscribeError (connectDelays [])", async () => {
      const c = clients.make(port, { protocolVersion, connectDelays: [], subscriptions: ["denied/x"] });
      const error = await c.start().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SubscribeError);
      expect((error as SubscribeError).reasonCode).toBe(target.deniedCode[protocolVersion]);
    });

    test("a refused subscription in start() is final even with connectDelays; the client stays connected with the other subscriptions made", async () => {
      const t = topic("beside-refused");
      const c = clients.make(port, { protocolVersion, connectDelays: [0.1], subscriptions: ["denied/x", t] });
      const error = await c.start().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SubscribeError);
      expect(c.isConnected).toBe(true);
      await c.publish(new Message(t, "subscribed anyway", { qos: 1 }));
      expect((await nextMessage(c)).text).toBe("subscribed anyway");
    });

    test("messages.get() returns messages in order, and `for await` reads the same queue", async () => {
      const t = topic("queue");
      const c = await started({ protocolVersion });
      await c.subscribe(t, { qos: 1 });
      for (const text of ["one", "two", "three"]) await c.publish(new Message(t, text, { qos: 1 }));
      expect((await nextMessage(c)).text).toBe("one");
      const rest: string[] = [];
      for await (const m of c.messages) {
        rest.push(m!.text);
        if (rest.length === 2) break;
      }
      expect(rest).toEqual(["two", "three"]);
      await c.publish(new Message(t, "four", { qos: 1 }));
      expect((await nextMessage(c)).text).toBe("four"); // the queue still works after the loop
    });

    test("onMessage replaces the queue", async () => {
      const t = topic("callback");
      const c = await started({ protocolVersion });
      const got: (Message | null)[] = [];
      c.onMessage = (m) => got.push(m);
      await c.subscribe(t, { qos: 1 });
      await c.publish(new Message(t, "to the callback", { qos: 1 }));
      await waitUntil(() => got.length === 1, "onMessage was called");
      expect(got[0]!.text).toBe("to the callback");
      expect(c.messages.size).toBe(0);
    });

    test("`await using` stops the client at the end of the block", async () => {
      let kept: Client;
      {
        await using c = clients.make(port, { protocolVersion, connectDelays: [] });
        kept = c;
        await c.start();
        expect(c.isConnected).toBe(true);
      }
      expect(kept.isConnected).toBe(false);
      await server.gone(kept.clientId);
    });
  });

  test("noLocal: the client does not get its own messages, only others' (v5) [MQTT-3.8.3-3]", async () => {
    const t = topic("nolocal");
    const c = await started();
    const other = await started();
    await c.subscribe(t, { qos: 1, noLocal: true });
    await c.publish(new Message(t, "own", { qos: 1 }));
    await other.publish(new Message(t, "other's", { qos: 1 }));
    expect((await nextMessage(c)).text).toBe("other's");
  });

  test.each([
    [0, "[MQTT-3.3.1-9] sent at every subscribe", ["kept", "m1", "kept", "m2"]],
    [1, "[MQTT-3.3.1-10] sent only when the subscription is new", ["kept", "m1", "m2"]],
    [2, "[MQTT-3.3.1-11] never sent", ["m1", "m2"]],
  ] as const)("retainHandling %p on a retained message (v5): %s", async (retainHandling, _rule, expected) => {
    const t = topic(`rh${retainHandling}`);
    const c = await started();
    await c.publish(new Message(t, "kept", { qos: 1, retain: true }));
    const m = await subscribeTwice(c, t, retainHandling);
    expect(m.map((x) => x.text)).toEqual([...expected]);
    expect(m.map((x) => x.retain)).toEqual(expected.map((text) => text === "kept"));
    await c.publish(new Message(t, "", { qos: 1, retain: true })); // clears it
  });

  /** Subscribes to `t` twice, publishing m1 after the first and m2 after the second; the messages until m2. */
  async function subscribeTwice(c: Client, t: string, retainHandling: 0 | 1 | 2): Promise<Message[]> {
    await c.subscribe(t, { qos: 1, retainHandling });
    await c.publish(new Message(t, "m1", { qos: 1 }));
    await c.subscribe(t, { qos: 1, retainHandling });
    await c.publish(new Message(t, "m2", { qos: 1 }));
    const got: Message[] = [];
    do got.push(await nextMessage(c));
    while (got.at(-1)!.text !== "m2");
    return got;
  }

  test("the subscriptions option is subscribed in start(): a topic, and [topic, retainHandling]", async () => {
    const plain = topic("plain");
    const handled = topic("handled");
    const publisher = await started();
    await publisher.publish(new Message(plain, "kept plain", { qos: 1, retain: true }));
    await publisher.publish(new Message(handled, "kept handled", { qos: 1, retain: true }));
    const c = await started({ subscriptions: [plain, [handled, 2]] });
    await publisher.publish(new Message(handled, "live handled", { qos: 1 }));
    await publisher.publish(new Message(plain, "live plain", { qos: 1 }));
    expect(await messagesUntil(c, "live plain")).toEqual([`${plain}:kept plain`, `${handled}:live handled`, `${plain}:live plain`]);
    await publisher.publish(new Message(plain, "", { qos: 1, retain: true }));
    await publisher.publish(new Message(handled, "", { qos: 1, retain: true }));
  });

  test("a received message carries the v5 properties: responseTopic, correlationData, userProperties in order, contentType, messageExpiryInterval [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-18] [MQTT-3.3.2-20] [MQTT-3.3.2-6]", async () => {
    const t = topic("props");
    const c = await started();
    await c.subscribe(t, { qos: 1 });
    const correlationData = new Uint8Array([0x00, 0xff, 0x10, 0x80]);
    const userProperties: [string, string][] = [["b", "1"], ["a", "2"], ["b", "3"]];
    await c.publish(new Message(t, "with properties", {
      qos: 1, responseTopic: "reply/here", correlationData, userProperties, contentType: "text/plain", messageExpiryInterval: 3600,
    }));
    const m = await nextMessage(c);
    expect(m.text).toBe("with properties");
    expect(m.responseTopic).toBe("reply/here");
    expect(m.correlationData).toEqual(correlationData);
    expect(m.userProperties).toEqual(userProperties);
    expect(m.contentType).toBe("text/plain");
    // the broker sends what is left of the interval [MQTT-3.3.2-6]
    expect(m.messageExpiryInterval).toBeGreaterThan(0);
    expect(m.messageExpiryInterval).toBeLessThanOrEqual(3600);
  });

  test("3.1.1 has no properties: they are not sent, and none are received", async () => {
    const t = topic("props4");
    const c = await started({ protocolVersion: 4 });
    await c.subscribe(t, { qos: 1 });
    await c.publish(new Message(t, "plain", { qos: 1, responseTopic: "reply/here", userProperties: [["a", "1"]], contentType: "text/plain" }));
    const m = await nextMessage(c);
    expect(m.text).toBe("plain");
    expect(m.responseTopic).toBeUndefined();
    expect(m.userProperties).toEqual([]);
    expect(m.contentType).toBeUndefined();
    expect(m.messageExpiryInterval).toBeUndefined();
  });

  test("a received Message prints as Message('topic', 'payload')", async () => {
    const t = topic("print");
    const c = await started();
    await c.subscribe(t);
    await c.publish(new Message(t, "printed"));
    const m = await nextMessage(c);
    expect(String(m)).toBe(`Message('${t}', 'printed')`);
    expect(Bun.inspect(m)).toBe(`Message('${t}', 'printed')`);
  });

  test("start() retries with connectDelays until the broker is up", async () => {
    const free = freePort();
    const c = clients.make(free, { connectDelays: [0.1] });
    const starting = c.start();
    await waitUntil(() => c.lastError instanceof ConnectionRefusedError, "the first attempt failed");
    const late = await target.start(free);
    try {
      await starting;
      expect(c.isConnected).toBe(true);
      const t = topic("late");
      await c.subscribe(t, { qos: 1 });
      await c.publish(new Message(t, "after the retry", { qos: 1 }));
      expect((await nextMessage(c)).text).toBe("after the retry");
    } finally {
      await c.stop();
      await late.stop();
    }
  });

  test("a lost connection puts null on the queue; the client reconnects and subscribes again", async () => {
    const first = await target.start();
    const t = topic("lost");
    const c = clients.make(first.port, { connectDelays: [0.1], subscriptions: [t] });
    let second: Server | null = null;
    try {
      await c.start();
      await first.stop();
      expect(await c.messages.get()).toBeNull();
      expect(c.isConnected).toBe(false);
      second = await target.start(first.port);
      // a fresh broker has no session: the message arrives only if the client subscribed again.
      // Retained, it arrives whether the subscription is made before or after the publish.
      const p = clients.make(second.port, { connectDelays: [] });
      await p.start();
      await p.publish(new Message(t, "after the reconnect", { qos: 1, retain: true }));
      expect((await nextMessage(c)).text).toBe("after the reconnect");
      expect(c.isConnected).toBe(true);
    } finally {
      await c.stop();
      await second?.stop();
    }
  });

  test("onConnect reports the first connection and each reconnect; reconnectDelays paces the reconnects while start() tried once", async () => {
    const first = await target.start();
    const c = clients.make(first.port, { connectDelays: [], reconnectDelays: [0.1] });
    const events: { sessionPresent: boolean; reconnected: boolean }[] = [];
    c.onConnect = (info) => events.push(info);
    let second: Server | null = null;
    try {
      await c.start();
      expect(events).toEqual([{ sessionPresent: false, reconnected: false }]);
      await first.stop();
      expect(await c.messages.get()).toBeNull();
      // the broker is down: attempts fail and are retried rather than given up as connectDelays [] would
      await waitUntil(() => c.lastError instanceof ConnectionRefusedError, "a reconnect attempt was refused");
      expect(events.length).toBe(1);
      second = await target.start(first.port);
      await waitUntil(() => events.length === 2, "onConnect after the reconnect");
      expect(events[1]).toEqual({ sessionPresent: false, reconnected: true });
      expect(c.isConnected).toBe(true);
    } finally {
      await c.stop();
      await second?.stop();
    }
  });
});

describe("Client: Message printing, and the errors of start()", () => {
  test("Message prints as Message('/my/topic', 'my-message'), with String() and inspect", () => {
    const m = new Message("/my/topic", "my-message");
    expect(String(m)).toBe("Message('/my/topic', 'my-message')");
    expect(`${m}`).toBe("Message('/my/topic', 'my-message')");
    expect(Bun.inspect(m)).toBe("Message('/my/topic', 'my-message')");
    expect(m.text).toBe("my-message");
  });

  test("ConnectionRefusedError when nothing listens (connectDelays []), naming host:port", async () => {
    const port = freePort();
    const c = clients.make(port, { connectDelays: [] });
    const error = await c.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionRefusedError);
    expect((error as Error).message).toContain("Connection refused");
    expect((error as Error).message).toContain(`127.0.0.1:${port}`);
    expect(c.isConnected).toBe(false);
  });

  test("TimeoutError when the server accepts TCP but never answers CONNECT", async () => {
    const seen = Promise.withResolvers<Uint8Array>();
    const closed = Promise.withResolvers<void>();
    const silent = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data: (_s, data) => seen.resolve(data.slice()), close: () => closed.resolve() },
    });
    try {
      const c = clients.make(silent.port, { connectDelays: [], responseTimeout: 0.2 });
      const error = await c.start().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      expect((error as Error).message).toContain("CONNACK");
      expect((await seen.promise)[0]).toBe(0x10); // it did send CONNECT
      await closed.promise; // and closed the connection it gave up on
    } finally {
      silent.stop(true);
    }
  });

  test("stop() during the retries makes start() throw ConnectionLostError", async () => {
    const c = clients.make(freePort(), { connectDelays: [60] });
    const starting = c.start().catch((e: unknown) => e);
    await waitUntil(() => c.lastError instanceof ConnectionRefusedError, "the first attempt failed");
    await c.stop();
    expect(await starting).toBeInstanceOf(ConnectionLostError);
  });

  describe.each(VERSIONS)("a refused CONNECT (protocol version %p)", (protocolVersion) => {
    test("ConnectError with the CONNACK reason: maxConnections 0 -> Quota Exceeded (v5) / Server Unavailable (3.1.1)", async () => {
      const { port, stop } = await startBroker({ maxConnections: 0 });
      try {
        const c = clients.make(port, { protocolVersion, connectDelays: [] });
        const error = await c.start().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ConnectError);
        expect((error as ConnectError).reasonCode).toBe(protocolVersion === 5 ? ReasonCode.QuotaExceeded : 0x03);
        expect((error as ConnectError).reasonName).toBe(protocolVersion === 5 ? "Quota Exceeded" : "Server Unavailable");
        expect(c.isConnected).toBe(false);
      } finally {
        await stop();
      }
    });
  });

  test("ConnectError 0x9D Server Moved from a redirecting broker, with its reason string", async () => {
    const { port, stop } = await startBroker({ redirect: { reference: "elsewhere:1883", permanent: true } });
    try {
      const c = clients.make(port, { connectDelays: [] });
      const error = await c.start().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).reasonCode).toBe(ReasonCode.ServerMoved);
      expect((error as ConnectError).reasonName).toBe("Server Moved");
      expect((error as Error).message).toContain("elsewhere:1883");
    } finally {
      await stop();
    }
  });
});
