// Every fault on purpose, met by clients the project did not write: Python's
// socket module (bytes, end of stream or ECONNRESET, timings) and the
// tutorial's Twisted client (callback or errback). One server, one listener
// per fault, declared in a --config file; the real program over real TCP on
// loopback. A test without Python (or Twisted) skips and says so.

import assert from "node:assert/strict";
import { makePoems, pythonWith, runPythonClient, seededBytes, startServer } from "../helpers.ts";

const POEM = seededBytes(20_000, 11);
const PACE = { "num-bytes": 2000, delay: 0.05 };
/** One listener per fault, in this order; `clean` and `paced` are the controls. */
const LISTENERS: Record<string, Record<string, unknown>> = {
  clean: {},
  "close-after": { faults: ["close-after=100"] },
  "reset-after": { faults: ["reset-after=100"] },
  "stall-after": { faults: ["stall-after=100"] },
  "first-byte-delay": { faults: ["first-byte-delay=0.5"] },
  jitter: { ...PACE, faults: ["jitter=0.1"] },
  chunks: { faults: ["chunks=1-64"] },
  "close-delay": { faults: ["close-delay=0.5"] },
  refuse: { faults: ["refuse"] },
  paced: PACE,
  probability: { faults: ["close-after=10,probability=0.5"] },
};
const NAMES = Object.keys(LISTENERS);

const python = await pythonWith("socket");
const twistedPython = await pythonWith("twisted");

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes.slice());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Starts the server with one listener per fault; `seed` is --seed. */
async function startFaultyServer(seed: number) {
  const poems = await makePoems({ "poem.bin": POEM });
  const config = {
    iface: "127.0.0.1",
    listeners: NAMES.map((name) => ({ poem: "poem.bin", ...LISTENERS[name] })),
  };
  await Deno.writeTextFile(
    poems.path("faults.jsonc"),
    `// one listener per fault\n${JSON.stringify(config, null, 2)}\n`,
  );
  // A write timeout far below the delays and the stall: a fault's own wait
  // must not be taken for a client that stopped reading.
  const server = await startServer(
    ["--config", poems.path("faults.jsonc"), "--seed", String(seed), "--write-timeout", "0.3"],
    { listeners: NAMES.length },
  );
  const port = (name: string) => String(server.addresses[NAMES.indexOf(name)].port);
  return { server, poems, port };
}

Deno.test({
  name: "faults: Python's socket client sees each fault as declared",
  ignore: !python,
  async fn() {
    const { server, poems, port } = await startFaultyServer(7);
    try {
      const fetch = async (name: string, ...extra: string[]) =>
        (await runPythonClient(python!, "socket_client.py", ["127.0.0.1", port(name), ...extra]))[
          0
        ];
      const [clean, close, reset, stall, firstByte, jitter, chunks, closeDelay, refuse, paced] =
        await Promise.all([
          fetch("clean"),
          fetch("close-after"),
          fetch("reset-after"),
          fetch("stall-after", "--idle", "1.2"),
          fetch("first-byte-delay"),
          fetch("jitter"),
          fetch("chunks"),
          fetch("close-delay"),
          fetch("refuse"),
          fetch("paced"),
        ]);
      const whole = await sha256(POEM);
      const first100 = await sha256(POEM.subarray(0, 100));
      assert.deepEqual([clean.bytes, clean.end, clean.sha256], [20_000, "eof", whole]);

      // close-after: a short poem, then an orderly end of stream.
      assert.deepEqual([close.bytes, close.end, close.sha256], [100, "eof", first100]);
      // reset-after: the same bytes, then ECONNRESET, never a clean EOF.
      assert.deepEqual([reset.bytes, reset.end, reset.sha256], [100, "reset", first100]);
      // stall-after: 100 bytes, then nothing while the client waits (the
      // 0.3 s write timeout does not end it); the client gives up and leaves.
      assert.deepEqual([stall.bytes, stall.end, stall.sha256], [100, "idle", first100]);
      // first-byte-delay: the whole poem, its first byte half a second late.
      assert.equal(firstByte.sha256, whole);
      assert.ok(
        (firstByte.first_byte_ms as number) >= 480,
        `first byte ${firstByte.first_byte_ms}`,
      );
      // And the clean listener, fetched at the same moment, is not delayed:
      // compared side by side, as a busy machine slows both; half the delay
      // is the margin for one client being scheduled later than the other.
      assert.ok(
        (firstByte.first_byte_ms as number) - (clean.first_byte_ms as number) >= 250,
        `first byte ${firstByte.first_byte_ms} ms, clean ${clean.first_byte_ms} ms`,
      );
      // jitter: nine pauses of 50 ms, each 0..100 ms longer.
      assert.equal(jitter.sha256, whole);
      // At most 900 ms in all; the upper bound is generous, as late timers
      // add to the nine jittered pauses, and only catches seconds taken for
      // milliseconds (tests/fixture/faults_test.ts checks each pause's draw).
      const extra = (jitter.end_ms as number) - (paced.end_ms as number);
      assert.ok(extra > 100 && extra < 5000, `jitter added ${extra} ms over ${paced.end_ms}`);
      // chunks: the poem whole, in many small pieces.
      assert.equal(chunks.sha256, whole);
      assert.ok((chunks.reads as number[]).length > 5, `reads ${chunks.reads}`);
      // close-delay: every byte at once, the end of stream half a second later.
      assert.equal(closeDelay.sha256, whole);
      // Measured within the one connection, so a busy machine slows both ends
      // alike; 250 ms (half the delay) allows the last read to come late.
      assert.ok(
        (closeDelay.end_ms as number) - (closeDelay.last_byte_ms as number) >= 250,
        `last byte at ${closeDelay.last_byte_ms} ms, end at ${closeDelay.end_ms} ms`,
      );
      assert.ok((closeDelay.end_ms as number) >= 480, `end at ${closeDelay.end_ms}`);
      // refuse: not a byte, closed at once: before the first-byte-delay
      // listener, fetched at the same moment, sends its first byte.
      assert.deepEqual([refuse.bytes, refuse.end], [0, "eof"]);
      assert.ok(
        (refuse.end_ms as number) < (firstByte.first_byte_ms as number),
        `refused ${refuse.end_ms} ms, first byte ${firstByte.first_byte_ms} ms`,
      );

      // Each record says which faults its connection got.
      const log = await server.waitForLines(/Faults: /, 8);
      // The cuts, the reset, the refusal and the stall the client left are
      // the faults' doing (faulted); the whole poem in chunks is completed.
      assert.match(log, /got 100 of 20000 bytes .* faulted\. Faults: close-after=100\./);
      assert.match(log, /got at most 100 of 20000 bytes .* faulted\. Faults: reset-after=100\./);
      assert.match(log, /got 100 of 20000 bytes .* faulted\. Faults: stall-after=100\./);
      assert.match(log, /got 0 of 20000 bytes .* faulted\. Faults: refuse\./);
      assert.match(log, /got 20000 of 20000 bytes .* completed\. Faults: chunks=1-64\./);
      assert.doesNotMatch(log, /timed out/);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "faults: the same --seed gives the same connections the same faults; another seed others",
  ignore: !python,
  async fn() {
    const run = async (seed: number) => {
      const { server, poems, port } = await startFaultyServer(seed);
      try {
        const results = await runPythonClient(python!, "socket_client.py", [
          "127.0.0.1",
          port("probability"),
          "--count",
          "24",
        ]);
        return results.map((r) => r.bytes as number);
      } finally {
        await server.stop();
        await poems.cleanup();
      }
    };
    const first = await run(7);
    assert.deepEqual(await run(7), first);
    assert.ok(first.includes(10) && first.includes(20_000), `${first}`);
    assert.notDeepEqual(await run(8), first);
  },
});

Deno.test({
  name:
    "faults: the tutorial's Twisted client: a reset reaches its errback, close-after a short poem",
  ignore: !twistedPython,
  async fn() {
    const { server, poems, port } = await startFaultyServer(7);
    try {
      // Only stall-after needs the client's timeout to end; the others must
      // end on their own. A 20 KB poem in pieces of 1-64 bytes with 1 ms
      // between them takes 2-3 s on a busy machine (each gap is a timer),
      // so they get a deadline that only a hang reaches.
      const fetch = (timeout: number, names: string[]) =>
        runPythonClient(twistedPython!, "get_poetry.py", [
          "--timeout",
          String(timeout),
          ...names.map((name) => `127.0.0.1:${port(name)}`),
        ]);
      const names = NAMES.filter((name) => name !== "probability" && name !== "stall-after");
      const [results, [stalled]] = await Promise.all([
        fetch(30, names),
        fetch(1.5, ["stall-after"]),
      ]);
      const by = Object.fromEntries(names.map((name, i) => [name, results[i]]));
      by["stall-after"] = stalled;
      for (
        const name of ["clean", "first-byte-delay", "jitter", "chunks", "close-delay", "paced"]
      ) {
        assert.deepEqual(by[name], { result: "poem", bytes: 20_000 }, name);
      }
      assert.deepEqual(by["close-after"], { result: "poem", bytes: 100 });
      assert.deepEqual(by["reset-after"], {
        result: "errback",
        failure: "ConnectionLost",
        bytes: 100,
      });
      assert.deepEqual(by["stall-after"], {
        result: "errback",
        failure: "TimeoutError",
        bytes: 100,
      });
      assert.deepEqual(by.refuse, { result: "poem", bytes: 0 });
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

if (!python) console.error("skipped: no python3 with the socket module");
if (!twistedPython) {
  console.error("skipped: no python3 with Twisted (apt-get install python3-twisted)");
}
