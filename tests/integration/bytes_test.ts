// Every client gets exact bytes, whatever it sends or shuts down, and the log
// says `completed` only when it did. The real program over real TCP.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  concat,
  delay,
  fetchBytes,
  makePoems,
  seededBytes,
  startServer,
  STREAMED_SIZE,
} from "../helpers.ts";

const encoder = new TextEncoder();

/** Connects, sends `input` first, then reads to the end. */
async function sendThenRead(
  address: Deno.ConnectOptions,
  input: Uint8Array,
): Promise<Uint8Array> {
  const conn = await Deno.connect(address);
  try {
    await conn.write(input);
    return await readAll(conn);
  } finally {
    conn.close();
  }
}

async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
    parts.push(buffer.slice(0, n));
  }
  return concat(parts);
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

Deno.test("a client that sends a byte or a request line first gets the whole poem", async () => {
  const poem = seededBytes(200 * 1024, 3); // more than the kernel takes in one go
  const poems = await makePoems({ "p.bin": poem });
  const server = await startServer([poems.path("p.bin")]);
  try {
    const address = server.addresses[0];
    const inputs = [
      new Uint8Array([0x0a]),
      encoder.encode("GET / HTTP/1.0\r\n\r\n"),
      seededBytes(100_000, 5),
    ];
    for (const input of inputs) {
      const results = await Promise.all(
        Array.from({ length: 10 }, () => sendThenRead(address, input)),
      );
      for (const got of results) {
        assert.equal(got.length, poem.length, `sent ${input.length} bytes first`);
        assert.ok(same(got, poem));
      }
    }
    await server.waitForLines(/: completed\./, 30);
    assert.doesNotMatch(server.stderr(), /client left|error/);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("20 clients that send junk all along while reading a 1 MiB poem all get it", async () => {
  const poem = seededBytes(1024 * 1024, 11);
  const poems = await makePoems({ "p.bin": poem });
  const server = await startServer([poems.path("p.bin")]);
  try {
    const junk = seededBytes(4096, 13);
    const results = await Promise.all(Array.from({ length: 20 }, async () => {
      const conn = await Deno.connect(server.addresses[0]);
      let reading = true;
      const sending = (async () => {
        try {
          while (reading) await conn.write(junk);
        } catch {
          // The server closed; nothing more to send.
        }
      })();
      try {
        return await readAll(conn);
      } finally {
        reading = false;
        conn.close();
        await sending;
      }
    }));
    const whole = results.filter((got) => same(got, poem)).length;
    assert.equal(whole, 20, `${whole} of 20 got the whole poem`);
    await server.waitForLines(/: completed\./, 20);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("a half-closed client gets the whole poem, fast and slow, logged completed", async () => {
  const big = seededBytes(16 * 1024 * 1024, 17);
  const small = encoder.encode("a short poem, sent slowly\n");
  const poems = await makePoems({ "big.bin": big, "small.txt": small });
  const fast = await startServer([poems.path("big.bin")]);
  const slow = await startServer([
    "--num-bytes",
    "5",
    "--delay",
    "0.05",
    poems.path("small.txt"),
  ]);
  try {
    for (const [server, poem] of [[fast, big], [slow, small]] as const) {
      const conn = await Deno.connect(server.addresses[0]);
      await conn.closeWrite(); // as nc -N or shutdown(SHUT_WR) do
      const got = await readAll(conn);
      conn.close();
      assert.equal(got.length, poem.length);
      assert.ok(same(got, poem));
      await server.waitForStderr(
        new RegExp(`got ${poem.length} of ${poem.length} bytes .*: completed`),
      );
      assert.doesNotMatch(server.stderr(), /client left/);
    }
  } finally {
    await fast.stop();
    await slow.stop();
    await poems.cleanup();
  }
});

Deno.test("a client that closes with the poem unread is logged as leaving, with what it got", async () => {
  const poem = seededBytes(16 * 1024 * 1024, 19);
  const poems = await makePoems({ "p.bin": poem });
  const server = await startServer([poems.path("p.bin")]);
  try {
    const conn = await Deno.connect(server.addresses[0]);
    await conn.read(new Uint8Array(10));
    await delay(100);
    conn.close(); // unread data: the kernel resets the connection
    const stderr = await server.waitForStderr(/bytes of .*: client left\./);
    const sent = Number(/got (\d+) of 16777216 bytes/.exec(stderr)![1]);
    assert.ok(sent < poem.length, `logged ${sent} bytes sent`);
    assert.doesNotMatch(server.stderr(), /completed/);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("the shutdown summary counts transfers with the records' own words", async () => {
  const poems = await makePoems({ "p.txt": "three\nshort\nlines\n" });
  const server = await startServer([poems.path("p.txt")]);
  try {
    for (let i = 0; i < 3; i++) await fetchBytes(server.addresses[0]);
    await server.waitForLines(/: completed\./, 3);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
  assert.match(
    server.stderr(),
    /Shut down: 3 completed, 0 client left, 0 timed out, 0 cut short, 0 error, 0 denied\./,
  );
});

Deno.test({
  name: "a streamed poem is sent as the version current at connect, whatever happens to the file",
  ignore: Deno.build.os === "windows",
  async fn() {
    const first = seededBytes(STREAMED_SIZE, 23);
    const second = seededBytes(STREAMED_SIZE + 1000, 29);
    const poems = await makePoems({ "huge.bin": first, "next.bin": second });
    const path = poems.path("huge.bin");
    const server = await startServer([path]);
    try {
      // Clients that connected before the swap, each part-way through.
      const early = await Promise.all(Array.from({ length: 3 }, async () => {
        const conn = await Deno.connect(server.addresses[0]);
        const start = new Uint8Array(1024 * 1024);
        let got = 0;
        while (got < start.length) got += (await conn.read(start.subarray(got)))!;
        return { conn, start };
      }));
      // The advice in docs/operations.md: write a new file, rename it over the poem.
      await Deno.rename(poems.path("next.bin"), path);
      server.process.kill("SIGHUP");
      await server.waitForStderr(/Reloaded .*huge\.bin/);
      for (const { conn, start } of early) {
        const rest = await readAll(conn);
        conn.close();
        assert.ok(same(concat([start, rest]), first), "an early client got the old version");
      }
      assert.ok(same(await fetchBytes(server.addresses[0]), second), "a later client the new one");
      // Deleted, then SIGHUP: the current version stays, and is served whole.
      const during = await Deno.connect(server.addresses[0]);
      await Deno.remove(path);
      server.process.kill("SIGHUP");
      await server.waitForStderr(/Could not reload .*huge\.bin/);
      assert.ok(same(await readAll(during), second));
      during.close();
      assert.ok(same(await fetchBytes(server.addresses[0]), second));
      assert.doesNotMatch(server.stderr(), /: error/);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

/**
 * Reads to the end (or `limit` bytes), comparing with `poem` as the bytes
 * come, so that many clients of a streamed poem hold no copy of it each.
 * @returns how many bytes came, and whether each was the poem's.
 */
async function readComparing(
  conn: Deno.Conn,
  poem: Uint8Array,
  limit = Infinity,
): Promise<{ got: number; exact: boolean }> {
  const buffer = new Uint8Array(64 * 1024);
  let got = 0;
  let exact = true;
  while (got < limit) {
    const n = await conn.read(buffer);
    if (n === null) break;
    exact &&= same(buffer.subarray(0, n), poem.subarray(got, got + n));
    got += n;
  }
  return { got, exact };
}

Deno.test({
  name: "a streamed poem is exact for 18 clients at once, fast and slow, while one leaves early",
  ignore: Deno.build.os === "windows",
  async fn() {
    const poem = seededBytes(STREAMED_SIZE, 37);
    // One process, so every reader shares one thread's budget: 19 readers get
    // less than 1 MiB each, and blocks grow back as they finish.
    const config = JSON.stringify({
      iface: "127.0.0.1",
      listeners: [
        { poem: "huge.bin", port: 0 },
        // A paced write larger than a block is sent from several blocks.
        { poem: "huge.bin", port: 0, "num-bytes": 3_000_000, delay: 0.05 },
      ],
    });
    const poems = await makePoems({ "huge.bin": poem, "poetry.jsonc": config });
    const server = await startServer(["--config", poems.path("poetry.jsonc")], { listeners: 2 });
    try {
      const [fast, slow] = server.addresses;
      const client = async (address: Deno.ConnectOptions, limit?: number) => {
        const conn = await Deno.connect(address);
        try {
          return await readComparing(conn, poem, limit);
        } finally {
          conn.close(); // before the end: unread bytes, so the server sees a reset
        }
      };
      const leaver = client(fast, 1024 * 1024);
      const results = await Promise.all([
        ...Array.from({ length: 16 }, () => client(fast)),
        client(slow),
        client(slow),
      ]);
      for (const [i, { got, exact }] of results.entries()) {
        assert.equal(got, poem.length, `client ${i}`);
        assert.ok(exact, `client ${i} got the poem's bytes`);
      }
      const left = await leaver;
      assert.ok(left.exact && left.got >= 1024 * 1024 && left.got < poem.length);
      await server.waitForLines(/: completed\./, 18, 60_000);
      await server.waitForStderr(/: client left\./, 10_000);
      assert.doesNotMatch(server.stderr(), /: error/);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});
