/**
 * Reconnecting. The client reconnects by itself after a lost connection, waiting
 * `reconnectDelays` seconds between attempts; `onConnect` is called for every connection made,
 * and `client.messages` yields `null` when one is lost. Subscriptions are made again whenever
 * the broker has no session for us (here always: no session expiry).
 *
 *   bun examples/reconnect.ts [URL] [COUNT]
 *
 * URL defaults to mqtt://localhost:1883; it exits after COUNT messages on test/reconnect (default:
 * never). Restart the broker while it runs, and publish with `bun examples/publisher.ts` or
 * `mosquitto_pub -t test/reconnect -m hi`. (In your own project, import from "mqtttools".)
 */
import { Client } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const count = Number(process.argv[3] ?? Infinity);

await using client = new Client(url.hostname, Number(url.port || 1883), {
  subscriptions: ["test/reconnect"], // made by start() and after each reconnect to a new session
  connectDelays: [0.1, 0.5, 1, 2],   // start(): retries until the broker is there
  reconnectDelays: [0.1, 0.5, 1, 2], // after a lost connection; the last delay repeats forever
});
client.onConnect = ({ sessionPresent, reconnected }) =>
  console.log(`${reconnected ? "Reconnected" : "Connected"} (session present: ${sessionPresent}).`);
await client.start();

let received = 0;
for await (const message of client.messages) {
  if (message === null) {
    console.log(`Connection lost (${client.lastError?.message ?? "closed"}); reconnecting.`);
    continue;
  }
  console.log(`Got '${message.text}' on ${message.topic}.`);
  if (++received >= count) break;
}
