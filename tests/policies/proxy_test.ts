// The PROXY protocol parser, strictly per HAProxy's proxy-protocol.txt, and
// the header read over real TCP on loopback (fragments, timeout, end of stream).
// Every address here is loopback, even inside a header's text.

import assert from "node:assert/strict";
import { isIP } from "node:net";
import {
  MAX_PROXY_HEADER_BYTES,
  parseProxyHeader,
  type ProxyHeader,
  ProxyHeaderError,
  readProxyHeader,
} from "../../lib/policies/proxy.ts";
import { concat, connectedPair, seededBytes } from "../helpers.ts";

const text = (s: string) => new TextEncoder().encode(s);
const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A v2 header: version/command byte, family/protocol byte, then the rest as given. */
function v2(verCmd: number, fam: number, body: number[], length = body.length): Uint8Array {
  return new Uint8Array([...SIGNATURE, verCmd, fam, length >> 8, length & 0xff, ...body]);
}

/** 127.0.0.9:40000 -> 127.0.0.1:10000 as a v2 IPv4 address block. */
const IPV4_BLOCK = [127, 0, 0, 9, 127, 0, 0, 1, 0x9c, 0x40, 0x27, 0x10];
/** ::1 port 40000 -> ::1 port 10000 as a v2 IPv6 address block. */
const IPV6_BLOCK = [
  ...new Array(15).fill(0),
  1,
  ...new Array(15).fill(0),
  1,
  0x9c,
  0x40,
  0x27,
  0x10,
];

function parseOk(bytes: Uint8Array): ProxyHeader {
  const header = parseProxyHeader(bytes);
  assert.ok(
    header,
    `complete header expected for ${JSON.stringify(new TextDecoder().decode(bytes))}`,
  );
  return header;
}

Deno.test("proxy: v1 TCP4, TCP6 and UNKNOWN lines give the client and the header's length", () => {
  const line = "PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n";
  const header = parseOk(text(line + "GET / HTTP/1.0\r\n"));
  assert.deepEqual(header, {
    version: 1,
    command: "proxy",
    source: { transport: "tcp", hostname: "127.0.0.9", port: 40000 },
    destination: { transport: "tcp", hostname: "127.0.0.1", port: 10000 },
    length: line.length,
  });
  // Addresses come out canonical, whatever spelling inet_ntop or a person chose.
  const v6 = parseOk(text("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0001 ::1 0 65535\r\n"));
  assert.equal(v6.source?.hostname, "::1");
  assert.equal(v6.source?.port, 0);
  assert.equal(v6.destination?.port, 65535);
  const mapped = parseOk(text("PROXY TCP6 ::ffff:127.0.0.9 ::FFFF:7f00:1 1 2\r\n"));
  assert.equal(mapped.source?.hostname, "::ffff:127.0.0.9");
  assert.equal(mapped.destination?.hostname, "::ffff:127.0.0.1");
  // UNKNOWN: use the connection's own endpoints, and ignore the rest of the line.
  assert.deepEqual(parseOk(text("PROXY UNKNOWN\r\n")), {
    version: 1,
    command: "unknown",
    length: 15,
  });
  const longUnknown = "PROXY UNKNOWN ::1 ::1 65535 65535\r\n";
  assert.equal(parseOk(text(longUnknown)).length, longUnknown.length);
});

Deno.test("proxy: v1 lines that do not match the spec exactly are refused", () => {
  const bad = [
    "PROXY TCP4 127.0.0.09 127.0.0.1 40000 10000\r\n", // heading zero
    "PROXY TCP4 127.0.0.256 127.0.0.1 40000 10000\r\n",
    "PROXY TCP4 127.0.0.9 127.0.0.1 040000 10000\r\n",
    "PROXY TCP4 127.0.0.9 127.0.0.1 65536 10000\r\n",
    "PROXY TCP4 127.0.0.9  127.0.0.1 40000 10000\r\n", // two spaces
    "PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000 \r\n",
    "PROXY TCP4 127.0.0.9 127.0.0.1 40000\r\n",
    "PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\n", // a bare LF
    "PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\rX",
    "PROXY TCP4 ::1 127.0.0.1 40000 10000\r\n", // family mismatch
    "PROXY TCP6 127.0.0.9 ::1 40000 10000\r\n",
    "PROXY TCP6 ::1::1 ::1 40000 10000\r\n",
    "PROXY TCP6 ::1%lo ::1 40000 10000\r\n", // a zone id
    "PROXY TCP6 0:0:0:0:0:0:0:0:1 ::1 1 2\r\n", // nine groups
    "PROXY TCP6 ::00001 ::1 1 2\r\n", // five digits
    "PROXY TCP4 127.0.0.9 127.0.0.1 +1 10000\r\n",
    "PROXY TCP5 127.0.0.9 127.0.0.1 40000 10000\r\n",
    "proxy TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n",
    "PROXY  TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n",
    "PROXY UNKNOWNX\r\n",
    "PROXY UNKNOWN \n\r\n",
    "PROXY \r\n",
    "GET / HTTP/1.0\r\n",
    "PROXY UNKNOWN " + "f".repeat(200) + "\r\n", // no CRLF within 107 bytes
  ];
  for (const line of bad) {
    assert.throws(
      () => parseProxyHeader(text(line)),
      ProxyHeaderError,
      `should refuse ${JSON.stringify(line)}`,
    );
  }
});

Deno.test("proxy: every prefix of a valid header asks for more, and garbage is refused at its first byte", () => {
  const valid = [
    text("PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n"),
    text("PROXY TCP6 ::1 ::1 40000 10000\r\n"),
    text("PROXY UNKNOWN\r\n"),
    v2(0x21, 0x11, IPV4_BLOCK),
    v2(0x20, 0x00, []),
  ];
  for (const bytes of valid) {
    for (let n = 0; n < bytes.length; n++) {
      assert.equal(parseProxyHeader(bytes.subarray(0, n)), null, `prefix of ${n} bytes`);
    }
    assert.equal(parseOk(bytes).length, bytes.length);
  }
  for (const first of ["G", "\x16", "\r\n\r\n\x01", "PROXX", "\r\n\r\n\0\r\nQUIT\n\x10"]) {
    assert.throws(() => parseProxyHeader(text(first)), ProxyHeaderError, JSON.stringify(first));
  }
});

Deno.test("proxy: v2 PROXY, LOCAL, AF_UNSPEC, AF_UNIX and TLVs", () => {
  // 0xaa is past the length: the client's first byte, not the header's.
  assert.deepEqual(parseOk(v2(0x21, 0x11, [...IPV4_BLOCK, 0xaa], 12)), {
    version: 2,
    command: "proxy",
    source: { transport: "tcp", hostname: "127.0.0.9", port: 40000 },
    destination: { transport: "tcp", hostname: "127.0.0.1", port: 10000 },
    length: 28,
  });
  const six = parseOk(v2(0x21, 0x21, IPV6_BLOCK));
  assert.equal(six.source?.hostname, "::1");
  assert.equal(six.length, 16 + 36);
  // LOCAL (a health check): the real endpoints, whatever the family byte and
  // address bytes say; the length is honoured, not assumed to be zero.
  assert.deepEqual(parseOk(v2(0x20, 0x00, [])), { version: 2, command: "local", length: 16 });
  assert.equal(parseOk(v2(0x20, 0x11, IPV4_BLOCK)).command, "local");
  assert.equal(parseOk(v2(0x20, 0x11, IPV4_BLOCK)).source, undefined);
  // AF_UNSPEC, or a family this TCP server does not use: the real endpoints.
  assert.equal(parseOk(v2(0x21, 0x00, [])).command, "unknown");
  assert.equal(parseOk(v2(0x21, 0x31, new Array(216).fill(0))).command, "unknown");
  assert.equal(parseOk(v2(0x21, 0x12, IPV4_BLOCK)).command, "unknown");
  // TLVs (here a NOOP and a unique id) are skipped.
  const tlvs = [0x04, 0, 2, 0, 0, 0x05, 0, 3, 1, 2, 3];
  const withTlvs = parseOk(v2(0x21, 0x11, [...IPV4_BLOCK, ...tlvs]));
  assert.equal(withTlvs.source?.hostname, "127.0.0.9");
  assert.equal(withTlvs.length, 16 + 12 + tlvs.length);
});

Deno.test("proxy: v2 headers outside the spec are refused", () => {
  const bad: [string, Uint8Array][] = [
    ["version 1 after the signature", v2(0x11, 0x11, IPV4_BLOCK)],
    ["version 3", v2(0x31, 0x11, IPV4_BLOCK)],
    ["command 2", v2(0x22, 0x11, IPV4_BLOCK)],
    ["family 4", v2(0x21, 0x41, IPV4_BLOCK)],
    ["protocol 3", v2(0x21, 0x13, IPV4_BLOCK)],
    ["a combination the spec does not list", v2(0x21, 0x10, IPV4_BLOCK)],
    ["an address block too short for IPv4", v2(0x21, 0x11, IPV4_BLOCK.slice(0, 11))],
    ["an address block too short for IPv6", v2(0x21, 0x21, IPV4_BLOCK)],
    ["a TLV longer than the header", v2(0x21, 0x11, [...IPV4_BLOCK, 0x04, 0, 9, 0])],
    ["half a TLV", v2(0x21, 0x11, [...IPV4_BLOCK, 0x04, 0])],
    ["a length over the bound", v2(0x21, 0x11, IPV4_BLOCK, MAX_PROXY_HEADER_BYTES)],
  ];
  for (const [what, bytes] of bad) {
    assert.throws(() => parseProxyHeader(bytes), ProxyHeaderError, what);
  }
});

// ---- fuzz: fixed seeds, so a failure reproduces ----

/** xorshift32 stream of integers below `n`. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

const V1_TCP4 = new RegExp(
  "^PROXY TCP4 (?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d) " +
    "(?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d) " +
    "(?:0|[1-9]\\d{0,4}) (?:0|[1-9]\\d{0,4})\r\n",
);

/**
 * What every accepted header must satisfy, checked independently of the
 * parser: a TCP4 line matches the spec's grammar, ports are in range, addresses
 * are real addresses, and a v2 header's length is what its length field says.
 */
function assertSound(bytes: Uint8Array, header: ProxyHeader): void {
  assert.ok(header.length > 0 && header.length <= bytes.length);
  assert.ok(header.length <= MAX_PROXY_HEADER_BYTES);
  if (header.version === 1) {
    const line = new TextDecoder().decode(bytes.subarray(0, header.length));
    assert.ok(line.endsWith("\r\n") && line.length <= 107, JSON.stringify(line));
    assert.doesNotMatch(line.slice(0, -2), /[\r\n]/);
    if (line.startsWith("PROXY TCP4 ")) {
      assert.match(line, V1_TCP4);
      const ports = line.trim().split(" ").slice(4).map(Number);
      assert.ok(ports.every((p) => p <= 65535), line);
    }
  } else {
    assert.deepEqual([...bytes.subarray(0, 12)], SIGNATURE);
    assert.equal(bytes[12] >> 4, 2);
    assert.equal(header.length, 16 + (bytes[14] << 8 | bytes[15]));
  }
  for (const addr of [header.source, header.destination]) {
    if (!addr) continue;
    assert.notEqual(isIP(addr.hostname), 0, addr.hostname);
    assert.ok(Number.isInteger(addr.port) && addr.port >= 0 && addr.port <= 65535);
  }
}

/** Parses, allowing only ProxyHeaderError; checks what is accepted. */
function fuzzOne(bytes: Uint8Array): "accepted" | "more" | "refused" {
  let header: ProxyHeader | null;
  try {
    header = parseProxyHeader(bytes);
  } catch (err) {
    if (!(err instanceof ProxyHeaderError)) throw err;
    return "refused";
  }
  if (header === null) {
    assert.ok(bytes.length < MAX_PROXY_HEADER_BYTES, "asks for more past the bound");
    return "more";
  }
  assertSound(bytes, header);
  // Refusing early never refuses the start of a header that turns out valid.
  for (let n = 0; n < header.length; n++) {
    assert.equal(parseProxyHeader(bytes.subarray(0, n)), null, `prefix of ${n} bytes`);
  }
  // Bytes after the header are the client's: they never change the header.
  const more = parseProxyHeader(concat([bytes, text("trailing bytes")]));
  assert.deepEqual(more, header);
  return "accepted";
}

const SEEDS = [
  text("PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n"),
  text("PROXY TCP6 ::1 ::ffff:127.0.0.1 40000 10000\r\n"),
  text("PROXY UNKNOWN\r\n"),
  v2(0x21, 0x11, IPV4_BLOCK),
  v2(0x21, 0x21, [...IPV6_BLOCK, 0x04, 0, 1, 0]),
  v2(0x20, 0x00, []),
];

Deno.test("proxy fuzz: random bytes never crash, hang or pass", () => {
  const random = rng(0x5eed);
  const started = performance.now();
  const plain = { accepted: 0, more: 0, refused: 0 };
  const prefixed = { accepted: 0, more: 0, refused: 0 };
  for (let i = 0; i < 20_000; i++) {
    const tail = seededBytes(random(300), random(2 ** 31) + 1);
    plain[fuzzOne(tail)]++;
    // Random bytes after the start of a real header get past the first byte;
    // a whole v2 LOCAL header may be in that start, so some of these pass.
    const start = SEEDS[random(SEEDS.length)];
    prefixed[fuzzOne(concat([start.subarray(0, random(start.length)), tail]))]++;
  }
  const ms = performance.now() - started;
  console.log(`40,000 random inputs in ${ms.toFixed(0)} ms:`, { plain, prefixed });
  assert.ok(ms < 10_000, "parsing is fast");
  assert.equal(plain.accepted, 0, "random bytes are not a header");
  assert.ok(prefixed.refused > prefixed.accepted, "random bytes after a start are mostly refused");
});

Deno.test("proxy fuzz: mutated headers are refused, asked more of, or sound", () => {
  const random = rng(0xc0ffee);
  const seen = { accepted: 0, more: 0, refused: 0 };
  const alphabet = text("PROXYTCP46UNKW 0123456789abcdefABCDEF.:\r\n\0");
  for (let i = 0; i < 50_000; i++) {
    const bytes = [...SEEDS[random(SEEDS.length)]];
    for (let edits = 1 + random(3); edits > 0; edits--) {
      const at = random(bytes.length + 1);
      const byte = random(2) ? alphabet[random(alphabet.length)] : random(256);
      switch (random(4)) {
        case 0:
          bytes[at] = byte;
          break;
        case 1:
          bytes.splice(at, 0, byte);
          break;
        case 2:
          bytes.splice(at, 1);
          break;
        default:
          bytes.splice(at, 0, ...bytes.slice(random(bytes.length), random(bytes.length)));
      }
    }
    seen[fuzzOne(new Uint8Array(bytes))]++;
  }
  console.log("50,000 mutated headers:", seen);
  // The mutations hit address digits and bytes too, so some still parse.
  assert.ok(seen.accepted > 0 && seen.refused > 0 && seen.more > 0);
});

// ---- the read, over real TCP ----

Deno.test("proxy read: a header in fragments is put together; bytes after it are left alone", async () => {
  const { server, client } = await connectedPair();
  const header = v2(0x21, 0x11, IPV4_BLOCK);
  const reading = readProxyHeader(server, { timeoutMs: 2000 });
  for (let at = 0; at < header.length; at += 5) {
    await client.write(header.subarray(at, at + 5));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const got = await reading;
  assert.equal(got.source?.hostname, "127.0.0.9");
  server.close();
  client.close();
});

Deno.test("proxy read: too slow, closed early, or garbage is a ProxyHeaderError", async () => {
  {
    const { server, client } = await connectedPair();
    await client.write(text("PROXY TCP4 127.0.0.9"));
    const started = performance.now();
    await assert.rejects(readProxyHeader(server, { timeoutMs: 300 }), /within 0.3 s/);
    assert.ok(performance.now() - started < 1000);
    // The read closed the connection: the client sees the end.
    assert.equal(await client.read(new Uint8Array(16)), null);
    client.close();
  }
  {
    const { server, client } = await connectedPair();
    await client.write(text("PROXY TCP4"));
    client.close();
    await assert.rejects(readProxyHeader(server, { timeoutMs: 2000 }), /closed/);
    server.close();
  }
  {
    const { server, client } = await connectedPair();
    await client.write(text("GET / HTTP/1.0\r\n\r\n"));
    await assert.rejects(readProxyHeader(server, { timeoutMs: 2000 }), ProxyHeaderError);
    server.close();
    client.close();
  }
});
