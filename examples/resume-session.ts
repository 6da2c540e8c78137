/**
 * Resuming a session. With a fixed client id and a Session Expiry Interval, the broker keeps our
 * subscriptions and queues QoS 1/2 messages for us while we are away. `start({ resumeSession:
 * true })` throws SessionResumeError when the broker had no session (first run, expired, or the
 * broker restarted without persistence); the client is connected all the same, to a new session.
 *
 *   bun examples/resume-session.ts [URL] [COUNT]
 *
 * URL defaults to mqtt://localhost:1883. It reads COUNT messages (default 0) and leaves; the
 * session outlives it by 5 minutes. Run it once, publish while it is away
 * (`mosquitto_pub -t test/resume -q 1 -m hi`), then run it again with COUNT 1.
 * (In your own project, import from "mqtttools" instead of "../index".)
 */
import { Client, SessionResumeError } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const count = Number(process.argv[3] ?? 0);

await using client = new Client(url.hostname, Number(url.port || 1883), {
  clientId: "mqtttools-resume-example",
  sessionExpiryInterval: 300,
});
try {
  await client.start({ resumeSession: true });
  console.log("Session resumed.");
} catch (e) {
  if (!(e instanceof SessionResumeError)) throw e;
  console.log("No session to resume; subscribing to test/resume.");
  await client.subscribe("test/resume", { qos: 1 }); // QoS 1: kept for us while we are away
}

for (let i = 0; i < count; i++) {
  const message = await client.messages.get();
  if (message === null) {
    console.log("Broker connection lost!");
    break;
  }
  console.log(`Got '${message.text}' on ${message.topic}.`);
}
