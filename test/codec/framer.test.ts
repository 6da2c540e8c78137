/**
 * The streaming Framer: however a byte stream is cut into chunks, the same frames come out in the
 * same order, "need more" is null and never an error, whole frames are zero-copy views of their
 * chunk, and a remaining length that is too large or too long is refused from the header alone.
 */
import { describe, expect, test } from "bun:test";
import {
  decodePacket,
  encodePacket,
  Framer,
  MAX_PACKET_SIZE,
  MqttError,
  NO_PROPERTIES,
  PacketType,
  ReasonCode,
  type Packet,
  type PublishPacket,
} from "../../lib/codec";
import { decodePacketAt } from "../../lib/codec/packet";
import type { TopicCache } from "../../lib/codec/reader";
import { prng } from "../fixtures/prng";


const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).map((_, i) => (i * 7 + fill) & 0xff);

/** Packets of several types and sizes; one needs a 2-byte and one a 3-byte remaining length. */
const PACKETS: Packet[] = [
  { type: PacketType.PINGREQ },
  {
    type: PacketType.CONNECT, protocolVersion: 5, cleanStart: true, keepAlive: 60, clientId: "framer-client",
    will: { topic: "last/will", payload: bytes(3, 1), qos: 1, retain: false, properties: { willDelayInterval: 5 } },
    username: "user", password: bytes(4, 2), properties: { sessionExpiryInterval: 300, receiveMaximum: 20 },
  },
  { type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic: "a/b", packetId: 0, properties: NO_PROPERTIES, payload: bytes(5, 3) },
  // remaining length 2 + 9 + 2 + 1 + 200 = 214: two length bytes
  { type: PacketType.PUBLISH, dup: false, qos: 1, retain: true, topic: "sensors/t", packetId: 7, properties: NO_PROPERTIES, payload: bytes(200, 4) },
  { type: PacketType.PUBACK, packetId: 7, reasonCode: 0, properties: NO_PROPERTIES },
  {
    type: PacketType.SUBSCRIBE, packetId: 8, properties: { subscriptionIdentifiers: [42] },
    subscriptions: [{ topicFilter: "x/+/z", qos: 2, noLocal: true, retainAsPublished: false, retainHandling: 1 }],
  },
  // remaining length above 16383: three length bytes
  { type: PacketType.PUBLISH, dup: true, qos: 2, retain: false, topic: "big", packetId: 9, properties: { contentType: "bin" }, payload: bytes(20_000, 5) },
  { type: PacketType.PUBREL, packetId: 9, reasonCode: 0x92, properties: { reasonString: "gone" } },
  { type: PacketType.PINGRESP },
  { type: PacketType.DISCONNECT, reasonCode: 0, properties: NO_PROPERTIES },
];

const FRAMES = PACKETS.map((p) => encodePacket(p, 5));
const STREAM = concat(FRAMES);
const DECODED = FRAMES.map((f) => decodePacket(f, 5));

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Pushes the chunks in order, draining next() after each push; returns copies of the frames. */
function frameAll(chunks: Uint8Array[], framer = new Framer()): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const c of chunks) {
    framer.push(c);
    for (let f = framer.next(); f !== null; f = framer.next()) out.push(f.slice());
  }
  expect(framer.buffered).toBe(0);
  return out;
}

/** Runs `fn` and checks it throws an MqttError with `code` (and a message matching `message`). */
function expectMqttError(fn: () => unknown, code: number, message?: RegExp): MqttError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(MqttError);
  const err = caught as MqttError;
  expect(err.reasonCode).toBe(code);
  if (message !== undefined) expect(err.message).toMatch(message);
  return err;
}

/** Checks frames against the reference, reporting which chunking broke it. */
function expectSameFrames(frames: Uint8Array[], how: string): void {
  if (frames.length !== FRAMES.length || frames.some((f, i) => !Bun.deepEquals(f, FRAMES[i]))) {
    throw new Error(`${how}: frames differ from the unsplit stream`);
  }
  frames.forEach((f, i) => expect(decodePacket(f, 5)).toEqual(DECODED[i]!));
}

describe("the test stream", () => {
  test("holds remaining lengths of 1, 2 and 3 bytes", () => {
    const lengthBytes = FRAMES.map((f) => {
      let i = 1;
      while (f[i]! & 0x80) i++;
      return i;
    });
    expect(new Set(lengthBytes)).toEqual(new Set([1, 2, 3]));
  });

  test("unsplit, yields every frame and they decode to the packets", () => {
    const frames = frameAll([STREAM]);
    expect(frames).toEqual(FRAMES);
    expect(frames.map((f) => decodePacket(f, 5))).toEqual(DECODED);
    expect(DECODED.map((p) => p.type)).toEqual(PACKETS.map((p) => p.type));
  });
});

describe("chunking does not change the frames", () => {
  test(`split in two at every byte boundary (0..${STREAM.length})`, () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      expectSameFrames(frameAll([STREAM.subarray(0, cut), STREAM.subarray(cut)]), `cut at ${cut}`);
    }
  });

  test("one byte at a time", () => {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < STREAM.length; i++) chunks.push(STREAM.subarray(i, i + 1));
    expectSameFrames(frameAll(chunks), "byte by byte");
  });

  test.each([1, 2, 3, 0xc0ffee, 0x5eed, 20260101])("random chunkings, seed %d", (seed) => {
    const rnd = prng(seed);
    for (let round = 0; round < 40; round++) {
      // mostly small chunks, sometimes large ones, and empty pushes now and then
      const maxChunk = [1, 4, 16, 300, 5000, 30000][Math.floor(rnd() * 6)]!;
      const chunks: Uint8Array[] = [];
      for (let o = 0; o < STREAM.length; ) {
        const n = Math.min(STREAM.length - o, Math.floor(rnd() * (maxChunk + 1)));
        chunks.push(STREAM.subarray(o, o + n));
        o += n;
      }
      expectSameFrames(frameAll(chunks), `seed ${seed} round ${round}`);
    }
  });
});

describe("partial input", () => {
  test.each(FRAMES.map((f, i) => [i, PACKETS[i]!.type, f] as const))("frame %d (type %d): every strict prefix gives null, then the rest completes it", (_i, _type, frame) => {
    for (let n = 0; n < frame.length; n++) {
      const framer = new Framer();
      framer.push(frame.subarray(0, n));
      expect(framer.next()).toBeNull();
      expect(framer.next()).toBeNull(); // asking again changes nothing
      expect(framer.buffered).toBe(n);
      framer.push(frame.subarray(n));
      expect(framer.next()).toEqual(frame);
      expect(framer.next()).toBeNull();
    }
  });

  test("an empty framer and an empty push give null", () => {
    const framer = new Framer();
    expect(framer.next()).toBeNull();
    framer.push(new Uint8Array(0));
    expect(framer.next()).toBeNull();
    expect(framer.buffered).toBe(0);
  });
});

describe("zero-copy", () => {
  test("frames wholly inside a chunk are views of that chunk", () => {
    const framer = new Framer();
    framer.push(STREAM);
    let offset = 0;
    for (const expected of FRAMES) {
      const f = framer.next()!;
      expect(f.buffer).toBe(STREAM.buffer);
      expect(f.byteOffset).toBe(STREAM.byteOffset + offset);
      expect(f).toEqual(expected);
      offset += expected.length;
    }
  });

  test("after a frame split across chunks, whole frames of the next chunk are views of it", () => {
    const framer = new Framer();
    const cut = FRAMES[0]!.length + 3; // inside the CONNECT
    const second = STREAM.slice(cut);
    framer.push(STREAM.slice(0, cut));
    expect(framer.next()).toEqual(FRAMES[0]!);
    expect(framer.next()).toBeNull();
    framer.push(second);
    const connect = framer.next()!;
    expect(connect).toEqual(FRAMES[1]!);
    expect(connect.buffer).not.toBe(second.buffer); // assembled: a copy of exactly its size
    expect(connect.byteLength).toBe(connect.buffer.byteLength);
    const publish = framer.next()!;
    expect(publish).toEqual(FRAMES[2]!);
    expect(publish.buffer).toBe(second.buffer);
    expect(publish.byteOffset).toBe(FRAMES[1]!.length - 3);
  });

  test("a decoded PUBLISH's topic and payload are views of the chunk", () => {
    const framer = new Framer();
    framer.push(STREAM);
    for (let f = framer.next(); f !== null; f = framer.next()) {
      const p = decodePacket(f, 5);
      if (p.type !== PacketType.PUBLISH) continue;
      expect((p.topic as Uint8Array).buffer).toBe(STREAM.buffer);
      expect(p.payload.buffer).toBe(STREAM.buffer);
    }
  });

  test("a TopicCache's copyPayloadsUpTo: a QoS 1/2 payload of at most that many bytes is a copy; QoS 0 and larger ones stay views", () => {
    const publish = (qos: 0 | 1 | 2, size: number): PublishPacket => ({
      type: PacketType.PUBLISH, dup: false, qos, retain: false, topic: "t/c", packetId: qos === 0 ? 0 : 9, properties: NO_PROPERTIES, payload: bytes(size, qos),
    });
    const sent = [publish(1, 16), publish(2, 16), publish(0, 16), publish(1, 17)];
    const chunk = new Uint8Array(Buffer.concat(sent.map((p) => encodePacket(p, 5))));
    const framer = new Framer();
    framer.push(chunk);
    const cache = { lastTopicBytes: null, copyPayloadsUpTo: 16 };
    const got = sent.map(() => framer.nextPacket(5, cache) as PublishPacket);
    expect(got.map((p) => p.payload)).toEqual(sent.map((p) => p.payload));
    expect(got.map((p) => p.payload.buffer === chunk.buffer)).toEqual([false, false, true, true]);
  });
});

describe("remaining length above the maximum packet size raises 0x95 from the header alone", () => {
  // [first byte, remaining length bytes...], the total size it announces, and the maximum to set
  const HEADERS: [string, number[], number, number][] = [
    ["1 length byte", [0x30, 0x7f], 2 + 127, 100],
    ["2 length bytes", [0x30, 0x80, 0x01], 3 + 128, 130],
    ["3 length bytes", [0x30, 0x80, 0x80, 0x01], 4 + 16_384, 16_387],
    ["4 length bytes", [0x30, 0x80, 0x80, 0x80, 0x01], 5 + 2_097_152, 2_097_156],
    ["4 length bytes, the largest", [0x30, 0xff, 0xff, 0xff, 0x7f], MAX_PACKET_SIZE, MAX_PACKET_SIZE - 1],
  ];

  test.each(HEADERS)("%s, in one chunk [MQTT-3.2.2-15]", (_name, header, total, max) => {
    const framer = new Framer(max);
    framer.push(Uint8Array.from(header));
    expectMqttError(() => framer.next(), ReasonCode.PacketTooLarge, new RegExp(`${total} bytes exceeds the maximum packet size ${max}`));
  });

  test.each(HEADERS)("%s, header split at every point, in front of other frames [MQTT-3.2.2-15]", (_name, header, _total, max) => {
    const h = Uint8Array.from(header);
    for (let cut = 1; cut < h.length; cut++) {
      const framer = new Framer(max);
      framer.push(concat([FRAMES[0]!, h.subarray(0, cut)])); // a PINGREQ first
      expect(framer.next()).toEqual(FRAMES[0]!);
      expect(framer.next()).toBeNull(); // the length is not known yet
      framer.push(h.subarray(cut));
      expectMqttError(() => framer.next(), ReasonCode.PacketTooLarge);
    }
  });

  test.each(HEADERS)("%s, header one byte at a time [MQTT-3.2.2-15]", (_name, header, _total, max) => {
    const framer = new Framer(max);
    for (let i = 0; i < header.length - 1; i++) {
      framer.push(Uint8Array.of(header[i]!));
      expect(framer.next()).toBeNull();
    }
    framer.push(Uint8Array.of(header[header.length - 1]!));
    expectMqttError(() => framer.next(), ReasonCode.PacketTooLarge);
  });

  test.each(HEADERS)("%s: a maximum equal to the total accepts the header and waits for the body", (_name, header, total) => {
    const framer = new Framer(total);
    framer.push(Uint8Array.from(header));
    expect(framer.next()).toBeNull();
    expect(framer.buffered).toBe(header.length);
  });

  test("a frame of exactly the maximum size is returned, one byte more is refused", () => {
    const publish = FRAMES[3]!;
    const ok = new Framer(publish.length);
    ok.push(publish);
    expect(ok.next()).toEqual(publish);
    const tooSmall = new Framer(publish.length - 1);
    tooSmall.push(publish);
    expectMqttError(() => tooSmall.next(), ReasonCode.PacketTooLarge);
  });

  test("the maximum can be changed on a live framer", () => {
    const framer = new Framer();
    framer.maxPacketSize = 10;
    framer.push(FRAMES[2]!); // a PUBLISH of more than 10 bytes
    expectMqttError(() => framer.next(), ReasonCode.PacketTooLarge);
  });
});

describe("a remaining length of five bytes raises 0x81", () => {
  const FIVE = [0x30, 0x80, 0x80, 0x80, 0x80, 0x01];

  test("in one chunk, with the default maximum", () => {
    const framer = new Framer();
    framer.push(Uint8Array.from(FIVE));
    expectMqttError(() => framer.next(), ReasonCode.MalformedPacket, /more than four bytes/);
  });

  test("split at every point", () => {
    const h = Uint8Array.from(FIVE);
    for (let cut = 1; cut < h.length; cut++) {
      const framer = new Framer();
      framer.push(h.subarray(0, cut));
      // four continuation bytes are already enough to know the length is invalid
      if (cut < 5) expect(framer.next()).toBeNull();
      framer.push(h.subarray(cut));
      expectMqttError(() => framer.next(), ReasonCode.MalformedPacket, /more than four bytes/);
    }
  });

  test("one byte at a time", () => {
    const framer = new Framer();
    let err: unknown;
    for (const b of FIVE) {
      framer.push(Uint8Array.of(b));
      try {
        expect(framer.next()).toBeNull();
      } catch (e) {
        err = e;
        break;
      }
    }
    expect(err).toBeInstanceOf(MqttError);
    expect((err as MqttError).reasonCode).toBe(ReasonCode.MalformedPacket);
  });
});

describe("frames not taken before the next push are kept", () => {
  test("the unread frames come first, then the new ones, in order", () => {
    const framer = new Framer();
    const a = concat(FRAMES.slice(0, 4));
    const b = concat(FRAMES.slice(4));
    framer.push(a);
    expect(framer.next()).toEqual(FRAMES[0]!);
    framer.push(b); // frames 1..3 still unread
    const out: Uint8Array[] = [];
    for (let f = framer.next(); f !== null; f = framer.next()) out.push(f.slice());
    expect(out).toEqual(FRAMES.slice(1));
    expect(framer.buffered).toBe(0);
  });

  test("several pushes without any next()", () => {
    const framer = new Framer();
    for (let o = 0; o < STREAM.length; o += 997) framer.push(STREAM.subarray(o, o + 997));
    expect(framer.buffered).toBe(STREAM.length);
    const out: Uint8Array[] = [];
    for (let f = framer.next(); f !== null; f = framer.next()) out.push(f.slice());
    expectSameFrames(out, "pushes of 997 bytes, no next() in between");
  });

  test("an unread tail that starts a frame is completed by the next push", () => {
    const framer = new Framer();
    const cut = FRAMES[0]!.length + FRAMES[1]!.length + 2; // inside the first PUBLISH
    framer.push(STREAM.subarray(0, cut));
    expect(framer.next()).toEqual(FRAMES[0]!); // the CONNECT and the partial PUBLISH stay unread
    framer.push(STREAM.subarray(cut));
    const out: Uint8Array[] = [];
    for (let f = framer.next(); f !== null; f = framer.next()) out.push(f.slice());
    expect(out).toEqual(FRAMES.slice(1));
  });
});

describe("reset()", () => {
  test("drops a partial frame and buffered bytes", () => {
    const framer = new Framer();
    framer.push(STREAM.subarray(0, FRAMES[0]!.length + 10)); // a PINGREQ and part of the CONNECT
    expect(framer.next()).toEqual(FRAMES[0]!);
    expect(framer.next()).toBeNull();
    expect(framer.buffered).toBe(10);
    framer.reset();
    expect(framer.buffered).toBe(0);
    expect(framer.next()).toBeNull();
    framer.push(STREAM);
    expectSameFrames([...drain(framer)], "after reset");
  });

  test("drops frames not yet taken", () => {
    const framer = new Framer();
    framer.push(STREAM);
    framer.reset();
    expect(framer.next()).toBeNull();
    framer.push(FRAMES[4]!);
    expect(framer.next()).toEqual(FRAMES[4]!);
    expect(framer.next()).toBeNull();
  });

  test("after an error, reset() makes the framer usable again", () => {
    const framer = new Framer(100);
    framer.push(Uint8Array.of(0x30, 0x80));
    expect(framer.next()).toBeNull();
    framer.push(Uint8Array.of(0x01));
    expectMqttError(() => framer.next(), ReasonCode.PacketTooLarge);
    framer.reset();
    framer.maxPacketSize = MAX_PACKET_SIZE;
    framer.push(STREAM);
    expectSameFrames([...drain(framer)], "after an error and reset");
  });

  test("keeps the maximum packet size", () => {
    const framer = new Framer(50);
    framer.reset();
    expect(framer.maxPacketSize).toBe(50);
  });
});

function* drain(framer: Framer): Generator<Uint8Array> {
  for (let f = framer.next(); f !== null; f = framer.next()) yield f.slice();
}

describe("TopicCache: a repeated topic decodes to the cache's own bytes", () => {
  const publish = (topic: string, payload = "p") =>
    encodePacket({ type: PacketType.PUBLISH, dup: false, qos: 0, retain: false, topic, packetId: 0, properties: {}, payload: new TextEncoder().encode(payload) }, 5);

  test("the same bytes come back as the cache's Uint8Array; other bytes of the same length as a view of the frame", () => {
    const cache = { lastTopicBytes: new TextEncoder().encode("a/b") };
    const framer = new Framer();
    framer.push(new Uint8Array([...publish("a/b", "1"), ...publish("a/c", "2"), ...publish("a/b/c", "3")]));
    const first = framer.nextPacket(5, cache) as PublishPacket;
    expect(first.topic).toBe(cache.lastTopicBytes);
    expect(new TextDecoder().decode(first.payload)).toBe("1");
    const second = framer.nextPacket(5, cache) as PublishPacket;
    expect(second.topic).not.toBe(cache.lastTopicBytes);
    expect(new TextDecoder().decode(second.topic as Uint8Array)).toBe("a/c");
    const third = framer.nextPacket(5, cache) as PublishPacket;
    expect(new TextDecoder().decode(third.topic as Uint8Array)).toBe("a/b/c");
  });

  test.each([
    ["a/b/c", 3, true],
    ["a", 1, true],
    ["a//", 3, true],
    ["é/b/c/", 4, false],
    ["a/é/x", 3, false],
    ["a/b日本/c/d", 4, false],
    ["🌍", 1, false],
  ] as const)("a new topic %p is copied and measured in passing: %p levels, ASCII %p", (topic, levels, ascii) => {
    const cache: TopicCache = { lastTopicBytes: new TextEncoder().encode("other") };
    const frame = publish(topic);
    const p = decodePacketAt(frame, 0, frame.length, 5, cache) as PublishPacket;
    expect(new TextDecoder().decode(p.topic as Uint8Array)).toBe(topic);
    expect((p.topic as Uint8Array).buffer).not.toBe(frame.buffer); // a copy
    expect([cache.newTopicLevels, cache.newTopicAscii]).toEqual([levels, ascii]);
  });

  test.each([
    ["a/+", ReasonCode.TopicNameInvalid],
    ["é/#", ReasonCode.TopicNameInvalid],
    ["a\u0000b", ReasonCode.MalformedPacket],
    ["é/\u0000", ReasonCode.MalformedPacket],
  ] as const)("a new topic %p is refused with %p wherever the fault sits", (topic, code) => {
    const cache: TopicCache = { lastTopicBytes: null };
    const frame = publish(topic);
    expectMqttError(() => decodePacketAt(frame, 0, frame.length, 5, cache), code);
  });

  describe("a new topic of the same length written over lastTopicBytes while nobody else holds them (lastTopicKept false)", () => {
    const cacheFor = (topic: string, kept = false): TopicCache => ({ lastTopicBytes: new TextEncoder().encode(topic), lastTopicKept: kept, lastTopicLevels: topic.split("/").length });
    const decode = (cache: TopicCache, topic: string) => {
      const frame = publish(topic);
      return decodePacketAt(frame, 0, frame.length, 5, cache) as PublishPacket;
    };

    test.each([
      ["dev/1/state", "dev/2/state", 3, 1],
      ["dev/12/state", "dev/21/state", 3, 1],
      ["dev/1/state", "dex/1/state", 3, 0],
      ["dev/1/state", "dev/1/stata", 3, 2],
      ["a/b/c", "a/b/d", 3, 2],
      ["ab/c", "a/bc", 2, -1], // the levels moved
      ["a/bc", "a/b/", 3, -1], // a level more
      ["abc", "xyz", 1, 0],
      ["x/ab/cd/y", "x/ba/dc/y", 4, -1], // two stretches with a '/' between them: one stretch holding it
    ] as const)("%p then %p: the same bytes, %p levels, differing in level %p", (before, after, levels, diffLevel) => {
      const cache = cacheFor(before);
      const last = cache.lastTopicBytes!;
      const p = decode(cache, after);
      expect(p.topic).toBe(last); // written over
      expect(new TextDecoder().decode(last)).toBe(after);
      expect([cache.newTopic, cache.newTopicLevels, cache.newTopicAscii, cache.newTopicDiffLevel]).toEqual([true, levels, true, diffLevel]);
    });

    test("the same topic: a repeat (newTopic false)", () => {
      const cache = cacheFor("a/b");
      expect(decode(cache, "a/b").topic).toBe(cache.lastTopicBytes!);
      expect(cache.newTopic).toBe(false);
    });

    test.each([
      ["kept by a message", "a/b", "a/c", true],
      ["another length", "a/b", "a/bc", false],
      ["not printable ASCII", "a/b", "a/é", false],
    ] as const)("%s: a copy of its own, lastTopicBytes left as they were", (_, before, after, kept) => {
      const cache = cacheFor(before, kept);
      const last = cache.lastTopicBytes!;
      const p = decode(cache, after);
      expect(p.topic).not.toBe(last);
      expect(new TextDecoder().decode(p.topic as Uint8Array)).toBe(after);
      expect(new TextDecoder().decode(last)).toBe(before);
      expect(cache.newTopic).toBe(true);
    });

    test("a wildcard is refused with 0x90, and lastTopicBytes are left as they were", () => {
      const cache = cacheFor("a/b/c");
      const frame = publish("a/b/c");
      frame[frame.indexOf(0x63, 4)] = 0x23; // "a/b/c" -> "a/b/#"
      expectMqttError(() => decodePacketAt(frame, 0, frame.length, 5, cache), ReasonCode.TopicNameInvalid);
      expect(new TextDecoder().decode(cache.lastTopicBytes!)).toBe("a/b/c");
    });
  });

  test("[MQTT-3.3.2-2] a topic that differs from the cache is still validated: a wildcard is refused with 0x90", () => {
    const cache = { lastTopicBytes: new TextEncoder().encode("a/b") };
    const bad = publish("a/b", "x");
    bad[bad.indexOf(0x62, 4)] = 0x2b; // "a/b" -> "a/+"
    let error: unknown = null;
    try {
      decodePacketAt(bad, 0, bad.length, 5, cache);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MqttError);
    expect((error as MqttError).reasonCode).toBe(ReasonCode.TopicNameInvalid);
  });
});

describe("takePuback: the four-byte PUBACK taken without decoding", () => {
  const puback = (id: number, extra: number[] = []) => [0x40, 2 + extra.length, id >> 8, id & 0xff, ...extra];

  test("takes PUBACKs of only their identifier, in order, and leaves anything else to nextPacket", () => {
    const f = new Framer();
    f.push(new Uint8Array([...puback(1), ...puback(0x1234), ...puback(7, [0x10]), ...puback(8)]));
    expect(f.takePuback()).toBe(1);
    expect(f.takePuback()).toBe(0x1234);
    expect(f.takePuback()).toBe(0); // a reason code (0x10 No matching subscribers): decoded as a packet
    expect(f.nextPacket(5)).toEqual({ type: PacketType.PUBACK, packetId: 7, reasonCode: 0x10, properties: {} });
    expect(f.takePuback()).toBe(8);
    expect(f.takePuback()).toBe(0);
    expect(f.nextPacket(5)).toBeNull();
  });

  test("takes nothing from a PUBACK split across reads until it is whole, nor one with identifier 0 (nextPacket rejects it)", () => {
    const f = new Framer();
    f.push(new Uint8Array(puback(5).slice(0, 3)));
    expect(f.takePuback()).toBe(0);
    expect(f.nextPacket(5)).toBeNull();
    f.push(new Uint8Array(puback(5).slice(3)));
    expect(f.takePuback()).toBe(0); // assembled in the partial buffer: nextPacket's
    expect(f.nextPacket(5)).toEqual({ type: PacketType.PUBACK, packetId: 5, reasonCode: 0, properties: {} });
    f.push(new Uint8Array(puback(0)));
    expect(f.takePuback()).toBe(0);
    expect(() => f.nextPacket(5)).toThrow("packet identifier is 0");
  });
});
