/**
 * What a test broker costs: `testBroker()` + `testClient()` started and stopped, N times, in-process
 * and in a Worker (`{ thread: true }`); prints the median and p90 of one pair's start-to-stop time.
 *
 *   bun bench/testing.ts          (or: bun run bench:testing)
 */
import { testBroker, testClient } from "../lib/testing";

const N = Number(process.env.BENCH_PAIRS ?? 200);

async function pairs(thread: boolean, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    {
      await using broker = await testBroker({ thread });
      await using _client = await testClient(broker);
    }
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b);
}

const pct = (t: number[], q: number) => t[Math.min(t.length - 1, Math.floor(q * t.length))]!;
await pairs(false, 20); // warm-up
for (const [thread, n] of [[false, N], [true, Math.max(10, N / 10)]] as const) {
  const t = await pairs(thread, n);
  console.log(`${thread ? "in a Worker" : "in-process "}: broker + client started and stopped in p50 ${pct(t, 0.5).toFixed(2)} ms, p90 ${pct(t, 0.9).toFixed(2)} ms (${n} pairs)`);
}
