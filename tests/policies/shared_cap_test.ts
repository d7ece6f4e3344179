import assert from "node:assert/strict";
import { SharedCap } from "../../lib/policies/shared_cap.ts";
import { delay } from "../helpers.ts";

Deno.test("shared gate: two gates on one counter hold one cap together", async () => {
  const counters = new SharedArrayBuffer(8);
  const a = new SharedCap(3, counters, 1);
  const b = new SharedCap(3, counters, 1);
  assert.equal(await a.reserve(), true);
  assert.equal(await b.reserve(), true);
  assert.equal(await a.reserve(), true);
  assert.equal(b.open, 3);
  // Counter 0 is another cap: untouched.
  assert.equal(new Int32Array(counters)[0], 0);
  let granted = false;
  const waiting = b.reserve().then((ok) => granted = ok);
  await delay(50);
  assert.equal(granted, false);
  a.release();
  await waiting;
  assert.equal(granted, true);
  assert.equal(a.open, 3);
  for (let i = 0; i < 3; i++) b.release();
  assert.equal(a.open, 0);
});

Deno.test("shared gate: an abort ends the wait without a slot", async () => {
  const gate = new SharedCap(1, new SharedArrayBuffer(4), 0);
  assert.equal(await gate.reserve(), true);
  const stop = new AbortController();
  const waiting = gate.reserve(stop.signal);
  await delay(20);
  stop.abort();
  assert.equal(await waiting, false);
  assert.equal(gate.open, 1);
  gate.release();
  assert.equal(await gate.reserve(AbortSignal.abort()), false);
  assert.equal(gate.open, 0);
});

Deno.test("shared gate: a slot freed in a worker wakes a wait in this thread", async () => {
  const counters = new SharedArrayBuffer(4);
  const gate = new SharedCap(1, counters, 0);
  assert.equal(await gate.reserve(), true);
  // The worker releases the slot the way SharedCap.release does, 100 ms
  // later, and posts nothing back: only the notify can wake this thread
  // before the gate's own 1 s re-check.
  const source = `self.onmessage = ({ data }) => {
    setTimeout(() => {
      const count = new Int32Array(data);
      Atomics.sub(count, 0, 1);
      Atomics.notify(count, 0);
    }, 100);
  };`;
  const url = `data:application/javascript,${encodeURIComponent(source)}`;
  const worker = new Worker(url, { type: "module" });
  try {
    const started = performance.now();
    const waiting = gate.reserve();
    worker.postMessage(counters);
    assert.equal(await waiting, true);
    // Woken by the notify, not by the 1 s re-check.
    assert.ok(performance.now() - started < 900, `${performance.now() - started} ms`);
  } finally {
    worker.terminate();
  }
});
