// Stats without the admin endpoint: SIGUSR1 and --stats-interval write one
// record of totals and the server goes on; --log-level debug shows each
// accepted client and each paced write.

import assert from "node:assert/strict";
import { fetchBytes, makePoems, readTimed, startServer } from "../helpers.ts";

const POEM = "Tell me how many,\ntell me how much.\n";
const SIZE = new TextEncoder().encode(POEM).length;
const posix = Deno.build.os !== "windows";

Deno.test({
  name: "SIGUSR1 writes one stats record of totals and the server goes on serving",
  ignore: !posix,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM });
    const server = await startServer(["--iface", "127.0.0.1", poems.path("p.txt")]);
    try {
      for (let i = 0; i < 2; i++) await fetchBytes(server.addresses[0]);
      await server.waitForLines(/: completed\./, 2);
      server.process.kill("SIGUSR1");
      const stderr = await server.waitForStderr(/Stats:/);
      assert.match(
        stderr,
        new RegExp(
          `Stats: 2 completed, 0 client left, 0 timed out, 0 cut short, 0 error, 0 denied; ` +
            `${
              2 * SIZE
            } bytes sent; 0 in flight; 0 accept errors; 0 log records dropped; up \\d+ s\\.`,
        ),
      );
      // Still serving after the signal.
      assert.equal((await fetchBytes(server.addresses[0])).length, SIZE);
      // The client has its poem before the server's end is over (the
      // lingering close ends when the client's close arrives); the transfer
      // is counted once it ends, so wait for its record before asking.
      await server.waitForLines(/: completed\./, 3);
      server.process.kill("SIGUSR1");
      await server.waitForStderr(
        new RegExp(`Stats: 3 completed, .*; ${3 * SIZE} bytes sent; 0 in flight;`),
      );
      assert.equal((await server.stop()).code, 0);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test("--stats-interval writes the record periodically, in JSON with its fields too", async () => {
  const poems = await makePoems({ "p.txt": POEM });
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--stats-interval",
    "0.2",
    "--log-format",
    "json",
    poems.path("p.txt"),
  ]);
  try {
    await fetchBytes(server.addresses[0]);
    const stderr = await server.waitForLines(/"Stats: 1 completed/, 2, 3000);
    const record = JSON.parse(stderr.split("\n").find((l) => l.includes('"Stats: 1 completed'))!);
    assert.equal(record.logger, "poetry.stats");
    assert.equal(record.completed, 1);
    assert.equal(record.sentBytes, SIZE);
    assert.equal(record.inFlight, 0);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("--log-level debug: a record per accepted client and per paced write; info has neither", async () => {
  const poems = await makePoems({ "p.txt": "x".repeat(30) });
  const args = [
    "--iface",
    "127.0.0.1",
    "--num-bytes",
    "10",
    "--delay",
    "0.05",
    poems.path("p.txt"),
  ];
  const debug = await startServer(["--log-level", "debug", ...args]);
  try {
    const { bytes } = await readTimed(debug.addresses[0]);
    assert.equal(bytes.length, 30);
    const stderr = await debug.waitForStderr(/: completed\./);
    assert.match(
      stderr,
      /\[DBG\] poetry\.connection: 127\.0\.0\.1:\d+ accepted on 127\.0\.0\.1:\d+ for /,
    );
    const writes = stderr.match(
      /\[DBG\] poetry\.connection\.write: 127\.0\.0\.1:\d+ took 10 bytes: \d+ of 30 sent\./g,
    );
    assert.deepEqual(writes?.map((w) => /(\d+) of 30/.exec(w)![1]), ["10", "20", "30"], stderr);
  } finally {
    await debug.stop();
  }
  const info = await startServer(args);
  try {
    await readTimed(info.addresses[0]);
    const stderr = await info.waitForStderr(/: completed\./);
    assert.doesNotMatch(stderr, /DBG|accepted on|took 10 bytes/);
  } finally {
    await info.stop();
    await poems.cleanup();
  }
});

Deno.test({
  name: "SIGUSR2 writes the same record and opens no debugger (SIGUSR1 does, in Deno 2.9.2+)",
  ignore: !posix,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM });
    const server = await startServer(["--iface", "127.0.0.1", poems.path("p.txt")]);
    try {
      await fetchBytes(server.addresses[0]);
      await new Promise((resolve) => setTimeout(resolve, 600)); // past Deno's SIGUSR1 grace period
      server.process.kill("SIGUSR2");
      await server.waitForStderr(/Stats: 1 completed/);
      assert.doesNotMatch(server.stderr(), /Debugger listening/);
      assert.equal((await fetchBytes(server.addresses[0])).length, SIZE);
      assert.equal((await server.stop()).code, 0);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});
