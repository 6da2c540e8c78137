/**
 * A broker in a worker thread (`BrokerThread`) that keeps serving while this script's own
 * thread is busy: here a CPU-bound loop that never yields to the event loop for BUSY seconds.
 * A broker on the main thread (`Broker`) would answer nobody in that time.
 *
 *   bun examples/broker-thread.ts [PORT] [BUSY]
 *
 * PORT defaults to 1883 (0 = any free port), BUSY to 10 seconds. While it is busy, try:
 *   mosquitto_sub -p 1883 -t demo -C 1 &  mosquitto_pub -p 1883 -t demo -m hello
 * (In your own project, import from "mqtttools" instead of "../index".)
 */
import { BrokerThread } from "../index";

const port = Number(process.argv[2] ?? 1883);
const busySeconds = Number(process.argv[3] ?? 10);

// logLevel "info": the Worker writes a line per packet to stderr itself, busy main thread or not
await using thread = new BrokerThread([["0.0.0.0", port]], { logLevel: "info" });
const [bound] = await thread.start(); // resolves once the Worker's listener is bound
console.log(`Listening on port ${bound}.`);

// Busy: count primes without ever awaiting. No timer, socket or signal handler of this thread
// runs until the loop ends; the broker's thread serves clients all the same.
console.log(`Main thread busy for ${busySeconds} s.`);
const until = performance.now() + busySeconds * 1000;
let primes = 0;
for (let n = 2; performance.now() < until; n++) {
  let prime = true;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) { prime = false; break; }
  if (prime) primes++;
}
console.log(`Main thread free again (${primes} primes found); stopping the broker.`);
// `await using` stops the thread here: every client is disconnected and the Worker ends
