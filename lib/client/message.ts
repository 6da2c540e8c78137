/** The application message of the client API: what publish() takes and what subscribers receive. */
import type { QoS } from "../codec/constants";

/** Options of a Message beyond its topic and payload (MQTT 5.0 PUBLISH properties among them). */
export interface MessageOptions {
  qos?: QoS;
  retain?: boolean;
  responseTopic?: string;
  correlationData?: Uint8Array | string;
  userProperties?: [string, string][] | Record<string, string>;
  messageExpiryInterval?: number;
  contentType?: string;
  /** 1 when the payload is UTF-8 text (v5); sent only when set. */
  payloadFormatIndicator?: 0 | 1;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const inspect = Symbol.for("nodejs.util.inspect.custom");
/** Shared defaults, so that a plain `new Message(topic, payload)` allocates nothing but itself. */
const NO_OPTIONS: MessageOptions = Object.freeze({});
const NONE: never[] = Object.freeze([]) as unknown as never[];

/** An MQTT application message. Prints as `Message('/my/topic', 'my-message')`. */
export class Message {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly qos: QoS;
  readonly retain: boolean;
  readonly responseTopic: string | undefined;
  readonly correlationData: Uint8Array | undefined;
  readonly userProperties: [string, string][];
  readonly messageExpiryInterval: number | undefined;
  readonly contentType: string | undefined;
  readonly payloadFormatIndicator: 0 | 1 | undefined;
  /** Subscription identifiers that matched (received messages only). */
  subscriptionIdentifiers: readonly number[] = NONE;

  constructor(topic: string, payload: Uint8Array | string = new Uint8Array(0), options: MessageOptions = NO_OPTIONS) {
    this.topic = topic;
    this.payload = typeof payload === "string" ? encoder.encode(payload) : payload;
    this.qos = options.qos ?? 0;
    this.retain = options.retain ?? false;
    this.responseTopic = options.responseTopic;
    this.correlationData = typeof options.correlationData === "string" ? encoder.encode(options.correlationData) : options.correlationData;
    const up = options.userProperties;
    this.userProperties = up === undefined ? NONE : Array.isArray(up) ? up : Object.entries(up);
    this.messageExpiryInterval = options.messageExpiryInterval;
    this.contentType = options.contentType;
    this.payloadFormatIndicator = options.payloadFormatIndicator;
  }

  /** True when any MQTT 5.0 property is set. */
  get hasProperties(): boolean {
    return this.responseTopic !== undefined || this.correlationData !== undefined || this.userProperties.length > 0 ||
      this.messageExpiryInterval !== undefined || this.contentType !== undefined || this.payloadFormatIndicator !== undefined;
  }

  /** The payload decoded as UTF-8 (invalid sequences become U+FFFD). */
  get text(): string {
    return decoder.decode(this.payload);
  }

  toString(): string {
    return `Message('${this.topic}', '${this.text}')`;
  }

  [inspect](): string {
    return this.toString();
  }
}
