// Hostile-tester findings on the admin HTTP server (lib/observe/http_server.ts,
// lib/observe/http_request.ts) and on reloads of the listener chain. Each test
// fails on the code as found; each names what it sends and what it should get.

import assert from "node:assert/strict";
import { ConnInput } from "../../lib/observe/http_request.ts";
import { adminUrl, delay, makePoems, rawExchange, startServer } from "../helpers.ts";

const linux = Deno.build.os === "linux";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const poems = linux
  ? await makePoems({ "p.txt": "0123456789".repeat(10) + "\n", "q.txt": "Hostile.\n" })
  : undefined;

function hostileTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `hostile: ${name}`, ignore: !linux, fn });
}

async function withAdmin(
  extra: string[],
  fn: (admin: { hostname: string; port: number }, stderr: () => string) => Promise<void>,
): Promise<void> {
  const server = await startServer([
    "--admin",
    "127.0.0.1:0",
    "--log-format",
    "json",
    ...extra,
    poems!.path("q.txt"),
  ]);
  try {
    const port = Number(new URL(await adminUrl(server)).port);
    await fn({ hostname: "127.0.0.1", port }, server.stderr);
  } finally {
    await server.stop();
  }
}

/** Reads from `conn` until `pattern` matches what arrived, the end of stream, or `ms`. */
async function readUntil(conn: Deno.Conn, pattern: RegExp, ms: number): Promise<string> {
  let text = "";
  const deadline = Date.now() + ms;
  const buf = new Uint8Array(65536);
  while (!pattern.test(text) && Date.now() < deadline) {
    const timer = setTimeout(() => conn.close(), deadline - Date.now());
    const n = await conn.read(buf).catch(() => null);
    clearTimeout(timer);
    if (n === null) break;
    text += decoder.decode(buf.subarray(0, n));
  }
  return text;
}

// ConnInput.until() keeps `searched` as an index into the buffer, but fill()
// moves the unread bytes to the front when it grows (or empties) the buffer:
// after that move the search starts past the bytes that hold the end of the
// head. Here the first segment is exactly 4096 bytes (the buffer's first
// size): a whole request, then the first line of a second one; the rest of
// the second head comes once the first answer is in. The second request is
// never found: no answer, then a silent close at the header timeout (10 s).
// With deeper pipelining the same miss merges two requests into one head (a
// false 400) or runs past 8 KiB (a false 431).
hostileTest(
  "a pipelined request whose head crosses the read buffer's end is answered",
  async () => {
    await withAdmin([], async (admin) => {
      const first = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ";
      const second = "GET /healthz HTTP/1.1\r\n";
      const pad = "a".repeat(4096 - first.length - 4 - second.length);
      const segment = encoder.encode(`${first}${pad}\r\n\r\n${second}`);
      assert.equal(segment.length, 4096);
      const conn = await Deno.connect(admin);
      try {
        await conn.write(segment);
        const one = await readUntil(conn, /\r\n\r\nok\n/, 3000);
        assert.match(one, /^HTTP\/1\.1 200 /, one);
        await delay(100);
        await conn.write(encoder.encode("Host: 127.0.0.1\r\nConnection: close\r\n\r\n"));
        const two = await readUntil(conn, /\r\n\r\nok\n/, 3000);
        assert.match(two, /^HTTP\/1\.1 200 /, `second request unanswered: ${JSON.stringify(two)}`);
      } finally {
        try {
          conn.close();
        } catch {
          // Closed by readUntil's timer.
        }
      }
    });
  },
);

// Same root cause, seen as an attacker would: 300 pipelined small requests,
// written at once and answered in order, get a false 400 part-way.
hostileTest("300 pipelined requests are all answered 200", async () => {
  await withAdmin([], async (admin, stderr) => {
    const request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const last = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    const answer = await rawExchange(admin, request.repeat(299) + last, 5000);
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.equal(
      statuses.filter((s) => s === "200").length,
      300,
      `${statuses.join(",")}\n${stderr()}`,
    );
  });
});

// fill() doubles the buffer whenever its end is reached, even when nearly all
// of it has been consumed (it compacts only when it is empty). A keep-alive
// client that streams requests, each within every limit, grows one
// connection's buffer with the bytes it sends: here 2,000 POSTs of 64 KiB
// (131 MB) leave a buffer of some 67 MB. The head (8 KiB) and body (64 KiB)
// limits mean it never needs more than about 128 KiB. The fake connection
// records how much room each read was given, which is the buffer's size at
// most.
hostileTest(
  "a connection's read buffer stays bounded however many requests it carries",
  async () => {
    const one = encoder.encode(
      `POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 65536\r\n\r\n${"x".repeat(65536)}`,
    );
    const count = 2000;
    let sent = 0;
    let room = 0;
    let seed = 1;
    const chunk = () => 1 + ((seed = (seed * 1103515245 + 12345) % 2147483648) % 200_000);
    const conn = {
      read(p: Uint8Array): Promise<number | null> {
        room = Math.max(room, p.length);
        if (sent >= one.length * count) return Promise.resolve(null);
        const n = Math.min(p.length, chunk(), one.length * count - sent);
        for (let i = 0; i < n; i++) p[i] = one[(sent + i) % one.length];
        sent += n;
        return Promise.resolve(n);
      },
      close() {},
    } as unknown as Deno.Conn;
    const input = new ConnInput(conn);
    // As HttpServer.#read does: wait for a byte, then the head, then the body.
    for (let served = 0; served < count; served++) {
      if (served > 0 && input.buffered === 0) assert.ok(await input.next(1000));
      const end = await input.until([13, 10, 13, 10], 8192, 1000);
      input.take(end);
      await input.exactly(65536, 1000);
    }
    assert.ok(room <= 256 * 1024, `a read was given ${room} bytes of room`);
  },
);

// Methods the fetch Request constructor refuses (CONNECT, TRACE, TRACK) and
// GET/HEAD spelled in lower case with a body make `new Request` throw inside
// #read; the catch treats anything but BadRequest as a vanished client: the
// connection is closed without a byte and without a log record. Each should
// get an error status (405/501/400) and one "bad request" record.
hostileTest(
  "CONNECT, TRACE and a lower-case get with a body get an answer and a record",
  async () => {
    await withAdmin([], async (admin, stderr) => {
      const requests = [
        "CONNECT /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "TRACE /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "TRACK /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "get /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
      ];
      for (const request of requests) {
        const answer = await rawExchange(admin, request, 3000);
        assert.match(
          answer,
          /^HTTP\/1\.1 (4\d\d|501) /,
          `${JSON.stringify(request)}: ${JSON.stringify(answer)}`,
        );
      }
      await delay(200);
      const records = stderr().split("\n").filter((line) =>
        /bad request|could not answer/.test(line)
      );
      assert.equal(records.length, requests.length, stderr());
    });
  },
);

// The header timeout closes the connection from ConnInput's timer, and only
// then does #connection write its 408: to a closed connection. The client
// gets nothing, while the log says "answered 408". The same for a body that
// stops half-way (logged as "header timeout", also never sent).
hostileTest(
  "a request head that stops half-way is answered 408 at the header timeout",
  async () => {
    await withAdmin([], async (admin, stderr) => {
      const start = Date.now();
      const answer = await rawExchange(
        admin,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        15_000,
      );
      assert.ok(Date.now() - start < 14_000, "not closed at the header timeout");
      // The log's record comes just after the close.
      const deadline = Date.now() + 3000;
      while (!/answered 408/.test(stderr()) && Date.now() < deadline) await delay(50);
      assert.match(stderr(), /answered 408/);
      assert.match(
        answer,
        /^HTTP\/1\.1 408 /,
        `the log says 408; the client got ${JSON.stringify(answer)}`,
      );
    });
  },
);

// SIGHUP under --config applies a listener's faults and pace, warns about a
// changed poem, port or address, but drops a changed allow/deny without a
// word: an operator who denies a client and reloads sees no error, and the
// client is still served. Either the new list applies or the log says it
// needs a restart.
hostileTest("SIGHUP with a changed deny list applies it or says it needs a restart", async () => {
  const dir = poems!.path("p.txt").replace(/\/p\.txt$/, "");
  const config = `${dir}/hostile.jsonc`;
  const write = (deny: string) =>
    Deno.writeTextFileSync(
      config,
      `{ "iface": "127.0.0.1", "listeners": [{ "poem": "p.txt", "port": 0, "deny": ["${deny}"] }] }`,
    );
  write("127.0.0.8/32");
  const server = await startServer([
    "--config",
    config,
    "--proxy-protocol",
    "--log-format",
    "json",
  ]);
  try {
    const header = "PROXY TCP4 127.0.0.9 127.0.0.1 40000 1\r\n";
    assert.equal((await rawExchange(server.addresses[0], header, 2000)).length, 101);
    write("127.0.0.9/32");
    server.process.kill("SIGHUP");
    // An unchanged poem and an ignored list log nothing: give the reload a moment.
    await delay(1000);
    const served = (await rawExchange(server.addresses[0], header, 2000)).length;
    const said = /deny|allow|access/i.test(
      server.stderr().split("\n").filter((line) => !/denied by/.test(line)).join("\n"),
    );
    assert.ok(
      served === 0 || said,
      `127.0.0.9 still served ${served} bytes, and no record says why`,
    );
  } finally {
    await server.stop();
  }
});

Deno.test({ name: "hostile: cleanup", ignore: !linux, fn: () => poems!.cleanup() });
