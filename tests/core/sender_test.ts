import assert from "node:assert/strict";
import { connectedPair, delay, ROOT } from "../helpers.ts";
import { memoryContent, type PoemContent } from "../../lib/core/poem.ts";
import { LINGER_MS, PoemSender, type SendResult } from "../../lib/core/sender.ts";
import { PaceWheel } from "../../lib/core/pace.ts";

/** A streamed poem whose disk never answers, like a hung mount. */
const hungContent: PoemContent = {
  path: "hung.bin",
  size: 1000,
  open: () => ({ next: () => new Promise<Uint8Array>(() => {}), close() {} }),
};

for (const paced of [false, true]) {
  Deno.test(`sender: a poem read that never returns is held by the write timeout (${paced ? "slow" : "fast"})`, async () => {
    const { server, client } = await connectedPair();
    const wheel = paced ? new PaceWheel(0.05) : undefined;
    const sender = new PoemSender(server, hungContent, { wheel });
    const running = sender.run();
    await new Promise((resolve) => setTimeout(resolve, 50));
    sender.checkTimeouts(performance.now() + 10, 5_000); // not yet
    assert.equal(sender.finished, false);
    sender.checkTimeouts(performance.now() + 6_000, 5_000);
    const result = await running;
    assert.equal(result.outcome, "timed out");
    assert.equal(result.sent, 0);
    wheel?.clear();
    client.close();
  });
}

Deno.test("sender: a drain ends a transfer stuck on a poem read", async () => {
  const { server, client } = await connectedPair();
  const sender = new PoemSender(server, hungContent);
  const running = sender.run();
  await new Promise((resolve) => setTimeout(resolve, 50));
  sender.abort("cut short");
  assert.equal((await running).outcome, "cut short");
  client.close();
});

Deno.test("sender: the lingering close waits for the client, then ends after LINGER_MS", async () => {
  const { server, client } = await connectedPair();
  const poem = new TextEncoder().encode("a poem\n");
  const sender = new PoemSender(server, memoryContent("p.txt", poem));
  const running = sender.run();
  const got = new Uint8Array(100);
  let n = 0;
  while (n < poem.length) n += (await client.read(got.subarray(n)))!;
  // The client keeps its side open: the sender lingers...
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(sender.finished, false);
  sender.checkTimeouts(performance.now() + LINGER_MS - 100, 30_000);
  assert.equal(sender.finished, false);
  // ...until the linger time is up; every byte was out, so it completed.
  sender.checkTimeouts(performance.now() + LINGER_MS + 10, 30_000);
  const result = await running;
  assert.deepEqual([result.outcome, result.sent], ["completed", poem.length]);
  assert.equal(await client.read(got), null, "the client sees the end of the poem");
  client.close();
});

Deno.test("sender: input before the end is read and dropped only after the last byte", async () => {
  const { server, client } = await connectedPair();
  const poem = new Uint8Array(300 * 1024).fill(7);
  await client.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
  const running = new PoemSender(server, memoryContent("p.bin", poem)).run();
  const got = new Uint8Array(poem.length + 1);
  let n = 0;
  for (let r = await client.read(got); r !== null; r = await client.read(got.subarray(n))) n += r;
  client.close();
  assert.equal(n, poem.length);
  assert.equal((await running).outcome, "completed");
});

// In a process of its own: measuring the heap needs V8's gc(), and the
// flag that exposes it is not the test runner's to set.
const LONG_TRANSFER = `
import { PoemSender } from "${new URL("../../lib/core/sender.ts", import.meta.url)}";
const gc = globalThis.gc;
const BLOCKS = 60_000;
const block = new Uint8Array(16);
const heap = [];
let reads = 0;
const content = {
  path: "long.bin",
  size: BLOCKS * block.length,
  open: () => ({
    next() {
      if (++reads === 10_000 || reads === BLOCKS) {
        gc();
        heap.push(Deno.memoryUsage().heapUsed);
      }
      return Promise.resolve(block);
    },
    close() {},
  }),
};
const conn = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
  write: (bytes) => Promise.resolve(bytes.length),
  closeWrite: () => Promise.resolve(),
  read: () => Promise.resolve(null),
  close() {},
};
const result = await new PoemSender(conn, content).run();
console.log(JSON.stringify({ ...result, growth: heap[1] - heap[0] }));
`;

/** Runs `script` in a Deno with V8's gc() exposed; returns what it printed, as JSON. */
async function runWithGc(script: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${ROOT}deno.json`, "--v8-flags=--expose-gc", "-"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const { success, stdout } = await child.output();
  assert.ok(success);
  return JSON.parse(new TextDecoder().decode(stdout));
}

Deno.test("sender: a streamed transfer's heap does not grow with the number of blocks read", async () => {
  // A 1 GiB poem is 1,024 reads of 1 MiB per client (65,536 of 16 KiB when
  // a thousand clients share the block budget); anything a sender
  // keeps per read (a reaction left on a promise that settles only at the
  // end) added up to 1.2 MB per client. Here: 50,000 reads of 16 bytes.
  const result = await runWithGc(LONG_TRANSFER);
  assert.deepEqual([result.outcome, result.sent], ["completed", 60_000 * 16]);
  // Measured: 15.6 MB with Promise.race against one abort promise, 18 KB without.
  assert.ok(result.growth < 2_000_000, `heap grew by ${result.growth} bytes`);
});

const WAITING_PACED = `
import { PoemSender } from "${new URL("../../lib/core/sender.ts", import.meta.url)}";
import { PaceWheel } from "${new URL("../../lib/core/pace.ts", import.meta.url)}";
import { memoryContent } from "${new URL("../../lib/core/poem.ts", import.meta.url)}";
const CLIENTS = 5000;
const content = memoryContent("p.txt", new Uint8Array(500).fill(65));
const wheel = new PaceWheel(60);
const remoteAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };
const conns = Array.from({ length: CLIENTS }, () => ({
  remoteAddr,
  write: (bytes) => Promise.resolve(bytes.length),
  closeWrite: () => Promise.resolve(),
  read: () => Promise.resolve(null),
  close() {},
}));
const senders = [];
await new Promise((resolve) => setTimeout(resolve, 10));
gc();
const before = Deno.memoryUsage().heapUsed;
for (const conn of conns) {
  const sender = new PoemSender(conn, content, { wheel });
  senders.push(sender);
  sender.start(() => {});
}
// Every sender has made its first write and waits for its next tick.
await new Promise((resolve) => setTimeout(resolve, 10));
gc();
const perSender = (Deno.memoryUsage().heapUsed - before) / CLIENTS;
console.log(JSON.stringify({ perSender, sent: senders.map((s) => s.sent) }));
wheel.clear();
`;

Deno.test("sender: a paced client waiting for its tick holds little heap", async () => {
  const { perSender, sent } = await runWithGc(WAITING_PACED);
  assert.ok(sent.every((n: number) => n === 10), "each made its first write");
  // Measured: 1,246 bytes when each waited in an async run() on a promise,
  // with the listener's then/catch; 534 with start() and a callback.
  assert.ok(perSender < 800, `${Math.round(perSender)} bytes per paced sender`);
});

Deno.test("sender: start() reports once, never synchronously, what run() would", async () => {
  const poem = new TextEncoder().encode("a short poem\n");
  for (const paced of [false, true]) {
    const { server, client } = await connectedPair();
    const wheel = paced ? new PaceWheel(0.01) : undefined;
    const sender = new PoemSender(server, memoryContent("p.txt", poem), { wheel, numBytes: 5 });
    const reports: [SendResult, PoemSender][] = [];
    const ended = new Promise<void>((resolve) =>
      sender.start((result, who) => {
        reports.push([result, who]);
        resolve();
      })
    );
    assert.equal(reports.length, 0);
    const got = new Uint8Array(100);
    let n = 0;
    for (let r = await client.read(got); r !== null; r = await client.read(got.subarray(n))) n += r;
    client.close();
    await ended;
    await delay(20);
    assert.equal(reports.length, 1);
    assert.equal(reports[0][1], sender);
    assert.deepEqual([reports[0][0].outcome, reports[0][0].sent, n], ["completed", 13, 13]);
    wheel?.clear();
  }
});

Deno.test("sender: a paced sender aborted before it starts reports the abort once", async () => {
  const { server, client } = await connectedPair();
  const wheel = new PaceWheel(0.01);
  const sender = new PoemSender(server, memoryContent("p.txt", new Uint8Array(50)), { wheel });
  sender.abort("cut short");
  const reports: SendResult[] = [];
  await new Promise<void>((resolve) =>
    sender.start((result) => {
      reports.push(result);
      resolve();
    })
  );
  await delay(30);
  assert.deepEqual(reports.map((r) => [r.outcome, r.sent]), [["cut short", 0]]);
  assert.equal(wheel.size, 0);
  assert.equal(await client.read(new Uint8Array(10)), null);
  client.close();
});
