/** The client's message queue: get() waits for the next item; also an async iterator. */
import type { Message } from "./message";

/** An unbounded FIFO of received messages, with `null` marking a lost connection. */
export class MessageQueue implements AsyncIterable<Message | null> {
  private items: (Message | null)[] = [];
  private head = 0;
  private waiters: ((m: Message | null) => void)[] = [];

  /** Adds a message (or null), waking one waiting get(). */
  put(m: Message | null): void {
    const w = this.waiters.shift();
    if (w !== undefined) w(m);
    else this.items.push(m);
  }

  /** The next message, or null when the connection to the broker was lost; waits when empty. */
  get(): Promise<Message | null> {
    if (this.head < this.items.length) {
      const m = this.items[this.head]!;
      this.items[this.head++] = null;
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve(m);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Number of messages waiting. */
  get size(): number {
    return this.items.length - this.head;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Message | null> {
    for (;;) yield await this.get();
  }
}
