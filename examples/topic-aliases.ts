/**
 * Topic aliases (MQTT 5.0): a long topic name is sent once with a number, then only the number.
 * `topicAliases` lists the topics this client publishes with an alias (up to the broker's Topic
 * Alias Maximum); `topicAliasMaximum` (default 10) lets the broker do the same towards us. The
 * packet log (logLevel "info") shows the topic going out with the first PUBLISH only, and coming
 * in the same way. Received messages carry the full topic name either way.
 *
 *   bun examples/topic-aliases.ts [URL]
 *
 * URL defaults to mqtt://localhost:1883. (In your own project, import from "mqtttools".)
 */
import { Client, Message } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const topic = "building/north-wing/floor-3/room-301/sensors/temperature";

await using client = new Client(url.hostname, Number(url.port || 1883), {
  topicAliases: [topic],   // we use alias 1 for this topic
  topicAliasMaximum: 10,   // the broker may use up to 10 aliases towards us
  logLevel: "info",
  logger: (line) => { if (/PUBLISH/.test(line)) console.log(line.replace(/^\S+ info: /, "")); },
});
await client.start();
await client.subscribe(topic);

for (const reading of ["21.5", "21.6", "21.8"]) {
  await client.publish(new Message(topic, reading, { qos: 1 }));
  const message = await client.messages.get();
  console.log(`Received ${message}`);
}
