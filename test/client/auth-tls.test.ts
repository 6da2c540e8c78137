/**
 * The client over TLS and with credentials. TLS: a self-signed certificate the test makes with
 * openssl, trusted through the client's `tls: { ca }` (Bun TLS options), against the project's
 * Broker ([host, 0, { cert, key }] listener) and against Mosquitto (certfile / keyfile).
 * Username and password: against Mosquitto with a password file made by mosquitto_passwd.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Broker } from "../../lib/broker/broker";
import { ClientError, ConnectError, ConnectionRefusedError } from "../../lib/client/errors";
import { Message } from "../../lib/client/message";
import { ConnackReturnCode, ReasonCode } from "../../lib/codec/reason-codes";
import { type Certificate, Clients, makeCertificate, type Mosquitto, nextMessage, removeDir, startMosquitto, tempDir } from "./helpers";

const VERSIONS = [5, 4] as const;
const clients = new Clients();
let dir: string;
let certificate: Certificate;

beforeAll(() => {
  dir = tempDir("mqtttools-client-tls-");
  certificate = makeCertificate(dir);
});
afterEach(() => clients.stopAll());
afterAll(() => removeDir(dir));

/** TLS servers under test: each starts on a free port with the test's certificate. */
const tlsTargets: { name: string; start(): Promise<{ port: number; stop(): Promise<void> }> }[] = [
  {
    name: "Broker",
    async start() {
      const broker = new Broker([["127.0.0.1", 0, { cert: certificate.cert, key: certificate.key }]]);
      const [port] = await broker.start();
      return { port: port!, stop: () => broker.stop() };
    },
  },
  {
    name: "Mosquitto",
    start: () => startMosquitto({ tls: certificate }),
  },
];

describe.each(tlsTargets)("TLS against $name", (target) => {
  let server: { port: number; stop(): Promise<void> };
  beforeAll(async () => {
    server = await target.start();
  });
  afterAll(() => server.stop());

  test.each(VERSIONS)("a client trusting the certificate (tls: { ca }) connects and round-trips a message (protocol %p)", async (protocolVersion) => {
    const c = clients.make(server.port, { protocolVersion, connectDelays: [], tls: { ca: certificate.cert } });
    await c.start();
    expect(c.isConnected).toBe(true);
    const t = `tls/${target.name}/${protocolVersion}`;
    expect(await c.subscribe(t, { qos: 2 })).toBe(2);
    await c.publish(new Message(t, "over tls", { qos: 2 }));
    const m = await nextMessage(c);
    expect(m.topic).toBe(t);
    expect(m.text).toBe("over tls");
  });

  // tls: true used to reach Bun as `{}`, which Bun takes for plain TCP: the error names the
  // certificate only when the client really spoke TLS
  test("tls: true verifies the certificate: a self-signed one is refused, naming the reason", async () => {
    const c = clients.make(server.port, { connectDelays: [], tls: true });
    const error = await c.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionRefusedError);
    expect((error as Error).message).toContain(`127.0.0.1:${server.port}`);
    expect((error as Error).message).toContain("TLS handshake failed");
    expect((error as Error).message).toContain("self signed certificate");
    expect(c.isConnected).toBe(false);
  });

  test("a certificate that does not name the server (serverName) is refused, naming the reason", async () => {
    const c = clients.make(server.port, { connectDelays: [], tls: { ca: certificate.cert, serverName: "elsewhere.example" } });
    const error = await c.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionRefusedError);
    expect((error as Error).message).toContain("TLS handshake failed");
    expect((error as Error).message).toContain("elsewhere.example");
  });

  test("tls: { rejectUnauthorized: false } connects without verifying", async () => {
    const c = clients.make(server.port, { connectDelays: [], tls: { rejectUnauthorized: false } });
    await c.start();
    expect(c.isConnected).toBe(true);
  });

  test("a plain TCP client on the TLS port gets no CONNACK: start() throws a ClientError", async () => {
    const c = clients.make(server.port, { connectDelays: [], responseTimeout: 2 });
    const error = await c.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ClientError);
    expect(c.isConnected).toBe(false);
  });
});

describe("username and password against Mosquitto (password file)", () => {
  let mosquitto: Mosquitto;
  beforeAll(async () => {
    mosquitto = await startMosquitto({ users: { alice: "s3cret" } });
  });
  afterAll(() => mosquitto.stop());

  test.each(VERSIONS)("the right password is accepted (protocol %p)", async (protocolVersion) => {
    const c = clients.make(mosquitto.port, { protocolVersion, connectDelays: [], username: "alice", password: "s3cret" });
    await c.start();
    expect(c.isConnected).toBe(true);
    const t = `auth/${protocolVersion}`;
    await c.subscribe(t, { qos: 1 });
    await c.publish(new Message(t, "authenticated", { qos: 1 }));
    expect((await nextMessage(c)).text).toBe("authenticated");
  });

  test("the password may be given as bytes", async () => {
    const c = clients.make(mosquitto.port, { connectDelays: [], username: "alice", password: new TextEncoder().encode("s3cret") });
    await c.start();
    expect(c.isConnected).toBe(true);
  });

  // Mosquitto 2.0.11 answers a wrong password and missing credentials alike: 0x87 Not Authorized
  // (v5) and return code 5 Not Authorized (3.1.1), not 0x86 / 4 Bad User Name Or Password.
  test.each([
    [5, "a wrong password", "Not Authorized", ReasonCode.NotAuthorized, { username: "alice", password: "wrong" }],
    [4, "a wrong password", "Not Authorized", ConnackReturnCode.NotAuthorized, { username: "alice", password: "wrong" }],
    [5, "an unknown user", "Not Authorized", ReasonCode.NotAuthorized, { username: "mallory", password: "s3cret" }],
    [4, "an unknown user", "Not Authorized", ConnackReturnCode.NotAuthorized, { username: "mallory", password: "s3cret" }],
    [5, "no credentials", "Not Authorized", ReasonCode.NotAuthorized, {}],
    [4, "no credentials", "Not Authorized", ConnackReturnCode.NotAuthorized, {}],
  ] as const)("protocol %p, %s: refused with ConnectError %s (%p)", async (protocolVersion, _what, name, code, credentials) => {
    const c = clients.make(mosquitto.port, { protocolVersion, connectDelays: [], ...credentials });
    const error = await c.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).reasonCode).toBe(code);
    expect((error as ConnectError).reasonName).toBe(name);
    expect((error as Error).message).toContain(name);
    expect(c.isConnected).toBe(false);
  });
});
