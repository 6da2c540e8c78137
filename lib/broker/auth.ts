/**
 * Authentication with a password file in Mosquitto's format, so that a file made with
 * `mosquitto_passwd` works here unchanged: one `user:hash` line per user, where the hash is
 * `$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512, what mosquitto_passwd 2.0 writes) or the older
 * `$6$SALT$HASH` (SHA-512 of the password followed by the salt); salt and hash in base64.
 *
 * CONNECT is checked against it [MQTT-3.1.4-2]: a wrong or unknown user name or password is
 * refused with 0x86 Bad User Name or Password (3.1.1: 0x04), a client without a user name with
 * 0x87 Not Authorized (3.1.1: 0x05) unless anonymous clients are allowed.
 */
import { createHash, pbkdf2Sync, timingSafeEqual } from "node:crypto";
import { ReasonCode } from "../codec/reason-codes";

/** A user's stored password hash. */
type PasswordHash =
  | { kind: "pbkdf2-sha512"; iterations: number; salt: Uint8Array; hash: Uint8Array }
  | { kind: "sha512"; salt: Uint8Array; hash: Uint8Array };

/** A password file that could not be read or has a line it does not understand. */
export class PasswordFileError extends Error {
  override name = "PasswordFileError";
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function base64(field: string, what: string): Uint8Array {
  if (!BASE64.test(field)) throw new PasswordFileError(`${what} is not base64`);
  return new Uint8Array(Buffer.from(field, "base64"));
}

/** Parses one hash field (after `user:`). */
function parseHash(field: string): PasswordHash {
  const parts = field.split("$");
  // "$7$101$salt$hash" splits into ["", "7", "101", "salt", "hash"]
  if (parts[0] === "" && parts[1] === "7" && parts.length === 5) {
    const iterations = Number(parts[2]);
    if (!Number.isInteger(iterations) || iterations < 1) throw new PasswordFileError(`the iteration count '${parts[2]}' is not a positive integer`);
    return { kind: "pbkdf2-sha512", iterations, salt: base64(parts[3]!, "the salt"), hash: base64(parts[4]!, "the hash") };
  }
  if (parts[0] === "" && parts[1] === "6" && parts.length === 4) {
    return { kind: "sha512", salt: base64(parts[2]!, "the salt"), hash: base64(parts[3]!, "the hash") };
  }
  throw new PasswordFileError("the password is not a $7$ or $6$ hash (make the file with mosquitto_passwd)");
}

/** Parses a password file's text into hashes by user name; `path` names it in errors. */
export function parsePasswordFile(text: string, path: string): Map<string, PasswordHash> {
  const users = new Map<string, PasswordHash>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    const where = `${path} line ${i + 1}`;
    if (colon <= 0) throw new PasswordFileError(`${where}: expected user:hash`);
    try {
      users.set(line.slice(0, colon), parseHash(line.slice(colon + 1).trim()));
    } catch (e) {
      throw new PasswordFileError(`${where}: ${(e as Error).message}`);
    }
  }
  return users;
}

/** True when `password` matches the stored hash (compared in constant time). */
export function verifyPassword(stored: PasswordHash, password: Uint8Array): boolean {
  const derived = stored.kind === "pbkdf2-sha512"
    ? pbkdf2Sync(password, stored.salt, stored.iterations, stored.hash.length, "sha512")
    : createHash("sha512").update(password).update(stored.salt).digest();
  return derived.length === stored.hash.length && timingSafeEqual(derived, stored.hash);
}

/** Who may connect: the users of a password file, and anonymous clients when allowed. */
export class Authenticator {
  private constructor(
    private readonly users: Map<string, PasswordHash> | null,
    private readonly allowAnonymous: boolean,
  ) {}

  /** Reads the password file, if any; `allowAnonymous` null: anonymous clients only without a file. */
  static async load(passwordFile: string | null, allowAnonymous: boolean | null): Promise<Authenticator> {
    let users: Map<string, PasswordHash> | null = null;
    if (passwordFile !== null) {
      let text: string;
      try {
        text = await Bun.file(passwordFile).text();
      } catch (e) {
        throw new PasswordFileError(`cannot read the password file ${passwordFile}: ${(e as Error).message}`);
      }
      users = parsePasswordFile(text, passwordFile);
    }
    return new Authenticator(users, allowAnonymous ?? users === null);
  }

  /** 0 when the client may connect, else the reason code to refuse it with. */
  check(username: string | null, password: Uint8Array | null): number {
    if (username === null) return this.allowAnonymous ? 0 : ReasonCode.NotAuthorized;
    if (this.users === null) return 0; // no password file: user names are not checked
    const stored = this.users.get(username);
    if (stored === undefined || password === null || !verifyPassword(stored, password)) return ReasonCode.BadUserNameOrPassword;
    return 0;
  }
}
