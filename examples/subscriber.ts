/**
 * The original toolkit's subscriber, ported: connect, subscribe, and print every message that
 * arrives, read from `client.messages` (a `null` there means the connection was lost; the client
 * reconnects by itself). `await using` stops the client when the script ends.
 *
 *   bun examples/subscriber.ts [URL] [COUNT]
 *
 * URL defaults to mqtt://localhost:1883; with COUNT it exits after that many messages, else it
 * runs until Ctrl-C. Try it with `bun examples/publisher.ts` in another terminal.
 * (In your own project, import from "mqtttools" instead of "../index".)
 */
import { Client } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const count = Number(process.argv[3] ?? Infinity);

await using client = new Client(url.hostname, Number(url.port || 1883));
await client.start();
await client.subscribe("test/mqtttools/#", { qos: 1 });
console.log("Subscribed.");

let received = 0;
for await (const message of client.messages) {
  if (message === null) {
    console.log("Broker connection lost!");
    continue;
  }
  console.log(`Topic:   ${message.topic}`);
  console.log(`Message: ${message.text}`);
  if (++received >= count) break;
}
