// --proxy-protocol with the real program over real TCP: the header's client is
// the one that --allow/--deny judge and the logs name; a missing, malformed or
// slow header is closed without a byte and logged, and never holds up the
// accept loop or, for long, a slot at the cap. Loopback only, headers too.

import assert from "node:assert/strict";
import type { PoemAddress } from "../../lib/client.ts";
import {
  concat,
  delay,
  fetchBytes,
  makePoems,
  type RunningServer,
  socketCount,
  startServer,
  waitForSockets,
} from "../helpers.ts";

const POEM = "Who knocked? The balancer,\nand behind it, you.\n";
const encoder = new TextEncoder();
const poems = await makePoems({ "knock.txt": POEM });
const POEM_PATH = poems.path("knock.txt");
const EXPECTED = encoder.encode(POEM);

/**
 * Starts a client (`use`) and waits until the server has accepted it (its
 * socket count, on Linux; elsewhere 200 ms). The client's promise comes back
 * in an object: an async function would wait for it to settle.
 */
async function accepted<T>(
  server: RunningServer,
  use: () => Promise<T>,
): Promise<{ client: Promise<T> }> {
  const linux = Deno.build.os === "linux";
  const before = linux ? socketCount(server.process.pid) : 0;
  const client = use();
  if (linux) await waitForSockets(server.process.pid, before + 1);
  else await delay(200);
  return { client };
}

/** Connects, sends `prefix`, and reads to the end: what the client got, and how long it took. */
async function fetchAfter(
  address: PoemAddress,
  prefix: string | Uint8Array,
): Promise<{ bytes: Uint8Array; ms: number }> {
  const conn = await Deno.connect({ ...address, transport: "tcp" });
  const started = performance.now();
  const parts: Uint8Array[] = [];
  try {
    if (prefix.length) {
      await conn.write(typeof prefix === "string" ? encoder.encode(prefix) : prefix);
    }
    const buffer = new Uint8Array(4096);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      parts.push(buffer.slice(0, n));
    }
  } catch (err) {
    // A refused client may see a reset rather than an end of stream.
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
  } finally {
    conn.close();
  }
  return { bytes: concat(parts), ms: performance.now() - started };
}

/** A v2 PROXY header for TCP over IPv4, `127.0.0.<host>:<port>` to 127.0.0.1:10000. */
function v2Header(host: number, port: number): Uint8Array {
  return new Uint8Array([
    ...[0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a],
    0x21,
    0x11,
    0,
    12,
    ...[127, 0, 0, host, 127, 0, 0, 1],
    port >> 8,
    port & 0xff,
    0x27,
    0x10,
  ]);
}
const V2_LOCAL = new Uint8Array([
  ...[0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a],
  0x20,
  0x00,
  0,
  0,
]);

Deno.test("proxy protocol: v1 and v2 headers name the client in the logs; LOCAL is the balancer itself", async () => {
  const server = await startServer(["--proxy-protocol", "--iface", "127.0.0.1", POEM_PATH]);
  const [address] = server.addresses;
  try {
    const v1 = await fetchAfter(address, "PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n");
    assert.deepEqual(v1.bytes, EXPECTED);
    // Input after the header is the client's, ignored like any input.
    const v2 = await fetchAfter(address, concat([v2Header(10, 40001), encoder.encode("hi\n")]));
    assert.deepEqual(v2.bytes, EXPECTED);
    assert.deepEqual((await fetchAfter(address, V2_LOCAL)).bytes, EXPECTED);
    assert.deepEqual((await fetchAfter(address, "PROXY UNKNOWN\r\n")).bytes, EXPECTED);
    const log = await server.waitForLines(/ got \d+ of \d+ bytes/, 4);
    assert.match(log, /127\.0\.0\.9:40000 got \d+ of \d+ bytes of .*: completed\./);
    assert.match(log, /127\.0\.0\.10:40001 got \d+ of \d+ bytes of .*: completed\./);
    // LOCAL and UNKNOWN: the connection's own peer.
    assert.equal(log.match(/127\.0\.0\.1:\d+ got \d+ of \d+ bytes/g)?.length, 2);
  } finally {
    await server.stop();
  }
});

Deno.test("proxy protocol: --deny and --allow judge the header's client, not the balancer", async () => {
  const server = await startServer([
    "--proxy-protocol",
    "--iface",
    "127.0.0.1",
    "--allow",
    "127.0.0.0/8",
    "--deny",
    "127.0.0.9",
    POEM_PATH,
  ]);
  const [address] = server.addresses;
  try {
    const denied = await fetchAfter(address, "PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n");
    assert.equal(denied.bytes.length, 0);
    assert.deepEqual((await fetchAfter(address, v2Header(9, 40002))).bytes, new Uint8Array());
    assert.deepEqual((await fetchAfter(address, v2Header(10, 40003))).bytes, EXPECTED);
    // The balancer's own address (127.0.0.1) is allowed: its health checks pass.
    assert.deepEqual((await fetchAfter(address, V2_LOCAL)).bytes, EXPECTED);
    const log = await server.waitForLines(/ denied by --allow\/--deny/, 2);
    assert.match(log, /127\.0\.0\.9:40000 denied by --allow\/--deny/);
    assert.match(log, /127\.0\.0\.9:40002 denied by --allow\/--deny/);
  } finally {
    const status = await server.stop();
    assert.equal(status.code, 0);
    assert.match(server.stderr(), /Shut down: 2 completed, .* 2 denied, 0 bad PROXY header\./);
  }
});

Deno.test("proxy protocol: a missing, malformed or slow header is closed without a byte, and logged", async () => {
  const server = await startServer([
    "--proxy-protocol",
    "--iface",
    "127.0.0.1",
    "--log-level",
    "debug",
    POEM_PATH,
  ]);
  const [address] = server.addresses;
  try {
    const garbage = await fetchAfter(address, "GET / HTTP/1.0\r\n\r\n");
    assert.equal(garbage.bytes.length, 0);
    // At once: below the 2.5 s a header is waited for, with room for load.
    assert.ok(garbage.ms < 2000, `refused at once, took ${garbage.ms} ms`);
    // A v1 line with a heading zero is not the spec's.
    const zero = await fetchAfter(address, "PROXY TCP4 127.0.0.09 127.0.0.1 40000 10000\r\n");
    assert.equal(zero.bytes.length, 0);
    // Silent and half-sent headers: held to the timeout, while a good client
    // connecting meanwhile is served at once (the accept loop is not waiting).
    const silent = fetchAfter(address, "");
    const half = fetchAfter(address, "PROXY TCP4 127.0.0.9 ");
    await delay(100);
    const good = await fetchAfter(address, v2Header(11, 40004));
    assert.deepEqual(good.bytes, EXPECTED);
    assert.ok(good.ms < 2000, `a good client waited ${good.ms} ms`);
    for (const slow of [await silent, await half]) {
      assert.equal(slow.bytes.length, 0);
      // Not before the timeout (strict); after it only "not never".
      assert.ok(slow.ms >= 2500 && slow.ms < 15_000, `closed after ${slow.ms} ms`);
    }
    const log = await server.waitForLines(/no valid PROXY header/, 4);
    assert.match(log, /127\.0\.0\.1:\d+ sent no valid PROXY header \(not a PROXY header\)/);
    assert.match(log, /no complete PROXY header within 3 s \(got 0 bytes\)/);
    assert.match(log, /no complete PROXY header within 3 s \(got 21 bytes\)/);
  } finally {
    await server.stop();
  }
  assert.match(server.stderr(), /Shut down: 1 completed, .* 0 denied, 4 bad PROXY header\./);
});

Deno.test("proxy protocol: at the cap, a silent client holds its slot only until the timeout", async () => {
  const server = await startServer([
    "--proxy-protocol",
    "--iface",
    "127.0.0.1",
    "--max-connections",
    "1",
    POEM_PATH,
  ]);
  const [address] = server.addresses;
  try {
    // The silent client first: it holds the one slot.
    const { client: silent } = await accepted(server, () => fetchAfter(address, ""));
    const waiting = await fetchAfter(address, v2Header(12, 40005));
    assert.deepEqual(waiting.bytes, EXPECTED);
    // Not before the silent client's timeout (strict); after it, only "not
    // never", with room for a busy machine.
    assert.ok(waiting.ms > 2000 && waiting.ms < 15_000, `served after ${waiting.ms} ms`);
    assert.equal((await silent).bytes.length, 0);
  } finally {
    await server.stop();
  }
});

Deno.test("proxy protocol: a shutdown cuts short a client still sending its header", async () => {
  const server = await startServer(["--proxy-protocol", "--iface", "127.0.0.1", POEM_PATH]);
  const [address] = server.addresses;
  // Accepted before the shutdown: a client still in the backlog is refused.
  const { client: silent } = await accepted(server, () => fetchAfter(address, "PROXY "));
  const started = performance.now();
  const status = await server.stop();
  assert.equal(status.code, 0);
  assert.ok(performance.now() - started < 2000, "the shutdown does not wait for the header");
  assert.equal((await silent).bytes.length, 0);
  assert.match(server.stderr(), /127\.0\.0\.1:\d+ got 0 of \d+ bytes .*: cut short\./);
  assert.match(server.stderr(), /Shut down: 0 completed, 0 client left, 0 timed out, 1 cut short/);
});

Deno.test("proxy protocol: without the option a PROXY line is only input, and the peer is logged", async () => {
  const server = await startServer(["--iface", "127.0.0.1", POEM_PATH]);
  const [address] = server.addresses;
  try {
    const got = await fetchAfter(address, "PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n");
    assert.deepEqual(got.bytes, EXPECTED);
    assert.deepEqual(await fetchBytes(address), EXPECTED);
    const log = await server.waitForLines(/ got \d+ of \d+ bytes/, 2);
    assert.doesNotMatch(log, /127\.0\.0\.9/);
  } finally {
    await server.stop();
  }
  assert.doesNotMatch(server.stderr(), /PROXY/);
});

globalThis.addEventListener("unload", () => poems.cleanup());
