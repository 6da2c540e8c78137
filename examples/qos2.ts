/**
 * QoS 2, exactly once: each message goes through PUBLISH, PUBREC, PUBREL, PUBCOMP between the
 * publisher and the broker (and again between the broker and the subscriber), so a message that
 * is re-sent after a lost connection is still delivered once. publish() resolves on PUBCOMP.
 * The publisher's packet log shows the four packets of the first message; the subscriber counts
 * what arrives and checks for duplicates and gaps.
 *
 *   bun examples/qos2.ts [URL] [COUNT]
 *
 * URL defaults to mqtt://localhost:1883, COUNT to 1000. (In your own project, import from "mqtttools".)
 */
import { Client, Message } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const count = Number(process.argv[3] ?? 1000);
const host = url.hostname;
const port = Number(url.port || 1883);

await using subscriber = new Client(host, port);
await subscriber.start();
await subscriber.subscribe("test/qos2", { qos: 2 });
const seen = new Map<number, number>(); // sequence number -> times received
const all = Promise.withResolvers<void>();
subscriber.onMessage = (message) => {
  if (message === null) return;
  const n = Number(message.text);
  seen.set(n, (seen.get(n) ?? 0) + 1);
  if (seen.size === count) all.resolve();
};

let logging = false; // the packet log of the first message only
await using publisher = new Client(host, port, {
  logLevel: "info",
  logger: (line) => { if (logging) console.log(line.replace(/^\S+ info: /, "")); },
});
await publisher.start();
logging = true;
await publisher.publish(new Message("test/qos2", "0", { qos: 2 })); // resolves on PUBCOMP
logging = false;
// the rest, 10 at a time
let next = 1;
await Promise.all(Array.from({ length: 10 }, async () => {
  while (next < count) await publisher.publish(new Message("test/qos2", String(next++), { qos: 2 }));
}));
await all.promise;

const duplicates = [...seen.values()].filter((times) => times > 1).length;
const missing = Array.from({ length: count }, (_, n) => n).filter((n) => !seen.has(n)).length;
console.log(`Received ${seen.size} of ${count} messages: ${duplicates} duplicates, ${missing} missing.`);
