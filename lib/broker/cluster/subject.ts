/**
 * MQTT topics and filters as NATS subjects and JetStream KV keys, reversibly.
 *
 * NATS splits subjects into tokens at '.', a token may not be empty or hold white space, and a
 * token that is exactly '*' or '>' is a wildcard. MQTT levels may be empty ('a//b', '/a') and hold
 * any character but '+' and '#' (and those only as whole levels of a filter). nats-server's own
 * MQTT gateway maps '/' to '.', marks empty levels with a '/' token and turns '.' into '//' and
 * ' ' into '_' (the last is not reversible). Here every level is escaped on its own instead:
 *
 * - a level is one token; an empty level is the token '%', which no escaped level can be;
 * - '%', '.', '*', '>', white space and control characters become %XX (hex of the character);
 *   anything else, UTF-8 included, stays as it is;
 * - filter levels '+' and '#' become the wildcards '*' and '>'; 'a/#' also matches 'a' in MQTT
 *   [MQTT-4.7.1-2], so it takes two subjects, 'a.>' and 'a';
 * - topics whose first level starts with '$' live under a root of their own ('s', the others
 *   under 't'), so '#' and '+/...' never take interest in them [MQTT-4.7.2-1].
 *
 * A subject is `{prefix}.t.{levels}` or `{prefix}.s.{levels}` for a QoS 0 message, and
 * `{prefix}.T.{levels}` or `{prefix}.S.{levels}` for a QoS 1 or 2 one: the upper-case roots are
 * the ones the JetStream message stream keeps. KV keys allow only
 * [-/_=.A-Za-z0-9], so the same scheme with '=' as the escape (of every other UTF-8 byte) and '='
 * alone for an empty level gives the retained messages' keys: `t.{levels}` / `s.{levels}`.
 */

const HEX = "0123456789ABCDEF";

/** True for characters a subject token must not hold as they are. */
function subjectUnsafe(c: number): boolean {
  return c <= 0x20 || c === 0x7f || c === 0x25 /* % */ || c === 0x2e /* . */ || c === 0x2a /* * */ || c === 0x3e /* > */;
}

/** One topic level as one subject token. */
export function escapeLevel(level: string): string {
  if (level.length === 0) return "%";
  let out: string | null = null;
  for (let i = 0; i < level.length; i++) {
    const c = level.charCodeAt(i);
    if (subjectUnsafe(c)) {
      out ??= level.slice(0, i);
      out += "%" + HEX[c >> 4]! + HEX[c & 15]!;
    } else if (out !== null) out += level[i]!;
  }
  return out ?? level;
}

/** The topic level a subject token stands for. */
export function unescapeLevel(token: string): string {
  if (token === "%") return "";
  if (!token.includes("%")) return token;
  return token.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** The root token of a topic or filter: 's' when its first level starts with '$', else 't'; upper case for the kept (QoS 1 and 2) roots. */
function root(topicOrFilter: string, kept = false): string {
  const dollar = topicOrFilter.charCodeAt(0) === 0x24;
  return kept ? (dollar ? "S" : "T") : dollar ? "s" : "t";
}

/** The roots the message stream keeps: `{prefix}.T.>` and `{prefix}.S.>`. */
export const KEPT_ROOTS = ["T", "S"] as const;

/** The subject a topic is published on: at QoS 0, or (`kept`) at QoS 1 or 2, where the message stream keeps it. */
export function topicToSubject(prefix: string, topic: string, kept = false): string {
  // the common case, one pass and no array: nothing to escape and no empty level, so '/' becomes '.'
  const n = topic.length;
  let plain = n > 0 && topic.charCodeAt(0) !== 0x2f && topic.charCodeAt(n - 1) !== 0x2f;
  for (let i = 0; plain && i < n; i++) {
    const c = topic.charCodeAt(i);
    if (subjectUnsafe(c) || (c === 0x2f && topic.charCodeAt(i + 1) === 0x2f)) plain = false;
  }
  return `${prefix}.${root(topic, kept)}.${plain ? topic.replaceAll("/", ".") : topic.split("/").map(escapeLevel).join(".")}`;
}

/** The topic of a subject made by topicToSubject (null when it is not one). */
export function subjectToTopic(prefix: string, subject: string): string | null {
  if (!subject.startsWith(prefix + ".") || subject.length < prefix.length + 4) return null;
  return subject.slice(prefix.length + 3).split(".").map(unescapeLevel).join("/");
}

/** Turns filter levels into tokens with `escape`; '#' takes a second form without it (the parent level). */
function filterForms(filter: string, escape: (level: string) => string): string[][] {
  const levels = filter.split("/");
  const tokens = levels.map((l) => (l === "+" ? "*" : l === "#" ? ">" : escape(l)));
  if (levels[levels.length - 1] === "#" && levels.length > 1) return [tokens, tokens.slice(0, -1)];
  return [tokens];
}

/** The subjects that carry every topic a (valid, non-shared) filter matches at any QoS, and nothing else. */
export function filterToSubjects(prefix: string, filter: string): string[] {
  const forms = filterForms(filter, escapeLevel).map((t) => t.join("."));
  return [root(filter), root(filter, true)].flatMap((r) => forms.map((f) => `${prefix}.${r}.${f}`));
}

/** True for characters a KV key token keeps as they are. */
function keySafe(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f;
}

const utf8 = new TextEncoder();

/** One topic level as one KV key token. */
function keyLevel(level: string): string {
  if (level.length === 0) return "=";
  let out = "";
  for (const b of utf8.encode(level)) out += keySafe(b) ? String.fromCharCode(b) : "=" + HEX[b >> 4]! + HEX[b & 15]!;
  return out;
}

/** The KV key of a retained message's topic. */
export function topicToKey(topic: string): string {
  return `${root(topic)}.${topic.split("/").map(keyLevel).join(".")}`;
}

const utf8d = new TextDecoder();

/** The topic of a KV key made by topicToKey. */
export function keyToTopic(key: string): string {
  return key
    .slice(2)
    .split(".")
    .map((t) => {
      if (t === "=") return "";
      if (!t.includes("=")) return t;
      const bytes: number[] = [];
      for (let i = 0; i < t.length; i++) {
        if (t[i] === "=") {
          bytes.push(parseInt(t.slice(i + 1, i + 3), 16));
          i += 2;
        } else bytes.push(t.charCodeAt(i));
      }
      return utf8d.decode(new Uint8Array(bytes));
    })
    .join("/");
}

/** The KV key filters that cover every retained topic a filter matches (with wildcards '*' and '>'). */
export function filterToKeys(filter: string): string[] {
  const r = root(filter);
  return filterForms(filter, keyLevel).map((t) => `${r}.${t.join(".")}`);
}
