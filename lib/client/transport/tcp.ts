/** The client's TCP (or TLS) transport on Bun.connect. */
import type { TLSOptions } from "bun";
import type { ClientTransport, TransportEvents } from "./transport";

/** Connects over TCP (TLS with `tls`); rejects as Bun.connect does. A Bun socket is a ClientTransport as it is. */
export async function connectTcp(host: string, port: number, tls: boolean | TLSOptions | undefined, events: TransportEvents): Promise<ClientTransport> {
  return await Bun.connect({
    hostname: host,
    port,
    tls: tls || undefined, // not `{}` for true: Bun takes an empty options object for plain TCP
    socket: {
      data: (_s, data) => events.data(data),
      drain: () => events.drain(),
      close: () => events.close(),
      error: (_s, e) => events.error(e),
      // Bun closes a TLS connection whose certificate it rejects: say why
      handshake: (_s, ok, e) => { if (!ok && e !== null) events.error(new Error(`TLS handshake failed: ${e.message}`)); },
      connectError: () => undefined,
    },
  });
}
