/** Broker URLs: mqtt://, mqtts://, ws://, wss:// (and tcp://, ssl:// as aliases), with user and password. */

/** What a broker URL names. */
export interface BrokerUrl {
  host: string;
  /** The URL's port, or the scheme's default (1883, 8883, 80, 443). */
  port: number;
  /** Whether the URL gave the port. */
  portGiven: boolean;
  tls: boolean;
  /** For ws:// and wss://, the path (with any query); null for plain MQTT. */
  websocketPath: string | null;
  username?: string;
  password?: string;
}

/** Tells a URL apart from a host name. */
export function isUrl(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
}

/** Parses a broker URL; throws an Error saying what is wrong. */
export function parseBrokerUrl(url: string): BrokerUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`'${url}' is not a valid URL (mqtt://user:pass@host:port, mqtts://, ws://host:port/mqtt or wss://)`);
  }
  const scheme = u.protocol.slice(0, -1);
  const kinds: Record<string, [tls: boolean, websocket: boolean, port: number]> = {
    mqtt: [false, false, 1883], tcp: [false, false, 1883], mqtts: [true, false, 8883], ssl: [true, false, 8883], ws: [false, true, 80], wss: [true, true, 443],
  };
  const kind = kinds[scheme];
  if (kind === undefined) throw new Error(`unsupported URL scheme '${u.protocol}' (mqtt://, mqtts://, ws:// or wss://)`);
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host === "") throw new Error(`no host in '${url}'`);
  const parsed: BrokerUrl = { host, port: u.port === "" ? kind[2] : Number(u.port), portGiven: u.port !== "", tls: kind[0], websocketPath: kind[1] ? u.pathname + u.search : null };
  if (u.username !== "") parsed.username = decodeURIComponent(u.username);
  if (u.password !== "") parsed.password = decodeURIComponent(u.password);
  return parsed;
}
