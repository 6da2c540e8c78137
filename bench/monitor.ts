/**
 * Monitor responsiveness: `mqtttools monitor '#'` in a tmux terminal (120 x 40) while a client
 * publishes BENCH_MONITOR_RATE (10 000) msg/s over BENCH_MONITOR_TOPICS (5 000) topics for
 * BENCH_MONITOR_SECONDS (6) s. Every half second it presses `p` and times until the screen shows
 * the change (key to screen); at the end it reports the monitor's CPU share and RSS (ps).
 * There is no peer to compare with: the figures are absolute, for this machine.
 *
 *   bun bench/monitor.ts            (or: bun run bench:monitor; needs tmux)
 */
import { Broker } from "../lib/broker/broker";
import { Client } from "../lib/client/client";
import { Message } from "../lib/client/message";
import { Screen } from "../test/cli/screen";
import { runBench } from "./processes";

const RATE = Number(process.env.BENCH_MONITOR_RATE ?? 10_000);
const SECONDS = Number(process.env.BENCH_MONITOR_SECONDS ?? 6);
const TOPICS = Number(process.env.BENCH_MONITOR_TOPICS ?? 5000);

async function main(): Promise<void> {
  const broker = new Broker([["127.0.0.1", 0]]);
  const [port] = await broker.start();
  const client = new Client("127.0.0.1", port!, { connectDelays: [] });
  await client.start();
  try {
    const screen = Screen.start(["#", "--host", "127.0.0.1", "--port", String(port)], 120, 40);
    await screen.shows("TOPIC & MESSAGE");
    const t0 = performance.now();
    const latencies: number[] = [];
    let sent = 0;
    let nextKey = t0 + 1000;
    let paused = false;
    while (performance.now() - t0 < SECONDS * 1000) {
      const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
      for (; sent < due; sent++) void client.publish(new Message(`load/${sent % TOPICS}/v`, String(sent)));
      if (performance.now() > nextKey) {
        const k0 = performance.now();
        screen.keys("p");
        paused = !paused;
        await screen.until((t) => t.includes("PAUSED") === paused, "the screen shows the toggle");
        latencies.push(performance.now() - k0);
        nextKey = performance.now() + 500;
      }
      await Bun.sleep(1);
    }
    const rate = sent / ((performance.now() - t0) / 1000);
    const shell = screen.format("pane_pid");
    const ps = Bun.spawnSync(["ps", "-o", "pcpu=,rss=", "--ppid", shell]).stdout.toString().trim().split(/\s+/);
    latencies.sort((a, b) => a - b);
    console.log(`monitor bench: bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, ${TOPICS} topics, ${SECONDS} s`);
    console.log(`published ${sent} messages at ${Math.round(rate)} msg/s`);
    console.log(`key to screen (p, ${latencies.length} presses): median ${latencies[latencies.length >> 1]!.toFixed(0)} ms, max ${latencies.at(-1)!.toFixed(0)} ms`);
    console.log(`monitor process: ${ps[0]} % CPU over its life, RSS ${Math.round(Number(ps[1]) / 1024)} MB`);
    screen.keys("q");
    await screen.shows("EXIT=0");
  } finally {
    Screen.killAll();
    await client.stop();
    await broker.stop();
  }
}

await runBench(main, () => Screen.killAll());
