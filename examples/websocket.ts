/**
 * MQTT over WebSocket: one broker listening for plain MQTT and for WebSocket clients (path /mqtt),
 * a subscriber that connects with a ws:// URL, as a web page would, and a publisher over TCP.
 * Messages cross between the two transports as if both were TCP.
 *
 *   bun examples/websocket.ts [MESSAGE]
 *
 * It starts its own broker on free ports and stops it at the end. (In your own project, import
 * from "mqtttools" instead of "../index".)
 */
import { Broker, Client, Message } from "../index";

const text = process.argv[2] ?? "over two transports";

// one TCP listener and one WebSocket listener, both on a free port
await using broker = new Broker([["127.0.0.1", 0], ["127.0.0.1", 0, { websocket: true, path: "/mqtt" }]]);
const [tcpPort, wsPort] = await broker.start();

await using subscriber = new Client(`ws://127.0.0.1:${wsPort}/mqtt`, { clientId: "browser-like" });
await subscriber.start();
await subscriber.subscribe("demo/ws", { qos: 1 });
console.log("Subscribed over WebSocket.");

await using publisher = new Client(`mqtt://127.0.0.1:${tcpPort}`, { clientId: "tcp-publisher" });
await publisher.start();
await publisher.publish(new Message("demo/ws", text, { qos: 1 }));

const m = await subscriber.messages.get();
console.log(`Received over WebSocket: ${m?.text}`);
