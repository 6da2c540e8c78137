/**
 * The Worker entry of BrokerThread: runs the same Broker as the main thread would, driven by the
 * messages of messages.ts. Listed as an entrypoint of `bun run build` so that the compiled
 * executable carries it.
 */
import { Broker } from "../broker/broker";
import { serializeError, type FromWorker, type ToWorker } from "./messages";

declare const self: Worker;

let broker: Broker | null = null;

const post = (m: FromWorker) => self.postMessage(m);

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const m = event.data;
  try {
    switch (m.type) {
      case "start": {
        const logger = m.forwardLog ? (line: string) => post({ type: "log", line }) : undefined;
        const b = new Broker(m.addresses, logger === undefined ? m.options : { ...m.options, logger });
        const ports = await b.start();
        broker = b;
        post({ type: "started", ports, recovery: b.recovery, httpPort: b.httpPort });
        break;
      }
      case "stop":
        await broker?.stop();
        broker = null;
        post({ type: "stopped" });
        break;
    }
  } catch (e) {
    post({ type: "failed", error: serializeError(e) });
  }
};
