import assert from "node:assert/strict";
import { exposition, Histogram } from "../../lib/observe/exposition.ts";
import { PoetryMetrics } from "../../lib/observe/metrics.ts";
import { serve } from "../../lib/server/server.ts";
import { delay, fetchBytes, makePoems } from "../helpers.ts";

Deno.test("metrics: a histogram counts each observation in the first bucket that holds it", () => {
  const h = new Histogram([0.1, 1]);
  for (const value of [0.05, 0.1, 0.5, 3]) h.observe(value);
  assert.deepEqual(h.buckets, [2, 1]);
  assert.equal(h.count, 4);
  assert.equal(h.sum, 3.65);
  const other = new Histogram([0.1, 1]);
  other.observe(0.2);
  h.add(other);
  assert.deepEqual(h.buckets, [2, 2]);
  assert.equal(h.count, 5);
});

Deno.test("metrics: exposition writes cumulative buckets, +Inf, sum and count", () => {
  const h = new Histogram([0.1, 1]);
  for (const value of [0.05, 0.5, 3]) h.observe(value);
  const text = exposition([{
    name: "d_seconds",
    help: "Durations.",
    type: "histogram",
    series: [{ labels: { poem: "a.txt" }, histogram: h }],
  }]);
  assert.equal(
    text,
    [
      "# HELP d_seconds Durations.",
      "# TYPE d_seconds histogram",
      'd_seconds_bucket{poem="a.txt",le="0.1"} 1',
      'd_seconds_bucket{poem="a.txt",le="1"} 2',
      'd_seconds_bucket{poem="a.txt",le="+Inf"} 3',
      'd_seconds_sum{poem="a.txt"} 3.55',
      'd_seconds_count{poem="a.txt"} 3',
      "",
    ].join("\n"),
  );
});

Deno.test("metrics: label values and help escape backslash, quote and newline", () => {
  const text = exposition([{
    name: "x_total",
    help: "A \\ and a\nnewline.",
    type: "counter",
    samples: [{ labels: { poem: 'po"em\\\nname' }, value: 2 }, { value: NaN }],
  }]);
  assert.equal(
    text,
    [
      "# HELP x_total A \\\\ and a\\nnewline.",
      "# TYPE x_total counter",
      'x_total{poem="po\\"em\\\\\\nname"} 2',
      "x_total NaN",
      "",
    ].join("\n"),
  );
});

Deno.test("metrics: faults applied by poem, listener and fault, each of the listener's faults from 0", async () => {
  const poems = await makePoems({ "a.txt": "0123456789\n" });
  const metrics = new PoetryMetrics();
  const server = await serve([poems.path("a.txt")], {
    iface: "127.0.0.1",
    observer: metrics,
    faults: ["jitter=0.1,probability=0", "close-after=3"],
    seed: 1,
  });
  try {
    const faults = () => {
      const family = metrics.families(server).find((f) => f.name === "poetry_faults_applied_total");
      if (family?.type !== "counter") return assert.fail("no faults family");
      return family.samples.map((s) => [s.labels?.listener, s.labels?.fault, s.value]);
    };
    // In the fault table's order, not the command line's.
    assert.deepEqual(faults(), [["0", "close-after", 0], ["0", "jitter", 0]]);
    for (let i = 0; i < 2; i++) {
      assert.equal((await fetchBytes(server.listeners[0].addr)).length, 3);
    }
    for (let i = 0; i < 100 && server.listeners[0].counts.faulted < 2; i++) await delay(20);
    assert.deepEqual(faults(), [["0", "close-after", 2], ["0", "jitter", 0]]);
    const totals = metrics.stats.snapshot(server);
    assert.equal(totals.faulted, 2);
    assert.equal(totals.completed, 0);
    assert.deepEqual(totals.faultsApplied, { "close-after": 2, jitter: 0 });
  } finally {
    await server.shutdown(0);
    await poems.cleanup();
  }
});
