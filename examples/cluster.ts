/**
 * Two brokers acting as one on NATS: a subscriber on node A gets what a client of node B
 * publishes, and a retained message set on B reaches a new subscription on A.
 *
 *   bun examples/cluster.ts [NATS_URL]
 *
 * NATS_URL defaults to nats://localhost:4222: start one with `nats-server -js` (Debian's package
 * nats-server). Both nodes run in this process on free ports and stop at the end; in production
 * each is `mqtttools broker --cluster nats://…` on its own machine or core. (In your own project,
 * import from "mqtttools" instead of "../index".)
 */
import { Broker, Client, Message } from "../index";

const nats = process.argv[2] ?? "nats://localhost:4222";
const cluster = { servers: [nats], name: `example${process.pid}` }; // one cluster per run

await using a = new Broker([["127.0.0.1", 0]], { cluster });
await using b = new Broker([["127.0.0.1", 0]], { cluster });
const [portA] = await a.start();
const [portB] = await b.start();
console.log("Two nodes joined the cluster.");

await using subscriber = new Client(`mqtt://127.0.0.1:${portA}`, { clientId: "on-a" });
await subscriber.start();
await subscriber.subscribe("fleet/+/temp", { qos: 1 });
await using publisher = new Client(`mqtt://127.0.0.1:${portB}`, { clientId: "on-b" });
await publisher.start();
await publisher.publish(new Message("fleet/truck-7/temp", "4.5", { qos: 1 })); // PUBACK: NATS has it
const m = await subscriber.messages.get();
console.log(`Node A got ${m?.topic} = ${m?.text} from node B.`);

await publisher.publish(new Message("fleet/truck-7/status", "parked", { qos: 1, retain: true }));
await subscriber.subscribe("fleet/+/status", { qos: 1 }); // the retained message comes from NATS JetStream
const r = await subscriber.messages.get();
console.log(`Node A got the retained ${r?.topic} = ${r?.text}.`);
