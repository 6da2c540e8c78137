/**
 * A broker process for the overload tests, with test-only hooks kept out of the library:
 *
 *   bun test/broker/overload-broker.ts
 *   OVERLOAD_OPTIONS='{"maxConnectionRate":100}'   BrokerOptions (JSON) over the defaults
 *   OVERLOAD_MEMORY_HEADROOM=BYTES                 maxMemoryBytes = the RSS at start + BYTES
 *
 * It listens on 127.0.0.1 and a free port, prints "Listening on 127.0.0.1:PORT. Press Ctrl-C to
 * stop." like the CLI (so startBrokerProcess() can run it) and logs at warning level to stderr.
 * SIGUSR1 makes it open /dev/null until EMFILE (as an application sharing the process could),
 * then print "holding N descriptors"; SIGUSR2 closes them again and prints "released". SIGTERM stops it.
 */
import { closeSync, openSync } from "node:fs";
import { Broker, type BrokerInit } from "../../lib/broker/broker";

const options = JSON.parse(process.env.OVERLOAD_OPTIONS ?? "{}") as BrokerInit;
const headroom = process.env.OVERLOAD_MEMORY_HEADROOM;
if (headroom !== undefined) options.maxMemoryBytes = process.memoryUsage.rss() + Number(headroom);
const broker = new Broker([["127.0.0.1", 0]], { logLevel: "warning", ...options });
const [port] = await broker.start();

const held: number[] = [];
process.on("SIGUSR1", () => {
  try {
    for (;;) held.push(openSync("/dev/null", "r"));
  } catch (e) {
    console.error(`holding ${held.length} descriptors (${(e as NodeJS.ErrnoException).code})`);
  }
});
process.on("SIGUSR2", () => {
  for (const fd of held.splice(0)) closeSync(fd);
  console.error("released");
});
process.on("SIGTERM", () => void broker.stop());

console.log(`Listening on 127.0.0.1:${port}. Press Ctrl-C to stop.`);
await broker.serveForever();
process.exit(0);
