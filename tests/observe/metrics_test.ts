import assert from "node:assert/strict";
import { exposition, Histogram } from "../../lib/observe/exposition.ts";

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
