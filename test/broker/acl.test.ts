/**
 * Access rules in Mosquitto's acl_file format. One file and one password file serve the project's
 * broker and a real Mosquitto, the same MQTT.js clients do the same things against each, and what
 * each client receives (and which publishes are refused) must be the same, and as expected.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConnackReturnCode, PacketType, ReasonCode } from "../../lib/codec";
import { AccessRules, AclFileError, Access } from "../../lib/broker/acl";
import { Client } from "../../lib/client/client";
import { PublishError } from "../../lib/client/errors";
import { Message } from "../../lib/client/message";
import { removeDir, startMosquitto, tempDir, type Mosquitto } from "../client/helpers";
import { nextPublish, Peers, publishPacket, rawSubscribe, settle, startBroker, startErrors, takePublishes, text, useHarness, utf8, type MqttjsPeer } from "./helpers";

const ACL = `# anonymous clients
topic read public/#

user alice
topic readwrite sensors/#
topic deny sensors/secret
topic write commands/#
topic readwrite public/#

user bob
topic read sensors/#
topic read commands/#

# every client
pattern readwrite clients/%c/#
pattern read users/%u/#
`;
const USERS = { alice: "wonderland", bob: "builder" };

let dir: string;
let passwordFile: string;
let aclFile: string;

beforeAll(() => {
  dir = tempDir("mqtttools-acl-");
  passwordFile = join(dir, "passwords");
  aclFile = join(dir, "acl");
  writeFileSync(passwordFile, "");
  for (const [user, password] of Object.entries(USERS)) {
    const made = Bun.spawnSync(["mosquitto_passwd", "-b", passwordFile, user, password], { stdout: "pipe", stderr: "pipe" });
    if (made.exitCode !== 0) throw new Error(`mosquitto_passwd: ${made.stderr.toString()}`);
  }
  writeFileSync(aclFile, ACL);
});

afterAll(() => removeDir(dir));

/** What the scenario saw: each client's received topics (sorted) and each publish's outcome. */
interface Outcome {
  received: Record<string, string[]>;
  publishes: Record<string, string>;
}

/** Alice, Bob and an anonymous client subscribe to '#', publish, and report what they got. */
async function scenario(url: string, peers: Peers): Promise<Outcome> {
  const clients: Record<string, MqttjsPeer> = {
    alice: await peers.mqttjs(url, { protocolVersion: 5, clientId: "alice-c", username: "alice", password: USERS.alice }),
    bob: await peers.mqttjs(url, { protocolVersion: 5, clientId: "bob-c", username: "bob", password: USERS.bob }),
    anon: await peers.mqttjs(url, { protocolVersion: 5, clientId: "anon-c" }),
  };
  for (const c of Object.values(clients)) await c.client.subscribeAsync("#", { qos: 1 });
  const publishes: Record<string, string> = {};
  const attempts: [string, string][] = [
    ["alice", "sensors/a"], ["alice", "sensors/secret"], ["alice", "commands/x"], ["alice", "public/p"],
    ["alice", "clients/alice-c/x"], ["alice", "users/alice/y"],
    ["bob", "sensors/b"], ["bob", "clients/bob-c/z"], ["bob", "commands/y"], ["bob", "users/bob/y"],
    ["anon", "public/q"], ["anon", "clients/anon-c/w"],
  ];
  for (const [who, topic] of attempts) {
    publishes[`${who} ${topic}`] = await clients[who]!.client.publishAsync(topic, "m", { qos: 1 }).then(
      () => "ok",
      (e: Error) => `refused: ${e.message}`,
    );
  }
  // markers, published last: once a client has its marker, everything before it has arrived
  await clients.alice!.client.publishAsync("sensors/end", "end", { qos: 1 });
  await clients.alice!.client.publishAsync("public/end", "end", { qos: 1 });
  const received: Record<string, string[]> = {};
  for (const [who, c] of Object.entries(clients)) {
    const marker = who === "anon" ? "public/end" : who === "bob" ? "sensors/end" : "public/end";
    let n = 1;
    while (!(await c.receive(n)).some((m) => m.topic === marker)) n++;
    if (who === "alice") await c.receive(c.inbox.findIndex((m) => m.topic === "sensors/end") + 1);
    received[who] = c.inbox.map((m) => m.topic).sort();
  }
  return { received, publishes };
}

describe("an acl_file shared with Mosquitto", () => {
  const peers = new Peers();
  let mosquitto: Mosquitto;
  beforeAll(async () => {
    mosquitto = await startMosquitto({ users: USERS, allowAnonymous: true, acl: ACL });
  });
  afterAll(async () => {
    await peers.closeAll();
    await mosquitto.stop();
  });

  test("the same clients doing the same things receive the same messages, and the same publishes are refused, as with Mosquitto", async () => {
    const ours = await startBroker({ passwordFile, aclFile, allowAnonymous: true });
    try {
      const got = await scenario(ours.url, peers);
      await peers.closeAll();
      const theirs = await scenario(`mqtt://127.0.0.1:${mosquitto.port}`, peers);
      await peers.closeAll();
      expect(got.received).toEqual({
        alice: ["clients/alice-c/x", "public/end", "public/p", "sensors/a", "sensors/end"],
        bob: ["clients/bob-c/z", "commands/x", "sensors/a", "sensors/end"],
        anon: ["clients/anon-c/w", "public/end", "public/p"],
      });
      expect(got.received).toEqual(theirs.received);
      const refused = Object.entries(got.publishes).filter(([, r]) => r !== "ok").map(([k]) => k);
      expect(refused).toEqual(["alice sensors/secret", "alice users/alice/y", "bob sensors/b", "bob commands/y", "bob users/bob/y", "anon public/q"]);
      expect(got.publishes).toEqual(theirs.publishes);
    } finally {
      await ours.stop();
    }
  });
});

describe("access rules, in raw conversations", () => {
  const { start } = useHarness();
  const login = (username: string, clientId: string) => ({ clientId, username, password: utf8(USERS[username as keyof typeof USERS]) });

  test("v5: a refused PUBLISH gets PUBACK 0x87 at QoS 1 and PUBREC 0x87 at QoS 2 (the exchange ends), and is neither delivered nor retained", async () => {
    const h = await start({ passwordFile, aclFile });
    const alice = await h.connect(login("alice", "alice-c"));
    await rawSubscribe(alice, "#", 2);
    const bob = await h.connect(login("bob", "bob-c"));
    bob.send(publishPacket("sensors/b", "no", { qos: 1, packetId: 1, retain: true }));
    expect(await bob.next(PacketType.PUBACK)).toMatchObject({ packetId: 1, reasonCode: ReasonCode.NotAuthorized });
    bob.send(publishPacket("sensors/b", "no", { qos: 2, packetId: 2 }));
    expect(await bob.next(PacketType.PUBREC)).toMatchObject({ packetId: 2, reasonCode: ReasonCode.NotAuthorized });
    bob.send(publishPacket("sensors/b", "no"));
    bob.send(publishPacket("clients/bob-c/ok", "yes"));
    await settle(bob, alice);
    expect(takePublishes(alice)).toEqual([]);
    expect(h.broker.retained.has("sensors/b")).toBe(false);
  });

  test("3.1.1: a refused PUBLISH is acknowledged as usual (3.1.1 has no code for it) and dropped; a QoS 2 one completes", async () => {
    const h = await start({ passwordFile, aclFile });
    const alice = await h.connect(login("alice", "alice-c"));
    await rawSubscribe(alice, "#", 2);
    const bob = await h.connect({ protocolVersion: 4, ...login("bob", "bob-c") });
    bob.send(publishPacket("sensors/b", "no", { qos: 1, packetId: 1 }));
    expect(await bob.next(PacketType.PUBACK)).toMatchObject({ packetId: 1 });
    bob.send(publishPacket("sensors/b", "no", { qos: 2, packetId: 2 }));
    await bob.next(PacketType.PUBREC);
    bob.send({ type: PacketType.PUBREL, packetId: 2, reasonCode: 0, properties: {} });
    expect(await bob.next(PacketType.PUBCOMP)).toMatchObject({ packetId: 2 });
    await settle(bob, alice);
    expect(takePublishes(alice)).toEqual([]);
  });

  test("retained messages are sent on SUBSCRIBE only where the subscriber may read them", async () => {
    const h = await start({ passwordFile, aclFile, allowAnonymous: true });
    const alice = await h.connect(login("alice", "alice-c"));
    for (const [i, topic] of ["sensors/kept", "public/kept", "commands/kept"].entries()) {
      alice.send(publishPacket(topic, "kept", { qos: 1, packetId: i + 1, retain: true }));
      await alice.next(PacketType.PUBACK, (p) => p.type === PacketType.PUBACK && p.packetId === i + 1);
    }
    const anon = await h.connect({ clientId: "anon-c" });
    await rawSubscribe(anon, "#", 1);
    expect(text((await nextPublish(anon)).topic)).toBe("public/kept");
    await settle(anon);
    expect(takePublishes(anon)).toEqual([]);
    const bob = await h.connect(login("bob", "bob-c"));
    await rawSubscribe(bob, "#", 1);
    await settle(bob);
    expect(takePublishes(bob).map((p) => text(p.topic)).sort()).toEqual(["commands/kept", "sensors/kept"]);
  });

  test("a will on a topic the client may not write is refused at CONNECT: 0x87 (3.1.1: 0x05)", async () => {
    const h = await start({ passwordFile, aclFile });
    const will = { topic: utf8("sensors/bob-gone"), payload: utf8("gone"), qos: 0 as const, retain: false, properties: {} };
    const v5 = await h.connectAck({ ...login("bob", "bob-c"), will });
    expect(v5.connack.reasonCode).toBe(ReasonCode.NotAuthorized);
    expect(v5.connack.properties.reasonString).toBe("not authorized to publish the will topic");
    const v4 = await h.connectAck({ protocolVersion: 4, ...login("bob", "bob-c"), will });
    expect(v4.connack.reasonCode).toBe(ConnackReturnCode.NotAuthorized);
    expect((await h.connectAck({ ...login("bob", "bob-c"), will: { ...will, topic: utf8("clients/bob-c/gone") } })).connack.reasonCode).toBe(0);
  });

  test("a session taken over by another user reads with the new user's rights", async () => {
    const h = await start({ passwordFile, aclFile });
    const alice = await h.connect(login("alice", "alice-c"));
    const first = await h.connect({ ...login("bob", "shared-id"), properties: { sessionExpiryInterval: 60 } });
    await rawSubscribe(first, "#", 0);
    alice.send(publishPacket("commands/one", "for bob"));
    expect(text((await nextPublish(first)).topic)).toBe("commands/one");
    // the same client identifier, now alice's: she may not read commands/#
    const second = await h.connect({ ...login("alice", "shared-id"), cleanStart: false, properties: { sessionExpiryInterval: 60 } });
    alice.send(publishPacket("commands/one", "not for alice")); // the same topic: no delivery decided for bob may stay in force
    alice.send(publishPacket("sensors/three", "for alice"));
    expect(text((await nextPublish(second)).topic)).toBe("sensors/three");
    await settle(alice, second);
    expect(takePublishes(second)).toEqual([]);
  });
});

describe("the project's Client against access rules", () => {
  test("publish() of a refused QoS 1 or 2 message rejects with PublishError 0x87 (v5); QoS 0 resolves, and nothing is delivered", async () => {
    const b = await startBroker({ passwordFile, aclFile });
    const bob = new Client("127.0.0.1", b.port, { clientId: "bob-c", username: "bob", password: USERS.bob, connectDelays: [] });
    const alice = new Client("127.0.0.1", b.port, { clientId: "alice-c", username: "alice", password: USERS.alice, connectDelays: [] });
    try {
      await bob.start();
      await alice.start();
      await alice.subscribe("#", { qos: 2 });
      for (const qos of [1, 2] as const) {
        const error = await bob.publish(new Message("sensors/b", "no", { qos })).then(() => null, (e: unknown) => e);
        expect(error).toBeInstanceOf(PublishError);
        expect((error as PublishError).reasonCode).toBe(ReasonCode.NotAuthorized);
        expect((error as PublishError).message).toBe("Publish to 'sensors/b' refused: Not Authorized (0x87)");
      }
      await bob.publish(new Message("sensors/b", "no"));
      // bob may write and read his own branch: the first message alice or bob receives is his
      await bob.subscribe("clients/bob-c/#", { qos: 1 });
      await bob.publish(new Message("clients/bob-c/x", "yes", { qos: 1 }));
      expect((await bob.messages.get())?.topic).toBe("clients/bob-c/x");
      await alice.publish(new Message("sensors/a", "after", { qos: 1 }));
      expect((await alice.messages.get())?.topic).toBe("sensors/a"); // nothing of bob's before it
    } finally {
      await bob.stop();
      await alice.stop();
      await b.stop();
    }
  });
});

describe("acl files", () => {
  test("rules: deny wins, readwrite is the default, patterns substitute %c and %u and never apply to a value with '/', '+' or '#'", () => {
    const rules = AccessRules.parse("user u\ntopic a/#\ntopic deny a/b\npattern read p/%u/%c\n", "f");
    expect(rules.allows("u", "c", "a/x", Access.WRITE)).toBe(true);
    expect(rules.allows("u", "c", "a/x", Access.READ)).toBe(true);
    expect(rules.allows("u", "c", "a/b", Access.READ)).toBe(false);
    expect(rules.allows("u", "c", "p/u/c", Access.READ)).toBe(true);
    expect(rules.allows("u", "c", "p/u/c", Access.WRITE)).toBe(false);
    expect(rules.allows("other", "c", "p/other/c", Access.READ)).toBe(true);
    expect(rules.allows(null, "c", "p/u/c", Access.READ)).toBe(false);
    expect(rules.allows("u", "x/y", "p/u/x/y", Access.READ)).toBe(false);
    expect(rules.allows("u", "+", "p/u/anything", Access.READ)).toBe(false);
  });

  test.each([
    ["group admins\n", "f line 1: expected 'user', 'topic' or 'pattern', not 'group'"],
    ["user\n", "f line 1: 'user' needs a user name"],
    ["topic read\n", "f line 1: 'topic' needs a topic filter"],
    ["user a\ntopic read a/#/b\n", "f line 2: "],
  ])("a bad line is an AclFileError naming it: %p", (textOfFile, message) => {
    expect(() => AccessRules.parse(textOfFile, "f")).toThrow(AclFileError);
    expect(() => AccessRules.parse(textOfFile, "f")).toThrow(message);
  });

  test("Broker.start() and BrokerThread.start() reject a bad or missing acl file with the same AclFileError", async () => {
    const bad = join(dir, "bad-acl");
    writeFileSync(bad, "topic\n");
    for (const file of [bad, join(dir, "missing-acl")]) {
      const [main, thread] = await startErrors({ aclFile: file });
      expect(main).toBeInstanceOf(AclFileError);
      expect(thread).toBeInstanceOf(AclFileError);
      expect(thread.message).toBe(main.message);
      expect(main.message).toContain(file);
    }
  });
});
