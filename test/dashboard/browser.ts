/**
 * A headless Debian chromium (/usr/bin/chromium, installed by .ci/run) driven by playwright-core,
 * for the dashboard tests: a fresh profile directory per browser, removed on close, and every
 * console error and page error a page reports collected.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";

/** Where Debian's chromium package puts the browser. */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** A browser with its profile directory. */
export interface TestBrowser {
  context: BrowserContext;
  /** A new page whose console errors and uncaught exceptions land in `errors`. */
  page(): Promise<{ page: Page; errors: string[] }>;
  close(): Promise<void>;
}

/** Launches headless chromium; throws (never skips) when it is not installed. */
export async function launchChromium(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is not installed: the dashboard tests need Debian's chromium package (apt-get install chromium)`);
  const profile = mkdtempSync(join(tmpdir(), "mqtttools-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  return {
    context,
    async page() {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(`console: ${m.text()}`);
      });
      page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
      return { page, errors };
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
