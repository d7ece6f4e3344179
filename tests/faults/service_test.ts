// The real server run as a service: reload storms, --watch across editor-style
// saves, and the double Ctrl-C that `deno task start` delivers.
// Linux only: memory is read from /proc, and the signals are POSIX ones.
// Each prints the figures it saw, for the record.

import assert from "node:assert/strict";
import {
  delay,
  fetchBytes,
  makePoems,
  readTimed,
  rssKiB,
  seededBytes,
  startServer,
} from "../helpers.ts";

const linux = Deno.build.os === "linux";

function serviceTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `service: ${name}`, ignore: !linux, fn });
}

/** Fetches until the poem is `expected` or `timeoutMs` passes; returns the last bytes seen. */
async function fetchUntil(
  address: Deno.NetAddr | { hostname: string; port: number },
  expected: Uint8Array,
  timeoutMs = 3000,
): Promise<Uint8Array> {
  const deadline = Date.now() + timeoutMs;
  let got = await fetchBytes(address);
  while (!sameBytes(got, expected) && Date.now() < deadline) {
    await delay(50);
    got = await fetchBytes(address);
  }
  return got;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function count(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern.source, "g"))?.length ?? 0;
}

serviceTest("100 SIGHUPs in a second re-read a 60 MiB poem a few times, not 100", async () => {
  // Under STREAM_THRESHOLD (64 MiB), so every re-read holds the whole poem.
  const size = 60 * 1024 * 1024;
  const first = seededBytes(size, 11);
  const dir = await makePoems({ "big.bin": first });
  const server = await startServer(["--log-level", "debug", dir.path("big.bin")]);
  const pid = server.process.pid;
  try {
    const second = first.slice();
    second[size - 1] ^= 0xff;
    await Deno.writeFile(dir.path("big.bin"), second);
    const before = rssKiB(pid);
    let peak = before;
    let storming = true;
    // Until the re-reads have been quiet for a while: a re-read of 60 MiB
    // takes about half a second here, and the last ones end after the storm.
    const sampling = (async () => {
      const rereads = /Re-read |Reloaded |Could not reload /g;
      let seen = 0, quietSince = performance.now();
      const deadline = performance.now() + 30_000;
      while (performance.now() < deadline) {
        peak = Math.max(peak, rssKiB(pid));
        const now = count(server.stderr(), rereads);
        if (storming || now !== seen) [seen, quietSince] = [now, performance.now()];
        if (performance.now() - quietSince > 1500) break;
        await delay(10);
      }
    })();
    const stormStart = performance.now();
    for (let i = 0; i < 100; i++) {
      server.process.kill("SIGHUP");
      await delay(5);
    }
    const stormMs = performance.now() - stormStart;
    storming = false;
    await sampling;
    const text = server.stderr();
    const reloaded = count(text, /Reloaded .*big\.bin/);
    const reread = count(text, /Re-read .*big\.bin|Reloaded .*big\.bin/);
    console.log(
      `RSS before ${(before / 1024).toFixed(0)} MiB, peak ${(peak / 1024).toFixed(0)} MiB ` +
        `(+${((peak - before) / 1024).toFixed(0)} MiB); ${reloaded} Reloaded records, ` +
        `${reread} re-read records; storm took ${stormMs.toFixed(0)} ms`,
    );
    assert.ok(peak - before < 300 * 1024, `RSS grew by ${((peak - before) / 1024).toFixed(0)} MiB`);
    assert.equal(reloaded, 1, "one change, one Reloaded record");
    // Coalesced: never one per signal. A re-read that finds the file it
    // already has (same inode, size, mtime) is only a stat, so several of
    // those may run during the storm; the memory bound above is the guard.
    assert.ok(reread <= 30, `${reread} re-reads`);
    assert.ok(sameBytes(await fetchBytes(server.addresses[0]), second), "serves the new poem");
  } finally {
    await server.stop();
    await dir.cleanup();
  }
});

serviceTest("--watch keeps seeing a poem replaced by rename, and in-place writes", async () => {
  const dir = await makePoems({ "w.txt": "version 0\n", "other.txt": "another poem\n" });
  const server = await startServer(["--watch", "--log-level", "debug", dir.path("w.txt")], {
    listeners: 1,
  });
  const encoder = new TextEncoder();
  try {
    for (let i = 1; i <= 3; i++) {
      // What vim, `sed -i` and `mv new poem` do: a new file renamed over the old.
      const next = encoder.encode(`version ${i}, by rename\n`.repeat(i));
      await Deno.writeFile(dir.path("w.txt.new"), next);
      await Deno.rename(dir.path("w.txt.new"), dir.path("w.txt"));
      assert.deepEqual(await fetchUntil(server.addresses[0], next), next, `rename ${i}`);
      await delay(300);
    }
    const inPlace = encoder.encode("version 4, written in place\n");
    await Deno.writeFile(dir.path("w.txt"), inPlace);
    assert.deepEqual(await fetchUntil(server.addresses[0], inPlace), inPlace, "in-place write");
    // Its record may still be in the stderr pipe when the new bytes arrive.
    await server.waitForStderr(new RegExp(`Reloaded .*w\\.txt: now ${inPlace.length} bytes`));
    // A file beside the poem is not a poem: changing it reloads nothing.
    const reloadsBefore = count(server.stderr(), /Reloaded /);
    await Deno.writeTextFile(dir.path("other.txt"), "changed\n");
    await delay(400);
    assert.equal(count(server.stderr(), /Reloaded /), reloadsBefore);
    assert.doesNotMatch(server.stderr(), /other\.txt/);
  } finally {
    await server.stop();
    await dir.cleanup();
  }
});

serviceTest("--watch re-reads only the poem that changed, in each directory", async () => {
  const a = await makePoems({ "a.txt": "a0\n", "b.txt": "b0\n" });
  const c = await makePoems({ "c.txt": "c0\n" });
  const server = await startServer(
    ["--watch", "--log-level", "debug", a.path("a.txt"), a.path("b.txt"), c.path("c.txt")],
    { listeners: 3 },
  );
  const encoder = new TextEncoder();
  try {
    await Deno.writeTextFile(c.path("c.txt.new"), "c1\n");
    await Deno.rename(c.path("c.txt.new"), c.path("c.txt"));
    assert.deepEqual(
      await fetchUntil(server.addresses[2], encoder.encode("c1\n")),
      encoder.encode("c1\n"),
    );
    await Deno.writeTextFile(a.path("b.txt"), "b1\n");
    assert.deepEqual(
      await fetchUntil(server.addresses[1], encoder.encode("b1\n")),
      encoder.encode("b1\n"),
    );
    await delay(300);
    const text = server.stderr();
    assert.doesNotMatch(text, /Re-read .*a\.txt|Reloaded .*a\.txt/, "a.txt untouched");
    assert.equal(count(text, /Reloaded .*b\.txt/), 1);
    assert.equal(count(text, /Reloaded .*c\.txt/), 1);
  } finally {
    await server.stop();
    await a.cleanup();
    await c.cleanup();
  }
});

serviceTest("two SIGINTs 10 ms apart (Ctrl-C under deno task) drain, and exit 0", async () => {
  const dir = await makePoems({ "slow.txt": "z".repeat(25) });
  const server = await startServer([
    "--num-bytes",
    "10",
    "--delay",
    "0.5",
    dir.path("slow.txt"),
  ]);
  try {
    const transfers = Array.from({ length: 5 }, () => readTimed(server.addresses[0]));
    await delay(200);
    server.process.kill("SIGINT");
    await delay(10);
    const status = await server.stop("SIGINT");
    const results = await Promise.all(transfers);
    assert.equal(status.code, 0, server.stderr());
    for (const { bytes } of results) assert.equal(bytes.length, 25);
    assert.match(server.stderr(), /press Ctrl-C again to stop at once/);
    assert.match(server.stderr(), /Shut down: 5 (?:served|completed)\b.*\b0 cut short/);
  } finally {
    await dir.cleanup();
  }
});

serviceTest("a second SIGINT 1.2 s after the first exits at once, with code 1", async () => {
  const dir = await makePoems({ "slow.txt": "z".repeat(100) });
  const server = await startServer(["--num-bytes", "10", "--delay", "1", dir.path("slow.txt")]);
  try {
    const transfers = Array.from({ length: 3 }, () => readTimed(server.addresses[0]));
    await delay(200);
    server.process.kill("SIGINT");
    await server.waitForStderr(/Stopped accepting/);
    await delay(1200);
    const started = performance.now();
    const status = await server.stop("SIGINT");
    const ms = performance.now() - started;
    await Promise.all(transfers);
    console.log(`second SIGINT to exit: ${ms.toFixed(0)} ms`);
    assert.equal(status.code, 1);
    assert.ok(ms < 500, `exit took ${ms} ms`);
    assert.match(server.stderr(), /Second signal/);
  } finally {
    await dir.cleanup();
  }
});
