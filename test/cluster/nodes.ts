/** Test helpers for cluster nodes: a broker process joined to NATS servers, and our client on one. */
import { afterAll, beforeAll } from "bun:test";
import { Client, type ClientOptions } from "../../lib/client/client";
import { startBrokerProcess, type BrokerProcess } from "../cli/broker-process";
import { NatsServer } from "./nats-server";

/** Starts a broker node on a free port, joined to `servers`. */
export function node(servers: string[], ...extra: string[]): Promise<BrokerProcess> {
  return startBrokerProcess(["broker", "-p", "0", "--host", "127.0.0.1", "--cluster", servers.join(","), "--sys-interval", "0", "--log-level", "warning", ...extra]); // a later -p wins
}

/** Our client, connected to a node (never reconnecting); it goes into `clients`, for the test's cleanup. */
export async function ours(clients: Client[], n: BrokerProcess, clientId: string, options: ClientOptions = {}): Promise<Client> {
  const c = new Client("127.0.0.1", n.ports[0]!, { clientId, connectDelays: [], reconnectDelays: [], ...options });
  clients.push(c);
  await c.start();
  return c;
}

/** The mqtt:// URL of a node. */
export const urlOf = (n: BrokerProcess) => `mqtt://127.0.0.1:${n.ports[0]}`;

/** A nats-server with JetStream and three nodes on it, started before the tests of the describe block it is called in and stopped after them. */
export function threeNodes(): { nats: NatsServer; nodes: BrokerProcess[] } {
  const ctx = { nats: null as unknown as NatsServer, nodes: [] as BrokerProcess[] };
  beforeAll(async () => {
    ctx.nats = await NatsServer.start();
    ctx.nodes = await Promise.all([node([ctx.nats.url]), node([ctx.nats.url]), node([ctx.nats.url])]);
  });
  afterAll(async () => {
    await Promise.all(ctx.nodes.map((n) => n.proc.exitCode === null && n.stop()));
    await ctx.nats?.stop();
  });
  return ctx;
}

/** Waits for `p`, failing after `ms` with what `why()` says (the nodes' logs, say) rather than at the test's timeout. */
export async function waitFor<T>(p: Promise<T>, ms: number, why: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(why())), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
