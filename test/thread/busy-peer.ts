/**
 * A peer in its own process for the busy-main-thread test: MQTT.js subscribes, publishes N QoS 1
 * messages to itself, and writes what it received to RESULT_FILE.
 * Usage: bun busy-peer.ts URL N RESULT_FILE
 */
import { writeFileSync } from "node:fs";
import mqtt from "mqtt";

const [url, n, resultFile] = process.argv.slice(2) as [string, string, string];
const count = Number(n);
const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, protocolVersion: 5, clientId: `busy-peer-${process.pid}` });
const received: string[] = [];
const all = Promise.withResolvers<void>();
client.on("message", (_topic, payload) => {
  received.push(payload.toString());
  if (received.length === count) all.resolve();
});
await client.subscribeAsync("busy/#", { qos: 1 });
await Promise.all(Array.from({ length: count }, (_, i) => client.publishAsync(`busy/${i % 10}`, String(i), { qos: 1 })));
await all.promise;
await client.endAsync();
writeFileSync(resultFile, JSON.stringify({ received }));
