/**
 * Authorization with an access control file in Mosquitto's `acl_file` format, so that one file
 * serves both brokers:
 *
 *   topic read public/#            # lines before any `user` line: anonymous clients
 *   user alice
 *   topic readwrite sensors/#      # access: read, write, readwrite (the default) or deny
 *   topic deny sensors/secret      # a matching deny wins over any grant
 *   pattern write clients/%c/#     # every client; %c is its client identifier, %u its user name
 *
 * With a file, whatever no rule grants is denied. Reading is checked when a message is delivered
 * (a subscription is granted, but carries only the messages its client may read, retained ones
 * included); writing is checked for every PUBLISH and for the will at CONNECT.
 */
import { topicMatches } from "../topic/match";
import { topicFilterError } from "../topic/validate";

/** What a rule allows: bits of READ and WRITE. */
export const Access = { READ: 1, WRITE: 2 } as const;

interface Rule {
  filter: string;
  /** READ | WRITE bits granted; 0 with deny. */
  access: number;
  deny: boolean;
}

/** An access control file it cannot use. */
export class AclFileError extends Error {
  override name = "AclFileError";
}

const ACCESS_WORDS: Record<string, { access: number; deny: boolean }> = {
  read: { access: Access.READ, deny: false },
  write: { access: Access.WRITE, deny: false },
  readwrite: { access: Access.READ | Access.WRITE, deny: false },
  deny: { access: 0, deny: true },
};

/** The rules of an access control file. */
export class AccessRules {
  private constructor(
    private readonly anonymous: Rule[],
    private readonly users: Map<string, Rule[]>,
    private readonly patterns: Rule[],
  ) {}

  /** Parses a file's text; `path` names it in errors. */
  static parse(text: string, path: string): AccessRules {
    const anonymous: Rule[] = [];
    const users = new Map<string, Rule[]>();
    const patterns: Rule[] = [];
    let current = anonymous;
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === "" || line.startsWith("#")) continue;
      const where = `${path} line ${i + 1}`;
      const [keyword, ...rest] = line.split(/\s+/);
      if (keyword === "user") {
        const name = line.slice("user".length).trim();
        if (name === "") throw new AclFileError(`${where}: 'user' needs a user name`);
        current = users.get(name) ?? [];
        users.set(name, current);
        continue;
      }
      if (keyword !== "topic" && keyword !== "pattern") throw new AclFileError(`${where}: expected 'user', 'topic' or 'pattern', not '${keyword}'`);
      const word = ACCESS_WORDS[rest[0] ?? ""];
      const filter = (word === undefined ? rest : rest.slice(1)).join(" ");
      if (filter === "") throw new AclFileError(`${where}: '${keyword}' needs a topic filter`);
      const invalid = topicFilterError(filter.replaceAll("%c", "c").replaceAll("%u", "u"));
      if (invalid !== null) throw new AclFileError(`${where}: ${invalid}`);
      const rule = { filter, ...(word ?? ACCESS_WORDS.readwrite!) };
      (keyword === "pattern" ? patterns : current).push(rule);
    }
    return new AccessRules(anonymous, users, patterns);
  }

  /** Whether a client (its user name, null when anonymous, and identifier) may read or write a topic. */
  allows(username: string | null, clientId: string, topic: string, access: number): boolean {
    let granted = false;
    const own = username === null ? this.anonymous : this.users.get(username);
    if (own !== undefined) {
      for (const r of own) {
        if (!topicMatches(r.filter, topic)) continue;
        if (r.deny) return false;
        if ((r.access & access) !== 0) granted = true;
      }
    }
    for (const r of this.patterns) {
      const filter = substitute(r.filter, username, clientId);
      if (filter === null || !topicMatches(filter, topic)) continue;
      if (r.deny) return false;
      if ((r.access & access) !== 0) granted = true;
    }
    return granted;
  }
}

/**
 * A pattern with %u and %c replaced, or null when it does not apply: no user name for %u, or a
 * value that would change the filter's shape (a '/', '+' or '#' in it).
 */
function substitute(filter: string, username: string | null, clientId: string): string | null {
  if (!filter.includes("%")) return filter;
  if (filter.includes("%u")) {
    if (username === null || /[/+#]/.test(username)) return null;
    filter = filter.replaceAll("%u", username);
  }
  if (filter.includes("%c")) {
    if (/[/+#]/.test(clientId)) return null;
    filter = filter.replaceAll("%c", clientId);
  }
  return filter;
}

/** Reads and parses an access control file. */
export async function loadAccessRules(path: string): Promise<AccessRules> {
  let text: string;
  try {
    text = await Bun.file(path).text();
  } catch (e) {
    throw new AclFileError(`cannot read the access control file ${path}: ${(e as Error).message}`);
  }
  return AccessRules.parse(text, path);
}
