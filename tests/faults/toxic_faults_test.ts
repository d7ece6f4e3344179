// The faults that stand for Toxiproxy's toxics (latency, bandwidth,
// reset-at, timeout, chunk-delay), met by a client over real TCP on
// loopback, the real program serving: what arrives, when, and how it ends.
// Timing bounds are generous below and loose above: the machine is shared.

import assert from "node:assert/strict";
import { delay, makePoems, readToEnd, seededBytes, startServer } from "../helpers.ts";

const POEM = seededBytes(12_000, 23);
const PACE = { "num-bytes": 3000, delay: 0.1 };
/** One listener per case, in this order. */
const LISTENERS: Record<string, Record<string, unknown>> = {
  clean: {},
  latency: { faults: ["latency=0.5"] },
  paced: PACE,
  "paced latency": { ...PACE, faults: ["latency=0.2-0.3"] },
  bandwidth: { faults: ["bandwidth=4000"] },
  "reset-at": { "num-bytes": 1000, delay: 0.2, faults: ["reset-at=1"] },
  "reset-at=0": { faults: ["reset-at=0"] },
  timeout: { faults: ["timeout=1"] },
  "chunk-delay": { faults: ["chunks=2000-3000", "chunk-delay=0.2"] },
  "paced chunk-delay": { ...PACE, faults: ["chunk-delay=0.2"] },
  seeded: { faults: ["chunks=500-3000", "chunk-delay=0.1", "latency=0.1-0.9"] },
};
const NAMES = Object.keys(LISTENERS);

/** Starts one server with a listener per case; `extra` are more options. */
async function startToxicServer(
  listeners: Record<string, Record<string, unknown>>,
  extra: string[] = [],
) {
  const poems = await makePoems({ "poem.bin": POEM });
  const config = {
    iface: "127.0.0.1",
    listeners: Object.values(listeners).map((own) => ({ poem: "poem.bin", ...own })),
  };
  await Deno.writeTextFile(poems.path("toxics.json"), JSON.stringify(config, null, 2));
  // A write timeout far below the waits: a fault's own wait is no slow client.
  const server = await startServer(
    ["--config", poems.path("toxics.json"), "--write-timeout", "0.3", ...extra],
    { listeners: Object.keys(listeners).length },
  );
  const names = Object.keys(listeners);
  const address = (name: string) => server.addresses[names.indexOf(name)];
  return { server, poems, address };
}

/** Arrivals closer than `ms` to the one before count as one piece (a write split in two reads). */
function pieces(arrivals: number[], sizes: number[] = [], ms = 50): { at: number; size: number }[] {
  const out: { at: number; size: number }[] = [];
  arrivals.forEach((at, i) => {
    const last = out.at(-1);
    if (last && at - arrivals[i - 1] < ms) last.size += sizes[i] ?? 0;
    else out.push({ at, size: sizes[i] ?? 0 });
  });
  return out;
}

/** Reads, keeping each read's size too. */
async function readSizes(address: Deno.NetAddr | { hostname: string; port: number }) {
  const conn = await Deno.connect({ ...address, transport: "tcp" });
  const started = performance.now();
  const buffer = new Uint8Array(64 * 1024);
  const arrivals: number[] = [];
  const sizes: number[] = [];
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) {
      arrivals.push(performance.now() - started);
      sizes.push(n);
    }
  } finally {
    conn.close();
  }
  return { arrivals, sizes };
}

Deno.test("toxic faults: each as declared, over real TCP; the bytes exact where nothing cuts", async () => {
  const { server, poems, address } = await startToxicServer(
    Object.fromEntries(NAMES.filter((n) => n !== "seeded").map((n) => [n, LISTENERS[n]])),
    ["--seed", "7"],
  );
  try {
    const names = NAMES.filter((n) => n !== "seeded");
    const results = await Promise.all(names.map((name) => readToEnd(address(name))));
    const by = Object.fromEntries(names.map((name, i) => [name, results[i]]));
    const figures = Object.fromEntries(
      names.map((
        n,
      ) => [n, { bytes: by[n].bytes.length, end: by[n].end, ms: Math.round(by[n].ms) }]),
    );
    console.log(JSON.stringify(figures));
    for (const name of ["clean", "latency", "paced", "paced latency", "bandwidth", "chunk-delay"]) {
      assert.deepEqual(by[name].bytes, POEM, `${name}: the whole poem, exactly`);
      assert.equal(by[name].end, "eof", name);
    }
    assert.deepEqual(by["paced chunk-delay"].bytes, POEM);

    // latency: the first byte and the end half a second later than without.
    const latency = by.latency;
    assert.ok(latency.arrivals[0] >= 480, `first byte at ${latency.arrivals[0]} ms`);
    assert.ok(latency.ms >= 480 && latency.ms < 10_000, `latency: ${latency.ms} ms`);
    // In slow mode each of the 4 writes waits 0.2-0.3 s more than its pace.
    const pacedLatency = by["paced latency"];
    assert.ok(pacedLatency.arrivals[0] >= 190, `first byte at ${pacedLatency.arrivals[0]} ms`);
    const added = pacedLatency.ms - by.paced.ms;
    assert.ok(added >= 700 && pacedLatency.ms < 15_000, `latency added ${added} ms to the pace`);

    // bandwidth=4000: after the first piece, 11,600 bytes in 2.9 s, within 10 %.
    const bandwidth = by.bandwidth;
    const firstPiece = pieces(bandwidth.arrivals)[0].at;
    const firstBytes = 400;
    const rate = (POEM.length - firstBytes) / ((bandwidth.ms - firstPiece) / 1000);
    assert.ok(rate >= 3600 && rate <= 4400, `measured ${Math.round(rate)} bytes/s for 4000`);
    assert.ok(bandwidth.arrivals.length >= 20, `${bandwidth.arrivals.length} reads, smooth`);

    // reset-at=1: ECONNRESET at about 1 s, after a prefix of the poem.
    const reset = by["reset-at"];
    assert.equal(reset.end, "reset");
    assert.ok(reset.ms >= 900 && reset.ms < 5000, `reset at ${reset.ms} ms`);
    assert.ok(reset.bytes.length >= 1000 && reset.bytes.length < POEM.length);
    assert.deepEqual(reset.bytes, POEM.subarray(0, reset.bytes.length), "a prefix of the poem");
    // reset-at=0: a reset at once, nothing sent.
    assert.deepEqual([by["reset-at=0"].bytes.length, by["reset-at=0"].end], [0, "reset"]);

    // timeout=1: not a byte, then end of stream at about 1 s.
    const timeout = by.timeout;
    assert.deepEqual([timeout.bytes.length, timeout.end], [0, "eof"]);
    assert.ok(timeout.ms >= 950 && timeout.ms < 5000, `end of stream at ${timeout.ms} ms`);

    // chunk-delay=0.2 with chunks of 2000-3000 bytes: 4-6 pieces, 0.2 s apart.
    const chunked = pieces(by["chunk-delay"].arrivals);
    assert.ok(chunked.length >= 4, `${chunked.length} pieces`);
    const gaps = chunked.slice(1).map((p, i) => Math.round(p.at - chunked[i].at));
    assert.ok(gaps.every((ms) => ms >= 150), `gaps ${gaps}`);
    // Without chunks, between the sender's writes, on top of the pace.
    const addedByDelay = by["paced chunk-delay"].ms - by.paced.ms;
    assert.ok(addedByDelay >= 550, `chunk-delay added ${addedByDelay} ms to the pace`);

    // The records: the cuts as the existing ones, with their faults.
    const log = await server.waitForLines(/Faults: /, names.length - 2, 10_000);
    assert.match(log, /got at most \d+ of 12000 bytes .* faulted\. Faults: reset-at=1\./);
    assert.match(log, /got at most 0 of 12000 bytes .* faulted\. Faults: reset-at=0\./);
    assert.match(log, /got 0 of 12000 bytes .* faulted\. Faults: timeout=1\./);
    assert.match(log, /got 12000 of 12000 bytes .* completed\. Faults: bandwidth=4000\./);
    assert.match(log, /got 12000 of 12000 bytes .* completed\. Faults: latency=0\.5\./);
    assert.doesNotMatch(log, /timed out|client left/);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("toxic faults: timeout=0 sends nothing and stays open; SIGTERM ends it within the drain timeout", async () => {
  const { server, poems, address } = await startToxicServer(
    { "timeout=0": { faults: ["timeout=0"] } },
    ["--drain-timeout", "1"],
  );
  try {
    const conn = await Deno.connect({ ...address("timeout=0"), transport: "tcp" });
    const buffer = new Uint8Array(1024);
    const read = conn.read(buffer).catch((err) => err as Error);
    const early = await Promise.race([read, delay(2000).then(() => "open" as const)]);
    assert.equal(early, "open", "no byte and no end after 2 s");
    const stopping = performance.now();
    const status = server.stop();
    const ended = await Promise.race([read, delay(8000).then(() => "still open" as const)]);
    const ms = performance.now() - stopping;
    conn.close();
    assert.ok(ended === null || ended instanceof Deno.errors.ConnectionReset, `ended: ${ended}`);
    assert.ok(ms < 6000, `ended ${ms} ms after SIGTERM (drain timeout 1 s)`);
    assert.equal((await status).code, 0);
    assert.match(server.stderr(), /got 0 of 12000 bytes .* faulted\. Faults: timeout=0\./);
    assert.match(
      server.stderr(),
      /Shut down: 0 completed, 1 faulted, 0 client left, 0 timed out, 0 cut short, .*; faults applied: 1 timeout\./,
    );
    console.log(`timeout=0: open after 2 s; ended ${Math.round(ms)} ms after SIGTERM`);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("toxic faults: the same --seed draws the same latencies and chunk sizes", async () => {
  const run = async (seed: number) => {
    const { server, poems, address } = await startToxicServer(
      { seeded: LISTENERS.seeded },
      ["--seed", String(seed)],
    );
    try {
      const out: { first: number; sizes: number[] }[] = [];
      // One after another: the draws follow the order of the connections.
      for (let i = 0; i < 3; i++) {
        const { arrivals, sizes } = await readSizes(address("seeded"));
        assert.equal(sizes.reduce((a, b) => a + b), POEM.length);
        out.push({ first: arrivals[0], sizes: pieces(arrivals, sizes).map((p) => p.size) });
      }
      return out;
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  };
  const [a, b, c] = [await run(7), await run(7), await run(8)];
  console.log(
    JSON.stringify({ seed7: a, again: b, seed8: c }, (k, v) => k === "first" ? Math.round(v) : v),
  );
  // Where the chunks end, as offsets in the poem. A reader late by more than
  // the chunk delay (a loaded machine) reads two chunks as one and loses an
  // offset, so runs are compared by the offsets they share: the same seed
  // shares most of them; another seed, next to none (12,000 possible places).
  const shared = (x: typeof a, y: typeof a) => {
    let both = 0, fewest = 0;
    x.forEach((run, i) => {
      const offsets = (r: { sizes: number[] }) =>
        new Set(
          r.sizes.slice(0, -1).map((_, k) => r.sizes.slice(0, k + 1).reduce((s, n) => s + n)),
        );
      const [ox, oy] = [offsets(run), offsets(y[i])];
      both += [...ox].filter((o) => oy.has(o)).length;
      fewest += Math.min(ox.size, oy.size);
    });
    return both / fewest;
  };
  assert.ok(shared(a, b) >= 0.6, `seed 7 twice shares ${shared(a, b)} of the chunk ends`);
  assert.ok(shared(a, c) < 0.3, `seeds 7 and 8 share ${shared(a, c)} of the chunk ends`);
  // The first byte waits the drawn latency (0.1-0.9 s): the same draw, give or take the load.
  for (let i = 0; i < a.length; i++) {
    assert.ok(a[i].first >= 90 && b[i].first >= 90);
    assert.ok(Math.abs(a[i].first - b[i].first) < 400, `first bytes ${a[i].first}, ${b[i].first}`);
  }
});
