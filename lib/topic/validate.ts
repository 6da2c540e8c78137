/** Topic name and topic filter rules of MQTT 5.0 section 4.7. */

/** Why a topic filter is invalid, or null when it is valid. [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] */
export function topicFilterError(filter: string): string | null {
  if (filter.length === 0) return "a topic filter must be at least one character long"; // [MQTT-4.7.3-1]
  if (filter.length > 65535) return "a topic filter is longer than 65535 bytes";
  for (let i = 0; i < filter.length; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0x23 /* # */) {
      if ((i > 0 && filter.charCodeAt(i - 1) !== 0x2f) || i !== filter.length - 1) {
        return `'#' must be the last character and occupy a whole level in '${filter}'`; // [MQTT-4.7.1-1]
      }
    } else if (c === 0x2b /* + */) {
      if ((i > 0 && filter.charCodeAt(i - 1) !== 0x2f) || (i < filter.length - 1 && filter.charCodeAt(i + 1) !== 0x2f)) {
        return `'+' must occupy a whole level in '${filter}'`; // [MQTT-4.7.1-2]
      }
    } else if (c === 0) {
      return "a topic filter must not contain U+0000"; // [MQTT-4.7.3-2]
    }
  }
  return null;
}

/** Why a topic name is invalid, or null when it is valid. [MQTT-3.3.2-2] [MQTT-4.7.3-1] */
export function topicNameError(topic: string): string | null {
  if (topic.length === 0) return "a topic name must be at least one character long"; // [MQTT-4.7.3-1]
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x23 || c === 0x2b) return `a topic name must not contain '${topic[i]}'`; // [MQTT-3.3.2-2]
    if (c === 0) return "a topic name must not contain U+0000"; // [MQTT-4.7.3-2]
  }
  return null;
}

/** True when the filter contains a wildcard. */
export function hasWildcard(filter: string): boolean {
  return filter.includes("+") || filter.includes("#");
}

/** A parsed `$share/{ShareName}/{filter}` (section 4.8.2), or null for an ordinary filter. */
export interface SharedFilter {
  shareName: string;
  filter: string;
}

/**
 * Parses a shared subscription filter. Throws a string reason when it starts with `$share/` but
 * is not well formed [MQTT-4.8.2-1] [MQTT-4.8.2-2].
 */
export function parseShared(filter: string): SharedFilter | null | string {
  if (!filter.startsWith("$share/")) return null;
  const rest = filter.slice(7);
  const slash = rest.indexOf("/");
  const shareName = slash < 0 ? rest : rest.slice(0, slash);
  if (shareName.length === 0) return "a shared subscription needs a share name"; // [MQTT-4.8.2-1]
  if (shareName.includes("+") || shareName.includes("#")) return `share name '${shareName}' must not contain '+' or '#'`; // [MQTT-4.8.2-2]
  if (slash < 0 || slash === rest.length - 1) return "a shared subscription needs a topic filter after the share name"; // [MQTT-4.8.2-2]
  return { shareName, filter: rest.slice(slash + 1) };
}
