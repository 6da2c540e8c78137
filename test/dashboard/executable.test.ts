/**
 * The dashboard from the compiled executable (`bun run build`, into a temporary directory, run
 * from there so nothing is read from the sources): the page, bundled into the executable, loads in
 * chromium without console errors and shows a topic published to the broker, on the main thread
 * and with --thread (the broker in a worker).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { Client } from "../../lib/client/client";
import { Message } from "../../lib/client/message";
import { finished } from "../broker/helpers";
import { startBrokerProcess, tempDir } from "../cli/broker-process";
import { launchChromium, type TestBrowser } from "./browser";

const root = new URL("../..", import.meta.url).pathname;
let tmp: ReturnType<typeof tempDir>;
let exe: string;
let browser: TestBrowser;

beforeAll(async () => {
  tmp = tempDir();
  exe = join(tmp.dir, "mqtttools");
  const build = pkg.scripts.build.replace("dist/mqtttools", exe).split(" ");
  const r = await finished(Bun.spawn([process.execPath, ...build.slice(1)], { cwd: root, stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
  if (r.code !== 0) throw new Error(`the build failed: ${r.stderr}`);
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  tmp?.remove();
});

describe("the dashboard from the compiled executable", () => {
  test.each([[[] as string[]], [["--thread"]]])("broker %p --http-port 0 --ws-port 0: the page loads and shows a published topic", async (extra) => {
    const b = await startBrokerProcess(["broker", ...extra, "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--ws-port", "0"], [exe], tmp.dir);
    const { page, errors } = await browser.page();
    const client = new Client("127.0.0.1", b.ports[0]!, { clientId: "dashboard-exe-test", connectDelays: [] });
    try {
      const http = Number(/^HTTP on 127\.0\.0\.1:(\d+):/m.exec(b.stdout)![1]);
      expect(b.ports[1]).toBe(http); // --ws-port 0 with --http-port 0: one listener serves both
      await page.goto(`http://127.0.0.1:${http}/`);
      await page.waitForFunction(() => document.getElementById("status")!.textContent!.startsWith("live:"), undefined, { timeout: 10_000 });
      await client.start();
      await client.publish(new Message("exe/topic", '{"ok":true}'));
      await page.waitForSelector('#tree li[data-topic="exe/topic"]', { timeout: 10_000 });
      await page.locator('#clients tr[data-client-id="dashboard-exe-test"]').waitFor({ timeout: 10_000 });
      expect(errors).toEqual([]);
    } finally {
      await client.stop();
      await page.close();
      expect(await b.stop()).toBe(0);
    }
  });
});
