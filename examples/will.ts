/**
 * A will message: the broker publishes it for a client whose connection ends without a
 * DISCONNECT (a crash, a lost network, a missed keep alive), and not for one that stops cleanly.
 * Here a "device" announces itself as online (retained) and sets "offline" as its will; a
 * monitor watches its status topic. To crash for real, the device is this script run again as a
 * child process, which exits without stopping its client.
 *
 *   bun examples/will.ts [URL]
 *
 * URL defaults to mqtt://localhost:1883. (In your own project, import from "mqtttools".)
 */
import { Client, Message } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const host = url.hostname;
const port = Number(url.port || 1883);
const status = "status/device-1";

if (process.argv[3] === "device") {
  const device = new Client(host, port, { clientId: "device-1", willTopic: status, willMessage: "offline", willRetain: true, willQos: 1 });
  await device.start();
  await device.publish(new Message(status, "online", { qos: 1, retain: true }));
  console.log("device: online; now crashing without a DISCONNECT.");
  process.exit(1); // the socket closes with the process: no DISCONNECT, so the broker sends the will
}

await using monitor = new Client(host, port);
await monitor.start();
await monitor.subscribe(status, { qos: 1 });

const device = Bun.spawn([process.execPath, import.meta.path, url.href, "device"], { stdout: "inherit", stderr: "inherit" });
for (let message = await monitor.messages.get(); message !== null; message = await monitor.messages.get()) {
  console.log(`monitor: ${message.topic} is ${message.text}${message.retain ? " (retained)" : ""}.`);
  if (message.text === "offline" && !message.retain) break; // a retained one is from an earlier run
}
console.log(`monitor: the device exited with code ${await device.exited}.`);
