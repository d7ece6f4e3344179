// Fault specs, the seeded sequence, the per-connection draw, and FaultyConn
// around a recording connection. The real program over TCP, with clients the
// project did not write, is in tests/faults/clients_test.ts.

import assert from "node:assert/strict";
import { parseFault, SeededRandom } from "../lib/fixture/fault_spec.ts";
import { ListenerFaults } from "../lib/fixture/fault_plan.ts";
import { FaultyConn, type FaultyConnOptions } from "../lib/fixture/faulty_conn.ts";
import { memoryContent } from "../lib/core/poem.ts";
import { UsageError } from "../lib/base/errors.ts";

Deno.test("fault specs: every fault, with and without a probability", () => {
  assert.deepEqual(parseFault("close-after=100"), {
    name: "close-after",
    value: 100,
    probability: 1,
    label: "close-after=100",
  });
  assert.equal(parseFault("reset-after=0,probability=0.25").probability, 0.25);
  assert.equal(parseFault("stall-after=7").value, 7);
  assert.equal(parseFault("first-byte-delay=0.5").value, 0.5);
  assert.equal(parseFault("jitter=.05").value, 0.05);
  assert.deepEqual(parseFault("chunks=1-16").value, [1, 16]);
  assert.equal(parseFault("close-delay=2").value, 2);
  assert.deepEqual(parseFault("refuse,probability=1"), {
    name: "refuse",
    probability: 1,
    label: "refuse",
  });
});

Deno.test("fault specs: a bad one names what is wrong and hints at a good one", () => {
  const cases: [string, RegExp][] = [
    ["explode=1", /--fault 'explode=1': unknown fault 'explode'/],
    ["", /no fault named/],
    ["close-after", /close-after needs a value/],
    ["close-after=-1", /whole number of bytes, got '-1'/],
    ["close-after=1.5", /whole number of bytes/],
    ["first-byte-delay=soon", /seconds from 0 to 86400, got 'soon'/],
    ["chunks=5", /range MIN-MAX/],
    ["chunks=9-3", /range MIN-MAX/],
    ["chunks=0-3", /range MIN-MAX/],
    ["refuse=1", /refuse takes no value/],
    ["jitter=0.1,probability=2", /probability must be a number from 0 to 1, got '2'/],
    ["jitter=0.1,often", /unknown option 'often'/],
  ];
  for (const [spec, message] of cases) {
    assert.throws(() => parseFault(spec), (err: unknown) => {
      assert.ok(err instanceof UsageError, spec);
      assert.match(err.message, message, spec);
      assert.ok(err.hint, `${spec}: a hint`);
      return true;
    });
  }
  assert.throws(
    () => parseFault("x", "listeners[0].faults[1]"),
    /^.*listeners\[0\]\.faults\[1\] 'x'/,
  );
});

Deno.test("seeded random: the same seed gives the same sequence, another seed another", () => {
  const run = (seed: number) => {
    const random = new SeededRandom(seed);
    return Array.from({ length: 5 }, () => random.uint32());
  };
  assert.deepEqual(run(42), run(42));
  assert.notDeepEqual(run(42), run(43));
  const random = new SeededRandom(1);
  for (let i = 0; i < 1000; i++) {
    const n = random.int(3, 5);
    assert.ok(n >= 3 && n <= 5 && Number.isInteger(n));
  }
});

Deno.test("listener faults: a probability picks that share of connections, the same ones per seed", () => {
  const draw = (seed: number) => {
    const faults = new ListenerFaults([parseFault("close-after=10,probability=0.3")], seed);
    return Array.from({ length: 1000 }, () => faults.plan() ? 1 : 0);
  };
  const first = draw(7);
  assert.deepEqual(draw(7), first);
  assert.notDeepEqual(draw(8), first);
  const share = first.reduce<number>((n, x) => n + x, 0) / first.length;
  assert.ok(share > 0.25 && share < 0.35, `share ${share}`);
  const never = new ListenerFaults([parseFault("refuse,probability=0")], 1);
  assert.equal(never.plan(), undefined);
});

Deno.test("connection faults: refuse wins, then the cut after the fewest bytes; others add", () => {
  const plan = (...specs: string[]) =>
    new ListenerFaults(specs.map((s) => parseFault(s)), 1).plan()!;
  const cuts = plan("close-after=50", "reset-after=20", "stall-after=30", "jitter=0.1");
  assert.equal(cuts.ending, "reset");
  assert.equal(cuts.cutAfter, 20);
  assert.equal(cuts.labels, "reset-after=20, jitter=0.1");
  const refused = plan("close-after=5", "refuse", "first-byte-delay=1");
  assert.equal(refused.ending, "refuse");
  assert.equal(refused.labels, "refuse, first-byte-delay=1");
  const content = memoryContent("p", new TextEncoder().encode("0123456789"));
  assert.equal(refused.content(content).size, 0);
  assert.equal(cuts.content(content).size, 10, "a cut past the end leaves the poem whole");
  assert.equal(plan("close-after=4").content(content).bytes!.length, 4);
  assert.equal(plan("stall-after=4").content(content), content, "a stall keeps the whole poem");
});

/** A connection that records what is done to it. */
class RecordingConn {
  readonly writes: number[] = [];
  readonly events: string[] = [];
  readonly remoteAddr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };
  #input = Promise.withResolvers<number | null>();
  constructor() {
    this.#input.promise.catch(() => {}); // a close before any read is no error
  }
  write(p: Uint8Array): Promise<number> {
    this.writes.push(p.length);
    return Promise.resolve(p.length);
  }
  closeWrite(): Promise<void> {
    this.events.push("closeWrite");
    return Promise.resolve();
  }
  read(_p: Uint8Array): Promise<number | null> {
    return this.#input.promise;
  }
  close(): void {
    this.events.push("close");
    this.#input.reject(new Deno.errors.BadResource("closed"));
  }
  reset(): void {
    this.events.push("reset");
  }
  setNoDelay(): void {
    this.events.push("noDelay");
  }
  clientLeaves(): void {
    this.#input.resolve(null);
  }
}

async function writeAll(conn: FaultyConn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function faulty(options: Partial<FaultyConnOptions>, seed = 5) {
  const inner = new RecordingConn();
  return { inner, conn: new FaultyConn(inner, { random: new SeededRandom(seed), ...options }) };
}

Deno.test("faulty conn: chunks cut each write to a size in range, the same sizes per seed", async () => {
  const poem = new Uint8Array(300);
  const sizes = async (seed: number) => {
    const { inner, conn } = faulty({ chunks: [3, 9] }, seed);
    await writeAll(conn, poem);
    assert.equal(inner.events[0], "noDelay");
    return inner.writes;
  };
  const first = await sizes(11);
  assert.deepEqual(await sizes(11), first);
  assert.notDeepEqual(await sizes(12), first);
  assert.equal(first.reduce((a, b) => a + b), 300);
  assert.ok(first.slice(0, -1).every((n) => n >= 3 && n <= 9));
});

Deno.test("faulty conn: a stall writes up to its bytes, holds, and ends when the client leaves", async () => {
  const { inner, conn } = faulty({ stallAfter: 25 });
  const writing = writeAll(conn, new Uint8Array(100));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(conn.written, 25);
  assert.ok(conn.holding);
  inner.clientLeaves();
  await assert.rejects(writing, Deno.errors.BrokenPipe);
  assert.ok(!conn.holding);
});

Deno.test("faulty conn: closing ends a stall, and a delay, at once", async () => {
  const { conn } = faulty({ stallAfter: 0 });
  const stalled = conn.write(new Uint8Array(10));
  conn.close();
  await assert.rejects(stalled);
  const delayed = faulty({ firstByteDelay: 60 });
  const started = performance.now();
  const waiting = delayed.conn.write(new Uint8Array(10));
  delayed.conn.close();
  await assert.rejects(waiting, Deno.errors.Interrupted);
  assert.ok(performance.now() - started < 1000);
  assert.deepEqual(delayed.inner.writes, []);
});

Deno.test("faulty conn: the first byte waits; refuse closes, reset resets, close-delay waits", async () => {
  const delayed = faulty({ firstByteDelay: 0.2 });
  let started = performance.now();
  await delayed.conn.write(new Uint8Array(5));
  assert.ok(performance.now() - started >= 190);
  started = performance.now();
  await delayed.conn.write(new Uint8Array(5));
  assert.ok(performance.now() - started < 100, "only the first write waits");

  const refused = faulty({ ending: "refuse" });
  await refused.conn.closeWrite();
  assert.equal(await refused.conn.read(new Uint8Array(1)), null);
  refused.conn.close();
  assert.deepEqual(refused.inner.events, ["close"]);

  const reset = faulty({ ending: "reset", closeDelay: 0.1 });
  started = performance.now();
  await reset.conn.closeWrite();
  assert.ok(performance.now() - started >= 90);
  reset.conn.close();
  assert.deepEqual(reset.inner.events, ["reset"]);
});

Deno.test("faulty conn: jitter adds 0..J to each pause, not to a write's rest", async () => {
  const { inner, conn } = faulty({ jitter: 0.05, delay: 0.02 });
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    await conn.write(new Uint8Array(4));
    times.push(performance.now());
  }
  const pauses = times.slice(1).map((t, i) => t - times[i]);
  assert.ok(pauses.every((ms) => ms >= 19 && ms <= 90), `pauses ${pauses}`);
  assert.deepEqual(inner.writes, [4, 4, 4, 4, 4]);
});
