#!/usr/bin/env bun
/**
 * mqtttools: MQTT 5.0 and 3.1.1 for Bun. This module is the library entry; run as a program
 * (`bun index.ts`, the `mqtttools` bin, or the compiled executable) it is the CLI.
 */
export * from "./lib/codec";
export { Broker, type BrokerInit, type LogLevel } from "./lib/broker/broker";
export { BrokerThread } from "./lib/thread/broker-thread";
export { PasswordFileError } from "./lib/broker/auth";
export { AclFileError } from "./lib/broker/acl";
export { PersistenceError } from "./lib/broker/store/journal";
export { Client, type ClientOptions, type SubscribeOptions } from "./lib/client/client";
export { Message, type MessageOptions } from "./lib/client/message";
export { MessageQueue } from "./lib/client/queue";
export { ClientError, PublishError, ConnectError, ConnectionLostError, ConnectionRefusedError, ProtocolError, SessionResumeError, SubscribeError, TimeoutError, UnsubscribeError } from "./lib/client/errors";
export { DEFAULT_OPTIONS, type Address, type Addresses, type BrokerOptions, type WebSocketListenerOptions } from "./lib/broker/options";

if (import.meta.main) {
  const { main } = await import("./commands/cli");
  process.exitCode = await main(process.argv.slice(2));
}
