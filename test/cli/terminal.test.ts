/**
 * Issue 20 in a terminal (tmux, see screen.ts): the monitor's key that clears a retained message,
 * clear-retained's question when many topics match, and bench's live lines.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { startBroker } from "../broker/helpers";
import { entry } from "./broker-process";
import { Screen } from "./screen";

let broker: Awaited<ReturnType<typeof startBroker>>;
let client: Client;
let at: string[];

beforeEach(async () => {
  broker = await startBroker();
  at = ["--host", "127.0.0.1", "--port", String(broker.port)];
  client = new Client("127.0.0.1", broker.port, { connectDelays: [] });
  await client.start();
});

afterEach(async () => {
  Screen.killAll();
  await client.stop();
  await broker.stop();
});

const retain = (topic: string, payload: string) => client.publish(new Message(topic, payload, { qos: 1, retain: true }));

/** The retained topics under `filter`, sorted (the UNSUBACK of an unknown filter comes after them). */
async function retainedTopics(filter: string): Promise<string[]> {
  const c = new Client("127.0.0.1", broker.port, { connectDelays: [] });
  const topics: string[] = [];
  c.onMessage = (m) => {
    if (m !== null && m.retain) topics.push(m.topic);
  };
  await c.start();
  await c.subscribe(filter);
  await c.unsubscribe(`barrier/${crypto.randomUUID()}`);
  await c.stop();
  return topics.sort();
}

/** A CLI command (not the monitor) in a tmux pane. */
const command = (subcommand: string, args: string[], width = 120, height = 30) =>
  Screen.start(args, width, height, [process.execPath, entry], undefined, subcommand);

describe("in a terminal", () => {
  test("monitor: c asks, any key but y keeps the retained message, y clears it", async () => {
    await retain("keep/one", "stored");
    const screen = Screen.start(["#", ...at], 110, 20);
    await screen.shows("keep/one");
    expect(await screen.shows("c: Clear retained")).toContain("t: Tree, c: Clear retained");
    screen.keys("c");
    await screen.shows("Clear the retained message of 'keep/one'? y: yes, any other key: no");
    screen.keys("n");
    await screen.shows("Nothing cleared.");
    expect(await retainedTopics("#")).toEqual(["keep/one"]);
    screen.keys("c");
    await screen.shows("Clear the retained message of 'keep/one'?");
    screen.keys("y");
    await screen.shows("Cleared the retained message of 'keep/one'.");
    expect(await retainedTopics("#")).toEqual([]);
    screen.keys("q");
    await screen.shows("EXIT=0");
  });

  test("clear-retained asks when more than --confirm-above topics match; no keeps them, yes clears them", async () => {
    for (const t of ["q/1", "q/2", "q/3"]) await retain(t, "v");
    let screen = command("clear-retained", [...at, "--confirm-above", "2", "q/#"]);
    await screen.shows("Clear 3 retained messages matching q/#?");
    screen.keys("n");
    screen.keys("Enter");
    await screen.shows("EXIT=1");
    expect(screen.text()).toContain("Nothing cleared.");
    expect(await retainedTopics("q/#")).toEqual(["q/1", "q/2", "q/3"]);
    Screen.killAll();
    screen = command("clear-retained", [...at, "--confirm-above", "2", "q/#"]);
    await screen.shows("Clear 3 retained messages matching q/#?");
    screen.keys("y");
    screen.keys("Enter");
    await screen.shows("EXIT=0");
    expect(screen.text()).toContain("Cleared 3 retained message(s).");
    expect(await retainedTopics("q/#")).toEqual([]);
    Screen.killAll();
    // at or below the threshold it does not ask
    await retain("q/4", "v");
    screen = command("clear-retained", [...at, "--confirm-above", "2", "q/#"]);
    await screen.shows("EXIT=0");
    expect(screen.text()).toContain("Cleared 1 retained message(s).");
  });

  test("bench pub prints a live line each second, then the summary", async () => {
    const screen = command("bench", ["pub", ...at, "-c", "3", "--rate", "20", "-d", "2.5", "-t", "live/%i"], 140, 20);
    const live = /\[ {3}[12]s\] connected 3\/3 {2}sent \d+\/s {2}received \d+\/s {2}latency p50 \d+\.\d\d ms p99 \d+\.\d\d ms {2}errors 0/;
    const first = await screen.until((t) => live.test(t), "a live line");
    const sent = Number(/sent (\d+)\/s/.exec(first)![1]);
    expect(sent).toBeGreaterThan(0);
    const end = await screen.shows("EXIT=0");
    expect(end.match(/\[ {3}\ds\] connected/g)!.length).toBeGreaterThanOrEqual(2);
    expect(end).toMatch(/Summary: bench pub, 3 client\(s\), 3 connected, 0 error\(s\), 2\.\d\d seconds\./);
    expect(end).toMatch(/ {2}sent (\d+) \(\d+\/s\), received \1 \(\d+\/s\)/);
  });
});
