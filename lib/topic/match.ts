/**
 * The reference matcher: does a topic name match a topic filter (section 4.7)? Simple and slow on
 * purpose; the trie is tested against it with one shared case table.
 */
export function topicMatches(filter: string, topic: string): boolean {
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic starting with '$'
  if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false;
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true; // matches the parent level and any number of children [MQTT-4.7.1-1]
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * True when every topic `filter` can match is also matched by `cover` (a denied filter covers the
 * filters beneath it): 'a/#' covers 'a/b', 'a/+' and 'a/#'; 'a/+' covers 'a/b' and 'a/+' but not 'a/#'.
 */
export function filterCovers(cover: string, filter: string): boolean {
  const c = cover.split("/");
  const f = filter.split("/");
  for (let i = 0; i < c.length; i++) {
    if (c[i] === "#") return !(i === 0 && filter.startsWith("$") && !cover.startsWith("$")); // [MQTT-4.7.2-1]
    if (i >= f.length) return false;
    // '#' also matches its parent, which '+/#' does not, unless the parent is empty: no topic name [MQTT-4.7.3-1]
    if (f[i] === "#") return c[i] === "+" && c.length === i + 2 && c[i + 1] === "#" && f.slice(0, i).join("/") === "";
    if (c[i] === "+") {
      if (i === 0 && f[0]!.startsWith("$")) return false; // [MQTT-4.7.2-1]
      continue;
    }
    if (c[i] !== f[i]) return false;
  }
  return c.length === f.length;
}
