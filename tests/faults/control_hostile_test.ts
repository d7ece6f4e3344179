// The control endpoint (--control) under attack, from this machine: it runs
// on the admin endpoint's HTTP server, so the same hostile HTTP must get the
// same answers, and nothing sent to it may stall a poem's clients, leak, or
// keep the process from exiting. All traffic stays on loopback: the check
// that refuses peers off loopback is tested by calling the API with such a
// peer (tests/control/control_test.ts), since no test here can be one.

import assert from "node:assert/strict";
import {
  controlUrl,
  delay,
  fetchBytes,
  makePoems,
  rawExchange,
  type RunningServer,
  socketCount,
  startServer,
} from "../helpers.ts";

const linux = Deno.build.os === "linux";
const encoder = new TextEncoder();
const POEM = "Under attack, still a poem.\n".repeat(100);
const poems = linux ? await makePoems({ "p.txt": POEM }) : undefined;

function hostileTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `control hostile: ${name}`, ignore: !linux, fn });
}

async function withControl(
  fn: (
    control: { hostname: string; port: number },
    poem: { hostname: string; port: number },
    server: RunningServer,
  ) => Promise<void>,
  extra: string[] = [],
): Promise<void> {
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--control",
    "127.0.0.1:0",
    ...extra,
    poems!.path("p.txt"),
  ]);
  try {
    const port = Number(new URL(await controlUrl(server)).port);
    await fn({ hostname: "127.0.0.1", port }, server.addresses[0], server);
  } finally {
    await server.stop();
  }
}

const request = (method: string, path: string, body = "", headers = "") =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers}` +
  `Content-Length: ${encoder.encode(body).length}\r\n\r\n${body}`;

hostileTest("a body over 64 KiB is a 413 before it is read, and nothing changes", async () => {
  await withControl(async (control) => {
    const answer = await rawExchange(
      control,
      "POST /proxies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n{",
    );
    assert.match(answer, /^HTTP\/1\.1 413 /, answer);
    const listed = await rawExchange(control, request("GET", "/proxies"));
    assert.equal(listed.match(/"name":/g)?.length, 1, listed);
  });
});

hostileTest(
  "a body that never finishes is a 408 at the body timeout, not a held request",
  async () => {
    await withControl(async (control, poem) => {
      const started = Date.now();
      const answer = await rawExchange(
        control,
        'POST /proxies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200\r\n\r\n{"name": "slow"',
        20_000,
      );
      assert.match(answer, /^HTTP\/1\.1 408 /, answer);
      assert.ok(Date.now() - started < 15_000, `${Date.now() - started} ms`);
      // Changes run one at a time: the stalled body held none of them.
      assert.deepEqual(new TextDecoder().decode(await fetchBytes(poem)), POEM);
    });
  },
);

hostileTest(
  "a browser, a foreign Host, garbage and deep JSON get errors, not a crash",
  async () => {
    await withControl(async (control, poem) => {
      const browser = await rawExchange(
        control,
        request("POST", "/reset", "", "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"),
      );
      assert.match(browser, /^HTTP\/1\.1 403 [\s\S]*"User agent not allowed"/, browser);
      const rebound = await rawExchange(
        control,
        "POST /reset HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n",
      );
      assert.match(rebound, /^HTTP\/1\.1 421 /, rebound);
      assert.doesNotMatch(rebound, /--admin-name/);
      const deep = "[".repeat(60_000) + "]".repeat(5_000);
      assert.match(
        await rawExchange(control, request("POST", "/populate", deep)),
        /^HTTP\/1\.1 400 /,
      );
      for (
        const body of [
          "\x00\xff",
          "null",
          "[]",
          '{"name": {}}',
          '{"type": "latency", "attributes": 5}',
        ]
      ) {
        const answer = await rawExchange(control, request("POST", "/proxies/p_0/toxics", body));
        assert.match(answer, /^HTTP\/1\.1 (400|404) /, answer);
      }
      assert.match(
        await rawExchange(control, request("GET", "/proxies/%E0%A4%A")),
        /^HTTP\/1\.1 400 /,
      );
      // Still serving, both.
      assert.match(await rawExchange(control, request("GET", "/version")), /^HTTP\/1\.1 200 /);
      assert.deepEqual(new TextDecoder().decode(await fetchBytes(poem)), POEM);
    });
  },
);

hostileTest(
  "proxies are bounded: the 257th is refused, and a removed one frees its socket",
  async () => {
    await withControl(async (control, _poem, server) => {
      const url = `http://127.0.0.1:${control.port}`;
      const create = (name: string) =>
        fetch(`${url}/proxies`, {
          method: "POST",
          body: JSON.stringify({ name, listen: "127.0.0.1:0", upstream: "p.txt" }),
        });
      const before = socketCount(server.process.pid);
      // One proxy is the poem's own listener.
      for (let i = 1; i < 256; i++) assert.equal((await create(`p${i}`)).status, 201, `p${i}`);
      const refused = await create("p256");
      assert.equal(refused.status, 400);
      assert.match((await refused.json()).error, /^at most 256 proxies/);
      for (let i = 1; i < 256; i++) {
        const gone = await fetch(`${url}/proxies/p${i}`, { method: "DELETE" });
        assert.equal(gone.status, 204);
        await gone.body?.cancel();
      }
      // Closed listeners leave nothing behind (a few sockets of slack for the HTTP connections).
      assert.ok(
        socketCount(server.process.pid) <= before + 4,
        `${before} → ${socketCount(server.process.pid)}`,
      );
    });
  },
);

hostileTest(
  "a flood of half-sent requests and changes does not stall a poem's clients",
  async () => {
    await withControl(async (control, poem) => {
      // 64 connections (the endpoint's cap) that send half a head and wait,
      // 100 more turned away at the cap, and a client changing toxics all along.
      const held: Deno.Conn[] = [];
      for (let i = 0; i < 164; i++) {
        const conn = await Deno.connect(control);
        await conn.write(encoder.encode("GET /proxies HTTP/1.1\r\nHost: 127")).catch(() => 0);
        held.push(conn);
      }
      let changing = true;
      const changes = (async () => {
        const url = `http://127.0.0.1:${control.port}`;
        for (let i = 0; changing && i < 500; i++) {
          // Over the cap, these may be turned away with a 503 or a reset: both fine.
          await fetch(`${url}/reset`, { method: "POST" }).then((r) => r.body?.cancel(), () => {});
          await delay(10);
        }
      })();
      try {
        for (let i = 0; i < 20; i++) {
          const started = performance.now();
          assert.deepEqual(new TextDecoder().decode(await fetchBytes(poem)), POEM);
          const ms = performance.now() - started;
          assert.ok(ms < 3000, `fetch ${i} took ${Math.round(ms)} ms`);
        }
      } finally {
        changing = false;
        await changes;
        for (const conn of held) {
          try {
            conn.close();
          } catch {
            // Closed by the server (the cap, a timeout).
          }
        }
      }
    });
  },
);

hostileTest(
  "a client that never reads its answers does not keep the process from exiting",
  async () => {
    await withControl(async (control, _poem, server) => {
      const conn = await Deno.connect(control);
      // Thousands of pipelined requests, their answers never read: the
      // endpoint's writes block once the socket buffers are full.
      const one = "GET /proxies HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
      const writing = conn.write(encoder.encode(one.repeat(20_000))).catch(() => 0);
      await delay(500);
      const started = Date.now();
      const status = await server.stop();
      assert.equal(status.code, 0);
      assert.ok(Date.now() - started < 8000, `exit took ${Date.now() - started} ms`);
      try {
        conn.close();
      } catch {
        // Closed already.
      }
      await writing;
    }, ["--drain-timeout", "1"]);
  },
);

Deno.test({ name: "control hostile: cleanup", ignore: !linux, fn: () => poems!.cleanup() });
