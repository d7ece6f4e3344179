import assert from "node:assert/strict";
import { chunksOf, leastDuration, PaceWheel, writesNeeded } from "../../lib/core/pace.ts";
import { delay } from "../helpers.ts";

Deno.test("pace: writes needed and least duration", () => {
  const pace = { numBytes: 10, delay: 0.1 };
  assert.equal(writesNeeded(0, pace), 0);
  assert.equal(writesNeeded(10, pace), 1);
  assert.equal(writesNeeded(11, pace), 2);
  assert.equal(leastDuration(0, pace), 0);
  assert.equal(leastDuration(10, pace), 0);
  assert.ok(Math.abs(leastDuration(100, pace) - 0.9) < 1e-9);
});

Deno.test("pace wheel: calls each task once per delay, first one delay after scheduling", async () => {
  const wheel = new PaceWheel(0.05);
  const calls: number[] = [];
  const started = performance.now();
  const task = {
    onTick() {
      calls.push(performance.now() - started);
      if (calls.length === 4) wheel.cancel(task);
    },
  };
  wheel.schedule(task);
  // Until the fourth call rather than a fixed 400 ms: a busy machine runs
  // timers late, and the deadline only bounds a wheel that stopped.
  const deadline = performance.now() + 10_000;
  while (calls.length < 4 && performance.now() < deadline) await delay(10);
  assert.equal(calls.length, 4);
  assert.equal(wheel.size, 0);
  // Slots are 10 ms: no call comes more than a slot early (strict). Late is
  // the machine's doing; the upper bound only catches a call a turn late on
  // an idle machine, with room for load.
  for (const [i, at] of calls.entries()) {
    assert.ok(at >= (i + 1) * 50 - 11 && at < (i + 1) * 50 + 1000, `call ${i} at ${at} ms`);
  }
});

Deno.test("pace wheel: many tasks share one timer and are spread over the delay", async () => {
  const wheel = new PaceWheel(0.1);
  let ticks = 0;
  const tasks = Array.from({ length: 1000 }, () => ({ onTick: () => ticks++ }));
  for (const task of tasks) wheel.schedule(task);
  assert.equal(wheel.size, 1000);
  // Two turns of 1000 tasks take at least two delays, less a 10 ms slot
  // (strict); waiting for them rather than a fixed time keeps a busy
  // machine's late timers from looking like missed ticks.
  const started = performance.now();
  const deadline = started + 10_000;
  while (ticks < 2000 && performance.now() < deadline) await delay(5);
  const ms = performance.now() - started;
  wheel.clear();
  assert.ok(ticks >= 2000, `${ticks} ticks in ${ms} ms`);
  assert.ok(ms >= 190, `2000 ticks after ${ms} ms: faster than once per delay`);
  const after = ticks;
  await delay(150);
  assert.equal(ticks, after, "clear stops everything");
});

Deno.test("pace wheel: cancel before the first tick means no call; scheduling twice is once", async () => {
  const wheel = new PaceWheel(0.02);
  let calls = 0;
  const task = { onTick: () => calls++ };
  wheel.schedule(task);
  wheel.schedule(task);
  assert.equal(wheel.size, 1);
  wheel.cancel(task);
  await delay(80);
  assert.equal(calls, 0);
  wheel.clear();
});

Deno.test("pace wheel: a very long delay does not allocate a slot per 10 ms", () => {
  const wheel = new PaceWheel(86_400);
  wheel.schedule({ onTick() {} });
  assert.equal(wheel.size, 1);
  wheel.clear();
});

Deno.test("pace: chunks are views of the poem, cut once and shared", () => {
  const poem = new TextEncoder().encode("abcdefg");
  const chunks = chunksOf(poem, 3)!;
  assert.deepEqual(chunks.map((c) => new TextDecoder().decode(c)), ["abc", "def", "g"]);
  assert.equal(chunks[0].buffer, poem.buffer, "a view, not a copy");
  assert.equal(chunksOf(poem, 3), chunks, "cached per poem");
  assert.notEqual(chunksOf(poem, 2), chunks, "a new size cuts anew");
  assert.equal(chunksOf(poem, 2, 3), undefined, "more than 3 chunks: not cut");
});

Deno.test("pace: a poem that would take too many chunks is not cut (no million views at once)", () => {
  const poem = new Uint8Array(1 << 20);
  const started = performance.now();
  assert.equal(chunksOf(poem, 1), undefined);
  assert.ok(performance.now() - started < 50);
  assert.equal(chunksOf(poem, 256)?.length, 4096, "4,096 chunks are still cut");
});
