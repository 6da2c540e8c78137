/**
 * Authentication with a password file in Mosquitto's format [MQTT-3.1.4-2]: the file is made by
 * Debian's mosquitto_passwd, and the broker is tried with raw CONNECTs at both protocol levels,
 * MQTT.js, and mosquitto_pub / mosquitto_sub.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConnackReturnCode, ReasonCode } from "../../lib/codec";
import { parsePasswordFile, PasswordFileError, verifyPassword } from "../../lib/broker/auth";
import { removeDir, tempDir } from "../client/helpers";
import { finished, startErrors, useHarness, utf8 } from "./helpers";

const { start, peers } = useHarness();
let dir: string;
let passwordFile: string;

/** Runs Debian's mosquitto_passwd (batch mode) on a file. */
function mosquittoPasswd(...args: string[]): void {
  const path = Bun.which("mosquitto_passwd") ?? "/usr/bin/mosquitto_passwd";
  const made = Bun.spawnSync([path, ...args], { stdout: "pipe", stderr: "pipe" });
  if (made.exitCode !== 0) throw new Error(`mosquitto_passwd ${args.join(" ")}: ${made.stderr.toString()}`);
}

beforeAll(() => {
  dir = tempDir("mqtttools-auth-");
  passwordFile = join(dir, "passwords");
  mosquittoPasswd("-c", "-b", passwordFile, "alice", "wonderland");
  mosquittoPasswd("-b", passwordFile, "bob", "bü1lder ✓");
});

afterAll(() => removeDir(dir));

const credentials = (username: string | null, password: string | null) => ({ username, password: password === null ? null : utf8(password) });

describe("a password file made by mosquitto_passwd", () => {
  test.each([
    ["alice", "wonderland"],
    ["bob", "bü1lder ✓"],
  ])("v5 and 3.1.1: %s with the right password is accepted", async (username, password) => {
    const h = await start({ passwordFile });
    for (const protocolVersion of [5, 4] as const) {
      const { connack } = await h.connectAck({ protocolVersion, clientId: `${username}${protocolVersion}`, ...credentials(username, password) });
      expect(connack.reasonCode).toBe(0);
    }
  });

  test.each([
    ["a wrong password", "alice", "Wonderland"],
    ["an unknown user", "carol", "wonderland"],
    ["a user name without a password", "alice", null],
    ["another user's password", "bob", "wonderland"],
  ] as [string, string, string | null][])("[MQTT-3.1.4-2] %s: v5 CONNACK 0x86 Bad User Name or Password with a reason string, 3.1.1 0x04; the connection is closed", async (_, username, password) => {
    const h = await start({ passwordFile });
    const v5 = await h.connectAck({ clientId: "v5", ...credentials(username, password) });
    expect(v5.connack.reasonCode).toBe(ReasonCode.BadUserNameOrPassword);
    expect(v5.connack.properties.reasonString).toBe("bad user name or password");
    await v5.client.closed.promise;
    if (password !== null) { // 3.1.1 has no password without a user name, but has one with
      const v4 = await h.connectAck({ protocolVersion: 4, clientId: "v4", ...credentials(username, password) });
      expect(v4.connack.reasonCode).toBe(ConnackReturnCode.BadUserNameOrPassword);
      await v4.client.closed.promise;
    }
    expect(h.broker.clients.size).toBe(0);
  });

  test("no user name: v5 CONNACK 0x87 Not Authorized with a reason string, 3.1.1 0x05", async () => {
    const h = await start({ passwordFile });
    const v5 = (await h.connectAck({ clientId: "anon5" })).connack;
    expect(v5.reasonCode).toBe(ReasonCode.NotAuthorized);
    expect(v5.properties.reasonString).toBe("not authorized: this broker needs a user name and password");
    expect((await h.connectAck({ protocolVersion: 4, clientId: "anon4" })).connack.reasonCode).toBe(ConnackReturnCode.NotAuthorized);
  });

  test("allowAnonymous: true lets clients without a user name in, while user names are still checked", async () => {
    const h = await start({ passwordFile, allowAnonymous: true });
    expect((await h.connectAck({ clientId: "anon" })).connack.reasonCode).toBe(0);
    expect((await h.connectAck({ clientId: "right", ...credentials("alice", "wonderland") })).connack.reasonCode).toBe(0);
    expect((await h.connectAck({ clientId: "wrong", ...credentials("alice", "nope") })).connack.reasonCode).toBe(ReasonCode.BadUserNameOrPassword);
  });

  test("without a password file anyone connects, with or without a user name", async () => {
    const h = await start();
    expect((await h.connectAck({ clientId: "a" })).connack.reasonCode).toBe(0);
    expect((await h.connectAck({ clientId: "b", ...credentials("anyone", "anything") })).connack.reasonCode).toBe(0);
  });

  test("without a password file, allowAnonymous: false refuses clients without a user name", async () => {
    const h = await start({ allowAnonymous: false });
    expect((await h.connectAck({ clientId: "c" })).connack.reasonCode).toBe(ReasonCode.NotAuthorized);
    expect((await h.connectAck({ clientId: "d", ...credentials("anyone", "anything") })).connack.reasonCode).toBe(0);
  });

  test("MQTT.js: the right password connects, a wrong one fails with 'Bad User Name or Password'", async () => {
    const h = await start({ passwordFile });
    const url = `mqtt://127.0.0.1:${h.port}`;
    const ok = await peers.mqttjs(url, { protocolVersion: 5, clientId: "js-ok", username: "alice", password: "wonderland" });
    expect(ok.connack.reasonCode).toBe(0);
    const refused = await peers.mqttjs(url, { protocolVersion: 5, clientId: "js-bad", username: "alice", password: "nope" }).then(() => null, (e: Error & { code?: number }) => e);
    expect(refused?.message).toContain("Bad User Name or Password");
    expect(refused?.code).toBe(ReasonCode.BadUserNameOrPassword);
  });

  test("mosquitto_pub and mosquitto_sub: the right password delivers, a wrong one is refused", async () => {
    const h = await start({ passwordFile });
    const at = ["-h", "127.0.0.1", "-p", String(h.port)];
    expect((await finished(peers.mosquitto("mosquitto_pub", [...at, "-u", "alice", "-P", "wonderland", "-t", "auth/t", "-m", "kept", "-r", "-q", "1"]))).code).toBe(0);
    const sub = await finished(peers.mosquitto("mosquitto_sub", [...at, "-u", "bob", "-P", "bü1lder ✓", "-t", "auth/#", "-C", "1", "-v"]));
    expect(sub).toMatchObject({ code: 0, stdout: "auth/t kept\n" });
    const bad = await finished(peers.mosquitto("mosquitto_sub", [...at, "-V", "5", "-u", "alice", "-P", "nope", "-t", "auth/#", "-C", "1"]));
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.toLowerCase()).toContain("bad user name or password");
  });
});

describe("password files", () => {
  test("the legacy $6$ form (SHA-512 of password and salt) is accepted too", () => {
    const salt = utf8("0123456789ab");
    const hash = createHash("sha512").update("secret").update(salt).digest("base64");
    const users = parsePasswordFile(`# a comment\n\ncarol:$6$${Buffer.from(salt).toString("base64")}$${hash}\n`, "f");
    expect(verifyPassword(users.get("carol")!, utf8("secret"))).toBe(true);
    expect(verifyPassword(users.get("carol")!, utf8("Secret"))).toBe(false);
  });

  test.each([
    ["alice\n", "f line 1: expected user:hash"],
    ["alice:wonderland\n", "f line 1: the password is not a $7$ or $6$ hash (make the file with mosquitto_passwd)"],
    ["# ok\nbob:$7$x$c2FsdA==$aGFzaA==\n", "f line 2: the iteration count 'x' is not a positive integer"],
    ["bob:$7$101$not base64!$aGFzaA==\n", "f line 1: the salt is not base64"],
  ])("a bad line is a PasswordFileError naming it: %p", (text, message) => {
    expect(() => parsePasswordFile(text, "f")).toThrow(new PasswordFileError(message));
  });

  test("Broker.start() and BrokerThread.start() reject a bad or missing file with the same PasswordFileError", async () => {
    const bad = join(dir, "bad");
    writeFileSync(bad, "alice:plain\n");
    for (const file of [bad, join(dir, "missing")]) {
      const [main, thread] = await startErrors({ passwordFile: file });
      expect(main).toBeInstanceOf(PasswordFileError);
      expect(thread).toBeInstanceOf(PasswordFileError);
      expect(thread.message).toBe(main.message);
      expect(main.message).toContain(file);
    }
  });
});
