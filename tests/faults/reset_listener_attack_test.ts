// The listener that can reset (`--fault reset-after=...`, lib/fixture/reset_listener.ts),
// over real TCP against the real program. Linux only (they read /proc).
//
// Two of these are ignored: they describe what the issue asks for and what
// Deno 2.9.6 cannot give with least privilege (measurements in each comment).
// The others check what docs/testing-clients.md promises instead.

import assert from "node:assert/strict";
import { concat, connectOrReset, delay, makePoems, seededBytes, startServer } from "../helpers.ts";

const linux = Deno.build.os === "linux";
const POEM = seededBytes(1_000_000, 23);
const CUT = 500_000;

/** Open descriptors of a process. */
function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** Waits until a process's descriptor count stops changing (bounded), and returns it. */
async function settledFdCount(pid: number): Promise<number> {
  let last = fdCount(pid);
  for (let i = 0; i < 40; i++) {
    await delay(100);
    const now = fdCount(pid);
    if (now === last && i >= 5) return now;
    last = now;
  }
  return last;
}

/**
 * Descriptors the server holds with `--max-connections 5` while 500 clients
 * that read nothing wait, over its count before they came.
 */
async function fdsWith500Waiting(faults: string[]): Promise<{ before: number; during: number }> {
  const poems = await makePoems({ "big.bin": POEM });
  // Slow mode: each transfer holds its slot, so the cap holds the rest back.
  const args = ["--iface", "127.0.0.1", "--max-connections", "5", "--write-timeout", "0"];
  args.push("--num-bytes", "10", "--delay", "1");
  for (const fault of faults) args.push("--fault", fault);
  const server = await startServer([...args, poems.path("big.bin")]);
  const pid = server.process.pid;
  const clients: Deno.Conn[] = [];
  try {
    const before = await settledFdCount(pid);
    for (let i = 0; i < 500; i++) clients.push(await Deno.connect(server.addresses[0]));
    const during = await settledFdCount(pid);
    return { before, during };
  } finally {
    for (const conn of clients) conn.close();
    await server.stop();
    await poems.cleanup();
  }
}

// Issue point 7: a reset-after listener ignores --max-connections. Measured
// (this test un-ignored, twice, Deno 2.9.6): without faults 25 -> 31
// descriptors (the 5 transfers; 495 clients wait in the kernel's backlog);
// with reset-after 25 -> 525 (every client accepted at once into node:net).
// Not fixable in Deno 2.9.6 (details in docs/testing-clients.md, "A real reset"):
// - node:net's listener accepts eagerly in Rust (its libuv port queues every
//   pending connection whether or not JS calls accept; server._handle.readStop
//   has no effect), and under EMFILE it reports nothing to JS (no 'error'
//   event, no onconnection status): the failures cannot even be counted.
// - accepting with Deno.listen and resetting through node:net does not work:
//   TCP.openFromRid dups the descriptor, and closing the Deno.Conn shuts its
//   write side down (tokio's OwnedWriteHalf): the client reads a clean end of
//   stream before any RST.
Deno.test({
  name: "reset listener: --max-connections 5 bounds descriptors with 500 clients waiting " +
    "(ignored: node:net in Deno 2.9.6 accepts eagerly)",
  ignore: true,
  async fn() {
    const plain = await fdsWith500Waiting([]);
    const resetting = await fdsWith500Waiting([`reset-after=${CUT}`]);
    console.log(
      `  fds without faults ${plain.before} -> ${plain.during}; ` +
        `with reset-after ${resetting.before} -> ${resetting.during}`,
    );
    assert.ok(plain.during - plain.before <= 5 + 10, `plain: ${JSON.stringify(plain)}`);
    assert.ok(
      resetting.during - resetting.before <= 5 + 10,
      `reset-after: ${JSON.stringify(resetting)}`,
    );
  },
});

/** What a client read before its connection ended, and how it ended. */
interface Received {
  bytes: Uint8Array;
  /** `reset` for ECONNRESET, `eof` for a clean end of stream. */
  end: "reset" | "eof";
  /** The client's port, to find its record; absent when the reset came during connect. */
  port?: number;
}

/** Reads until the connection ends, pausing `pauseMs` after each read of at most `chunk` bytes. */
async function readUntilEnd(port: number, chunk = 64 * 1024, pauseMs = 0): Promise<Received> {
  const conn = await connectOrReset({ hostname: "127.0.0.1", port });
  if (conn === "reset") return { bytes: new Uint8Array(0), end: "reset" };
  const local = (conn.localAddr as Deno.NetAddr).port;
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(chunk);
  let end: Received["end"] = "eof";
  try {
    for (let reads = 0; reads < 100_000; reads++) {
      const n = await conn.read(buffer);
      if (n === null) break;
      parts.push(buffer.slice(0, n));
      if (pauseMs > 0) await delay(pauseMs);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
    end = "reset";
  } finally {
    conn.close();
  }
  return { bytes: concat(parts), end, port: local };
}

/** The byte count of the server's record for the client on `port`. */
function recordedBytes(stderr: string, port: number): number {
  const match = new RegExp(`127\\.0\\.0\\.1:${port} got (?:at most )?(\\d+) of `).exec(stderr);
  assert.ok(match, `no record for port ${port}`);
  return Number(match[1]);
}

async function withResettingServer(fn: (port: number, stderr: () => string) => Promise<void>) {
  const poems = await makePoems({ "big.bin": POEM });
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--fault",
    `reset-after=${CUT}`,
    "--seed",
    "7",
    poems.path("big.bin"),
  ]);
  try {
    await fn(server.addresses[0].port, () => server.stderr());
  } finally {
    await server.stop();
    await poems.cleanup();
  }
}

// Issue point 8: reset-after=BYTES does not give the client BYTES. Measured
// (this test un-ignored, twice: 20 clients reading 64 KiB at a time and one
// reading 16 KiB every 5 ms): 21 of 21, then 20 of 21 clients got 128,000 or
// 195,584 bytes, not 500,000, while every record said "got 500000 of
// 1000000". The RST (SO_LINGER 0)
// drops what the kernel has not sent yet, and the server cannot wait for its
// send queue to empty: Deno 2.9.6 shows no SIOCOUTQ or TCP_INFO, node:net
// only its own buffer, and /proc/net/tcp needs --allow-all.
Deno.test({
  name: "reset listener: clients that read to the end get exactly reset-after bytes " +
    "(ignored: Deno shows no socket send queue)",
  ignore: true,
  async fn() {
    await withResettingServer(async (port, stderr) => {
      const got = await Promise.all([
        ...Array.from({ length: 20 }, () => readUntilEnd(port)),
        readUntilEnd(port, 16 * 1024, 5), // a slow reader
      ]);
      const sizes = got.map((r) => r.bytes.length);
      console.log(`  bytes received: ${sizes.join(", ")}`);
      for (const r of got) {
        assert.equal(r.bytes.length, CUT);
        assert.equal(recordedBytes(stderr(), r.port!), r.bytes.length);
      }
    });
  },
});

Deno.test({
  name: "reset listener: a client gets a prefix of at most reset-after bytes, then ECONNRESET",
  ignore: !linux,
  async fn() {
    await withResettingServer(async (port, stderr) => {
      const got = await Promise.all([
        ...Array.from({ length: 10 }, () => readUntilEnd(port)),
        readUntilEnd(port, 16 * 1024, 5),
      ]);
      for (const r of got) {
        assert.equal(r.end, "reset", "never a clean end of stream");
        assert.ok(r.bytes.length <= CUT, `${r.bytes.length} bytes`);
        assert.deepEqual(r.bytes, POEM.subarray(0, r.bytes.length));
      }
      // The record counts what the kernel took before the RST: never fewer
      // than the client read (docs/testing-clients.md says it is an upper bound).
      for (const r of got) {
        if (r.port === undefined) continue;
        for (let i = 0; i < 50 && !stderr().includes(`:${r.port} got`); i++) await delay(100);
        assert.ok(recordedBytes(stderr(), r.port) >= r.bytes.length);
        // And it says so: never "got N" for bytes the RST may have dropped.
        assert.match(stderr(), new RegExp(`:${r.port} got at most ${CUT} of `));
      }
    });
  },
});
