/**
 * Shared subscriptions as a worker pool (MQTT 5.0): workers that subscribe to
 * `$share/GROUP/FILTER` share its messages, each message going to one of them, so jobs are
 * spread over the pool instead of every worker doing every job. A plain subscriber to the same
 * filter would still get every message.
 *
 *   bun examples/worker-pool.ts [URL] [JOBS] [WORKERS]
 *
 * URL defaults to mqtt://localhost:1883, JOBS to 30, WORKERS to 3. The workers run in this
 * script, each its own client; in practice they are separate processes or machines.
 * (In your own project, import from "mqtttools" instead of "../index".)
 */
import { Client, Message } from "../index";

const url = new URL(process.argv[2] ?? "mqtt://localhost:1883");
const jobs = Number(process.argv[3] ?? 30);
const workers = Number(process.argv[4] ?? 3);
const host = url.hostname;
const port = Number(url.port || 1883);

const done = new Map<string, number>(); // worker -> jobs it did
const handled = new Set<string>();
let twice = 0;
const finished = Promise.withResolvers<void>();
const pool: Client[] = [];
for (let w = 1; w <= workers; w++) {
  const name = `worker-${w}`;
  const worker = new Client(host, port, { clientId: name });
  worker.onMessage = (job) => {
    if (job === null) return;
    done.set(name, (done.get(name) ?? 0) + 1);
    if (handled.has(job.text)) twice++;
    handled.add(job.text);
    if (handled.size === jobs) finished.resolve();
  };
  await worker.start();
  await worker.subscribe("$share/pool/jobs/+", { qos: 1 });
  pool.push(worker);
}

await using producer = new Client(host, port);
await producer.start();
for (let j = 1; j <= jobs; j++) await producer.publish(new Message("jobs/resize", `job-${j}`, { qos: 1 }));
await finished.promise;

for (const [name, n] of [...done].sort()) console.log(`${name} did ${n} jobs.`);
console.log(`${handled.size} of ${jobs} jobs done, ${twice} of them twice.`);
for (const worker of pool) await worker.stop();
