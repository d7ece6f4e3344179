// Logging never gets in the way of serving: a stderr nobody reads must not
// freeze the server or its shutdown, dropped records are counted and said
// once stderr drains, and a file name cannot forge a line of output.

import assert from "node:assert/strict";
import type { PoemAddress } from "../../lib/client.ts";
import { concat, makePoems, startServer } from "../helpers.ts";

const POEM = "A poem, waited for\nby two thousand clients\nwhile nobody reads the logs.\n";
const encoder = new TextEncoder();
const SIZE = encoder.encode(POEM).length;

/**
 * A server frozen on its full stderr never answers: any bound catches it, so
 * these are far above what a busy 2-core machine takes.
 */
const FROZEN_MS = 20_000;

/** Fetches a poem, failing after `ms` instead of waiting on a frozen server. */
async function fetchWithin(address: PoemAddress, ms: number): Promise<Uint8Array> {
  const conn = await Deno.connect({ ...address, transport: "tcp" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, ms);
  const parts: Uint8Array[] = [];
  try {
    const buffer = new Uint8Array(4096);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      parts.push(buffer.slice(0, n));
    }
  } catch (err) {
    if (!timedOut) throw err;
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn.close();
  }
  if (timedOut) throw new Error(`no whole poem from port ${address.port} within ${ms} ms`);
  return concat(parts);
}

/** `count` fetches, `concurrency` at a time, each checked against `expected`. */
async function fetchMany(
  address: PoemAddress,
  count: number,
  expected: Uint8Array,
  concurrency = 16,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      assert.deepEqual(await fetchWithin(address, FROZEN_MS), expected);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Sends SIGTERM; fails if the process has not ended within `ms`. */
async function stopWithin(server: Awaited<ReturnType<typeof startServer>>, ms: number) {
  const killer = setTimeout(() => server.process.kill("SIGKILL"), ms);
  const started = performance.now();
  const status = await server.stop("SIGTERM");
  clearTimeout(killer);
  const took = performance.now() - started;
  assert.ok(took < ms, `SIGTERM took ${took.toFixed(0)} ms`);
  return status;
}

const posix = Deno.build.os !== "windows";

Deno.test({
  name: "a stderr nobody reads: 2,000 clients get their poem, and SIGTERM still exits 0",
  ignore: !posix,
  async fn() {
    const poems = await makePoems({ "waited.txt": POEM });
    const server = await startServer([poems.path("waited.txt"), "--iface", "127.0.0.1"], {
      stallStderr: true,
    });
    try {
      const started = performance.now();
      await fetchMany(server.addresses[0], 2000, encoder.encode(POEM));
      const seconds = (performance.now() - started) / 1000;
      assert.ok(seconds < 120, `2,000 fetches took ${seconds.toFixed(1)} s`);
      const status = await stopWithin(server, FROZEN_MS);
      assert.equal(status.code, 0);
    } finally {
      await server.stop("SIGKILL");
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "dropped log records are counted, and said once stderr drains",
  ignore: !posix,
  async fn() {
    // A long name makes each connection record about 400 bytes, so 4,000 of
    // them overflow the 1 MiB buffer plus the pipe.
    const name = `${"a-rather-long-poem-name-".repeat(10)}.txt`;
    const poems = await makePoems({ [name]: POEM });
    const server = await startServer([poems.path(name), "--iface", "127.0.0.1"], {
      stallStderr: true,
    });
    const total = 4000;
    try {
      await fetchMany(server.addresses[0], total, encoder.encode(POEM));
      server.drainStderr();
      const text = await server.waitForStderr(/Dropped \d+ log records/);
      assert.match(
        text,
        /\[WRN\] poetry\.log: Dropped \d+ log records: stderr was not keeping up\./,
      );
      const status = await stopWithin(server, FROZEN_MS);
      assert.equal(status.code, 0);
      const all = server.stderr();
      // At exit, with stderr read again, no record is lost.
      assert.match(all.slice(-1000), /\] poetry\.server: Shut down: [^\n]*\.\n$/);
      const completed = new RegExp(` of ${SIZE} bytes of .* completed\\.`, "g");
      const logged = all.match(completed)?.length ?? 0;
      const dropped = [...all.matchAll(/Dropped (\d+) log records/g)]
        .reduce((sum, m) => sum + Number(m[1]), 0);
      assert.ok(dropped > 0);
      assert.equal(logged + dropped, total, `${logged} logged + ${dropped} dropped`);
    } finally {
      await server.stop("SIGKILL");
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "a file name with a newline makes one Serving line and one log line",
  // Windows file names cannot hold a newline.
  ignore: !posix,
  async fn() {
    const forged = "x\nServing fake.txt on 127.0.0.1:1.txt";
    const poems = await makePoems({ [forged]: POEM });
    const server = await startServer([poems.dir, "--iface", "127.0.0.1"]);
    try {
      assert.equal(server.lines.length, 1);
      assert.ok(server.lines[0].includes("x\\nServing fake.txt on 127.0.0.1:1.txt on 127.0.0.1:"));
      assert.deepEqual(await fetchWithin(server.addresses[0], FROZEN_MS), encoder.encode(POEM));
      await server.waitForStderr(/ completed\.\n/);
    } finally {
      const status = await server.stop();
      assert.equal(status.code, 0);
      assert.equal(await server.restOfStdout(), "", "no second line on stdout");
      await poems.cleanup();
    }
    const lines = server.stderr().split("\n").filter((l) => l !== "");
    for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \+00 \[/, l);
    assert.ok(
      lines.some((l) => l.includes(`x\\nServing fake.txt on 127.0.0.1:1.txt (${SIZE} bytes)`)),
    );
  },
});
