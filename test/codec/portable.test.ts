/**
 * The codec without Bun's Buffer (as in a browser, where the dashboard's Client runs): the
 * fallbacks (TextEncoder.encodeInto, the JS byte count) must encode every fixture to the same bytes,
 * and long non-ASCII strings too. Run in a child process whose Buffer is deleted before the codec loads.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

const script = `
delete globalThis.Buffer;
if (typeof Buffer !== "undefined") throw new Error("Buffer is still there");
const { encodePacket, PacketType, NO_PROPERTIES } = await import(${JSON.stringify(join(import.meta.dir, "../../lib/codec/index.ts"))});
const { FIXTURES } = await import(${JSON.stringify(join(import.meta.dir, "../fixtures/packets.ts"))});
const out = [];
for (const f of FIXTURES) out.push([f.name, Array.from(encodePacket(f.packet, f.version)).join(",") === f.bytes.join(",")]);
const long = "sensors/küche/température/ünïcödé/🌡/" + "x".repeat(40);
const p = { type: PacketType.PUBLISH, qos: 0, retain: false, dup: false, packetId: 0, topic: long, payload: new Uint8Array([1]), properties: NO_PROPERTIES };
for (let i = 0; i < 3; i++) out.push(["long " + i, Array.from(encodePacket(p, 5)).join(",")]);
console.log(JSON.stringify(out));
`;

test("without Buffer, every fixture encodes to its bytes and long UTF-8 strings as with Buffer", async () => {
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  const [text, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);
  const results = JSON.parse(text) as [string, boolean | string][];
  const fixtures = results.filter(([name]) => !name.startsWith("long "));
  expect(fixtures.length).toBeGreaterThan(20);
  expect(fixtures.filter(([, same]) => same !== true)).toEqual([]);
  const { encodePacket, PacketType, NO_PROPERTIES } = await import("../../lib/codec");
  const long = "sensors/küche/température/ünïcödé/🌡/" + "x".repeat(40);
  const expected = Array.from(encodePacket({ type: PacketType.PUBLISH, qos: 0, retain: false, dup: false, packetId: 0, topic: long, payload: new Uint8Array([1]), properties: NO_PROPERTIES }, 5)).join(",");
  for (const [, bytes] of results.filter(([name]) => name.startsWith("long "))) expect(bytes).toBe(expected);
});
