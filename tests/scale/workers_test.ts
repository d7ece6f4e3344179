// The worker pool in-process (real Web Workers, real sockets), and how the
// main thread adds up what its workers report.

import assert from "node:assert/strict";
import { addReports, type StatusReport } from "../../lib/observe/status.ts";
import { addFamilies, Histogram, type MetricFamily } from "../../lib/observe/exposition.ts";
import { addSummaries, type ShutdownSummary } from "../../lib/server/summary.ts";
import { serve } from "../../lib/server/server.ts";
import { addSnapshots, type StatsSnapshot } from "../../lib/observe/stats.ts";
import { WorkerPool } from "../../lib/scale/workers.ts";
import { fetchBytes, makePoems } from "../helpers.ts";

const linux = Deno.build.os === "linux";

function summary(completed: number, timedOut = false): ShutdownSummary {
  return {
    completed,
    faulted: 1,
    "client left": 1,
    "timed out": 0,
    "cut short": 2,
    error: 0,
    denied: 3,
    acceptErrors: 4,
    badProxyHeaders: 5,
    timedOut,
    faultsApplied: { "close-after": completed },
  };
}

function snapshot(completed: number, dropped: number, uptime: number): StatsSnapshot {
  return {
    completed,
    faulted: 2,
    faultsApplied: { "reset-after": 2, ...(completed > 4 ? { chunks: 1 } : {}) },
    "client left": 0,
    "timed out": 0,
    "cut short": 0,
    error: 0,
    denied: 1,
    sentBytes: 100 * completed,
    inFlight: 2,
    acceptErrors: 0,
    droppedLogRecords: dropped,
    uptimeSeconds: uptime,
  };
}

Deno.test("workers: summaries add up, and one that timed out makes the whole timed out", () => {
  assert.deepEqual(addSummaries([summary(1), summary(2, true), summary(3)]), {
    completed: 6,
    faulted: 3,
    "client left": 3,
    "timed out": 0,
    "cut short": 6,
    error: 0,
    denied: 9,
    acceptErrors: 12,
    badProxyHeaders: 15,
    timedOut: true,
    faultsApplied: { "close-after": 6 },
  });
});

Deno.test("workers: stats add up, but dropped records and uptime are the main thread's", () => {
  const total = addSnapshots(snapshot(5, 7, 60), [snapshot(3, 0, 59), snapshot(2, 0, 58)]);
  assert.equal(total.completed, 10);
  assert.equal(total.sentBytes, 1000);
  assert.equal(total.inFlight, 6);
  assert.equal(total.denied, 3);
  assert.equal(total.droppedLogRecords, 7);
  assert.equal(total.uptimeSeconds, 60);
  assert.equal(total.faulted, 6);
  assert.deepEqual(total.faultsApplied, { "reset-after": 6, chunks: 1 });
});

Deno.test("workers: metric series add up by labels; the process's families are counted once", () => {
  const families = (completed: number, rss: number, durations: number[]): MetricFamily[] => {
    const histogram = new Histogram([1, 10]);
    for (const d of durations) histogram.observe(d);
    return [
      {
        name: "poetry_connections_total",
        help: "h",
        type: "counter",
        samples: [
          { labels: { poem: "a", outcome: "completed" }, value: completed },
          { labels: { poem: "b", outcome: "completed" }, value: 1 },
        ],
      },
      {
        name: "poetry_connection_duration_seconds",
        help: "h",
        type: "histogram",
        series: [{ labels: { poem: "a" }, histogram }],
      },
      {
        name: "process_resident_memory_bytes",
        help: "h",
        type: "gauge",
        samples: [{ value: rss }],
      },
    ];
  };
  // As a worker's families arrive through postMessage: plain objects.
  const worker = structuredClone(families(5, 999, [0.5, 20]));
  const total = addFamilies(families(2, 100, [3]), [worker]);
  const [connections, durations, rss] = total;
  if (connections.type === "histogram") assert.fail("not a counter");
  assert.deepEqual(connections.samples.map((s) => s.value), [7, 2]);
  if (durations.type === "histogram") {
    const h = durations.series[0].histogram;
    assert.deepEqual(h.buckets, [1, 1]);
    assert.equal(h.count, 3);
    assert.equal(h.sum, 23.5);
  } else assert.fail("not a histogram");
  if (rss.type !== "histogram") assert.deepEqual(rss.samples, [{ value: 100 }]);
});

Deno.test("workers: a fault series only a worker has is added too, after the main thread's", () => {
  const faults = (...samples: [string, number][]): MetricFamily[] => [{
    name: "poetry_faults_applied_total",
    help: "h",
    type: "counter",
    samples: samples.map(([fault, value]) => ({
      labels: { poem: "a", listener: "0", fault },
      value,
    })),
  }];
  const [total] = addFamilies(faults(["close-after", 2]), [
    structuredClone(faults(["close-after", 3], ["refuse", 1])),
    structuredClone(faults(["refuse", 4])),
  ]);
  if (total.type === "histogram") return assert.fail("not a counter");
  assert.deepEqual(
    total.samples.map((s) => [s.labels?.fault, s.value]),
    [["close-after", 5], ["refuse", 5]],
  );
});

Deno.test("workers: status reports merge transfers per listener, oldest first, with per-worker totals", () => {
  const report = (completed: number, seconds: number[]): StatusReport => ({
    version: "0",
    draining: false,
    totals: snapshot(completed, 0, 1),
    listeners: [{
      poem: "a",
      address: "127.0.0.1:1",
      size: 10,
      pace: null,
      active: seconds.length,
      transfers: seconds.map((s) => ({
        peer: `127.0.0.1:${s}`,
        sent: 1,
        total: 10,
        seconds: s,
        faults: ["stall-after=1"],
      })),
      unlisted: 0,
      faults: ["stall-after=1"],
      seed: 7,
      faultsApplied: { "stall-after": completed },
    }],
  });
  const merged = addReports(report(4, [1, 3]), [report(6, [2])]);
  assert.equal(merged.totals.completed, 10);
  assert.equal(merged.listeners[0].active, 3);
  assert.deepEqual(merged.listeners[0].transfers.map((t) => t.seconds), [3, 2, 1]);
  assert.equal(merged.listeners[0].unlisted, 0);
  assert.deepEqual(merged.listeners[0].faultsApplied, { "stall-after": 10 });
  assert.deepEqual(merged.listeners[0].faults, ["stall-after=1"]);
  assert.deepEqual(merged.totals.faultsApplied, { "reset-after": 4, chunks: 1 });
  assert.deepEqual(merged.workers, [
    { completed: 4, faulted: 2, inFlight: 2 },
    { completed: 6, faulted: 2, inFlight: 2 },
  ]);
});

Deno.test({
  name: "workers: a pool joins the server's port; clients reach both; the drain adds them up",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": "shared port\n" });
    const options = { iface: "127.0.0.1", reusePort: true };
    const server = await serve([poems.path("p.txt")], options);
    const pool = await WorkerPool.spawn(1);
    await pool.join(server, {
      poems: [poems.path("p.txt")],
      options,
      log: { level: "error" },
      metrics: false,
    });
    try {
      assert.equal(pool.size, 1);
      const address = server.listeners[0].addr;
      for (let i = 0; i < 60; i++) {
        assert.equal(new TextDecoder().decode(await fetchBytes(address)), "shared port\n");
      }
      const [theirs] = await pool.snapshots();
      const own = server.listeners[0].counts.completed;
      assert.ok(theirs.completed > 0 && own > 0, `${own} + ${theirs.completed}`);
      const total = await server.shutdown(1, pool.shutdown(1));
      assert.equal(total.completed, 60);
    } finally {
      await server.shutdown(0);
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "workers: a worker that cannot start fails the pool with its own error",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": "x\n" });
    const options = { iface: "127.0.0.1", reusePort: true };
    const server = await serve([poems.path("p.txt")], options);
    try {
      // The poem is gone by the time the worker loads it.
      await Deno.remove(poems.path("p.txt"));
      const pool = await WorkerPool.spawn(1);
      await assert.rejects(
        pool.join(server, {
          poems: [poems.path("p.txt")],
          options,
          log: { level: "error" },
          metrics: false,
        }),
        /poem not found/,
      );
    } finally {
      await server.shutdown(0);
      await poems.cleanup();
    }
  },
});
