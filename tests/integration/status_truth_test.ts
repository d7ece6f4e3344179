// The status report tells the truth about each listener (issue 16, point 6):
// behind a balancer, a transfer's client is the one the PROXY header names,
// as in the log; with --config, each listener shows its own pace.

import assert from "node:assert/strict";
import { adminUrl, delay, httpGet, makePoems, startServer } from "../helpers.ts";

const encoder = new TextEncoder();
const poems = await makePoems({ "slow.txt": "s".repeat(200), "fast.txt": "f\n" });

interface Listed {
  poem: string;
  pace: { numBytes: number; delay: number } | null;
  transfers: { peer: string }[];
}

async function report(base: string): Promise<{ listeners: Listed[] }> {
  const { status, body } = await httpGet(`${base}status.json`);
  assert.equal(status, 200, body);
  return JSON.parse(body);
}

Deno.test("status: a PROXY client is shown as the header names it, as the log does", async () => {
  const server = await startServer([
    "--admin",
    "127.0.0.1:0",
    "--proxy-protocol",
    "--num-bytes",
    "10",
    "--delay",
    "0.2",
    poems.path("slow.txt"),
  ]);
  const conn = await Deno.connect(server.addresses[0]);
  try {
    await conn.write(encoder.encode("PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n"));
    const base = await adminUrl(server);
    let listed: { peer: string }[] = [];
    for (let i = 0; i < 50 && listed.length === 0; i++) {
      listed = (await report(base)).listeners[0].transfers;
      if (listed.length === 0) await delay(50);
    }
    assert.deepEqual(listed.map((t) => t.peer), ["127.0.0.9:40000"]);
  } finally {
    conn.close();
    await server.stop();
  }
  assert.match(server.stderr(), /127\.0\.0\.9:40000 got \d+ of 200 bytes/);
});

Deno.test("status: with --config, each listener shows its own pace, not the command line's", async () => {
  const dir = poems.path("");
  const config = `${dir}/status.jsonc`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      iface: "127.0.0.1",
      listeners: [
        { poem: "slow.txt", port: 0, "num-bytes": 10, delay: 0.5 },
        { poem: "fast.txt", port: 0 },
      ],
    }),
  );
  const server = await startServer(["--admin", "127.0.0.1:0", "--config", config], {
    listeners: 2,
  });
  try {
    const listeners = (await report(await adminUrl(server))).listeners;
    assert.deepEqual(listeners.map((l) => l.pace), [{ numBytes: 10, delay: 0.5 }, null]);
  } finally {
    await server.stop();
  }
});
