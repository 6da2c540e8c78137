#!/usr/bin/env bun
/**
 * mqtttools: MQTT 5.0 and 3.1.1 for Bun. This module is the library entry; run as a program
 * (`bun index.ts`, the `mqtttools` bin, or the compiled executable) it is the CLI.
 */
export * from "./lib/codec";

if (import.meta.main) {
  const { main } = await import("./commands/cli");
  process.exitCode = await main(process.argv.slice(2));
}
