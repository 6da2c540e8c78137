/**
 * The original toolkit's publisher, ported: connect, publish one message, disconnect. The
 * `await using` declaration stops the client (DISCONNECT, socket closed) at the end of the scope.
 *
 *   bun examples/publisher.ts [URL] [TEXT]
 *
 * URL defaults to mqtt://localhost:1883, TEXT to "bar". Run `bun examples/subscriber.ts` first
 * to see it arrive. (In your own project, import from "mqtttools" instead of "../index".)
 */
import { Client, Message } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const text = process.argv[3] ?? "bar";

{
  await using client = new Client(url.hostname, Number(url.port || 1883));
  await client.start();
  // QoS 1: publish() resolves once the broker has acknowledged the message
  await client.publish(new Message("test/mqtttools/foo", text, { qos: 1 }));
}
console.log(`Successfully published '${text}' on test/mqtttools/foo.`);
