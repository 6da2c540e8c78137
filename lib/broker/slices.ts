/** How long large work may hold the event loop before it goes on in the next turn. */

/**
 * Longest a slice of large work runs before the event loop gets a turn (sending the retained
 * messages a subscription matches, removing an ended session's subscriptions, a long UNSUBSCRIBE,
 * a /metrics pass).
 */
export const SLICE_MS = 1;

/**
 * Longest one read of a connection is handled before the rest waits for the next turn of the loop:
 * two SLICE_MS, so that an ordinary read (64 KB of PUBLISH packets to ten subscribers, about 1.3 ms
 * here) is handled whole, and its socket is not paused and resumed; and short, since every other
 * client waits behind it.
 */
export const READ_SLICE_MS = 2 * SLICE_MS;
