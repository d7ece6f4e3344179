import assert from "node:assert/strict";
import { connectedPair } from "./helpers.ts";
import { memoryContent, type PoemContent } from "../lib/poem.ts";
import { LINGER_MS, PoemSender } from "../lib/sender.ts";
import { PaceWheel } from "../lib/pace.ts";

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
