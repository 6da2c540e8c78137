/**
 * A benchmark-style publish count in a `bun test` suite: the handler under test subscribes to a
 * broker started for the test, measurePublishes() sends 100 000 QoS 1 messages, and the counts
 * prove that none was lost, neither by the broker (the kit's own subscriber) nor by the handler.
 * It fails when a change makes the handler drop messages or fall far behind.
 *
 *   bun test examples/publish-count.test.ts
 *
 * (In your own project, import from "mqtttools" and "mqtttools/testing".)
 */
import { expect, test } from "bun:test";
import type { Client } from "../index";
import { measurePublishes, testBroker, testClient } from "../lib/testing";

/** The code under test: records each reading's sequence number (bytes 8-11 of what measurePublishes sends). */
class ReadingHandler {
  readonly seen: Uint8Array;
  count = 0;
  duplicates = 0;

  constructor(readonly client: Client, capacity: number) {
    this.seen = new Uint8Array(capacity);
    client.onMessage = (message) => {
      if (message === null) return;
      const seq = new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(8, true);
      if (this.seen[seq] === 1) this.duplicates++;
      else {
        this.seen[seq] = 1;
        this.count++;
      }
    };
  }

  async start(topic: string): Promise<void> {
    await this.client.subscribe(topic, { qos: 1 });
  }
}

test("my handler keeps up with 100 000 QoS 1 messages and loses none", async () => {
  const count = 100_000;
  await using broker = await testBroker();
  await using client = await testClient(broker);
  const handler = new ReadingHandler(client, count);
  await handler.start("readings/#");

  const result = await measurePublishes({ url: broker, topic: "readings/meter-1", count, qos: 1, concurrency: 100 });
  console.log(`${result.received} received at ${Math.round(result.rate)} msg/s, latency p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms`);

  expect(result.sent).toBe(count);     // every publish acknowledged
  expect(result.received).toBe(count); // and delivered
  // the handler's own subscription got them too; it may still be at work on the last ones
  for (const deadline = Date.now() + 5000; handler.count < count && Date.now() < deadline; ) await Bun.sleep(10);
  expect(handler.count).toBe(count);
  expect(handler.duplicates).toBe(0);
  expect(result.rate).toBeGreaterThan(10_000); // msg/s: far below this machine's figure, far above a broken one
}, 30_000);
