/**
 * PUBACK and PUBREC of messages published to the cluster wait until NATS accepted them.
 *
 * The handler asks to write an acknowledgement; when it is for a message that went to the cluster
 * (or an earlier one of the same connection still waits) it joins this turn's batch, and the batch
 * is written once the cluster's accepted() resolves: one NATS flush per event-loop turn, however
 * many messages. Batches are released in the order they were made, and within a connection a later
 * acknowledgement never overtakes an earlier one [MQTT-4.6.0-2] [MQTT-4.6.0-3]. Released
 * acknowledgements go through the connection's output like any other packet, so a persistence
 * commit still gates them (Broker.flushAll).
 */
import type { Packet } from "../../codec/packet";
import { ReasonCode } from "../../codec/reason-codes";
import { ConnState, type Connection } from "../connection";

/** Acknowledgements held until the cluster accepted what they acknowledge. */
export class AckGate {
  /** Acknowledgements held per connection. */
  private held = new Map<Connection, number>();
  private batch: [Connection, Packet][] | null = null;
  private tail: Promise<void> = Promise.resolve();

  /** `accepted` resolves once NATS took what was published so far; `written` flushes the output. */
  constructor(
    private readonly accepted: () => Promise<void>,
    private readonly written: () => void,
  ) {}

  /** Writes `packet` to `conn` now, or once the cluster accepted the message (`waits`) or what the connection's earlier acknowledgements wait for. */
  write(conn: Connection, packet: Packet, waits: boolean): void {
    if (!waits && !this.held.has(conn)) {
      conn.writePacket(packet);
      return;
    }
    this.held.set(conn, (this.held.get(conn) ?? 0) + 1);
    let batch = this.batch;
    if (batch === null) {
      batch = this.batch = [];
      const b = batch;
      queueMicrotask(() => {
        this.batch = null;
        const done = this.accepted().then(
          () => null,
          (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
        );
        this.tail = this.tail.then(() => done).then((error) => this.release(b, error));
      });
    }
    batch.push([conn, packet]);
  }

  /** Writes a batch's acknowledgements; when NATS did not accept, their connections are closed unacknowledged (the clients send again). */
  private release(batch: [Connection, Packet][], error: Error | null): void {
    for (const [conn, packet] of batch) {
      const n = this.held.get(conn)! - 1;
      if (n === 0) this.held.delete(conn);
      else this.held.set(conn, n);
      if (conn.state === ConnState.Closed) continue;
      if (error === null) conn.writePacket(packet);
      else conn.close(ReasonCode.UnspecifiedError, `the cluster did not accept the message: ${error.message}`);
    }
    this.written();
  }
}
