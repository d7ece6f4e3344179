// The admin endpoint as an HTTP server, over real TCP with raw requests
// (issue 16, points 3-5): which Host names it answers (DNS rebinding), what
// a malformed request gets, the size limits, and that nothing but the log's
// own records reaches stderr.

import assert from "node:assert/strict";
import { adminUrl, makePoems, rawExchange, runServer, startServer } from "../helpers.ts";

const poems = await makePoems({ "p.txt": "Host me.\n" });

const exchange = (port: number, request: string | Uint8Array) =>
  rawExchange({ hostname: "127.0.0.1", port }, request);

const status = (answer: string) => Number(/^HTTP\/1\.[01] (\d{3}) /.exec(answer)?.[1] ?? 0);

async function withAdmin(
  extra: string[],
  fn: (port: number, stderr: () => string) => Promise<void>,
): Promise<void> {
  const server = await startServer([
    "--admin",
    "127.0.0.1:0",
    ...extra,
    poems.path("p.txt"),
  ]);
  try {
    const port = Number(new URL(await adminUrl(server)).port);
    await fn(port, server.stderr);
  } finally {
    await server.stop();
  }
}

const get = (host: string | undefined, path = "/healthz", version = "1.1") =>
  `GET ${path} HTTP/${version}\r\n${
    host === undefined ? "" : `Host: ${host}\r\n`
  }Connection: close\r\n\r\n`;

Deno.test("admin http: only its own address, IP literals, loopback names and --admin-name answer", async () => {
  await withAdmin(["--admin-name", "poetry.internal"], async (port) => {
    for (
      const host of [
        `127.0.0.1:${port}`,
        "127.0.0.1",
        "localhost",
        `localhost:${port}`,
        "LOCALHOST.",
        "app.localhost",
        "[::1]",
        `[::1]:${port}`,
        "10.0.0.7:9100",
        "poetry.internal",
        `poetry.internal:${port}`,
      ]
    ) {
      const answer = await exchange(port, get(host));
      assert.equal(status(answer), 200, `${host}: ${answer}`);
      assert.match(answer, /\r\n\r\nok\n$/);
    }
    // A name re-pointed at 127.0.0.1 by its owner's DNS: refused, for every path.
    for (const path of ["/healthz", "/status.json", "/metrics", "/"]) {
      const answer = await exchange(port, get(`attacker.example:${port}`, path));
      assert.equal(status(answer), 421, answer);
      assert.doesNotMatch(answer, /poetry_|listeners|<html/);
    }
    assert.equal(status(await exchange(port, get("localhost.attacker.example"))), 421);
    // HTTP/1.1 requires Host; HTTP/1.0 (HAProxy's httpchk) need not send one.
    assert.equal(status(await exchange(port, get(undefined))), 400);
    assert.equal(status(await exchange(port, get(undefined, "/healthz", "1.0"))), 200);
  });
});

Deno.test("admin http: malformed requests are 400s, one record each, and no trace on stderr", async () => {
  await withAdmin(["--log-format", "json"], async (port, stderr) => {
    const bad = [
      get("["),
      get("a b"),
      get("x:99999"),
      get("127.0.0.1:0x50"),
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: localhost\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n folded\r\n\r\n",
      "GET healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      "GET /healthz\r\n\r\n",
      "\x00\x01\x02\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
    ];
    for (const request of bad) {
      const answer = await exchange(port, request);
      assert.equal(status(answer), 400, `${JSON.stringify(request)}: ${answer}`);
      assert.match(answer, /\r\nconnection: close\r\n/i);
    }
    assert.equal(status(await exchange(port, "GET /healthz HTTP/2.0\r\n\r\n")), 505);
    // Every line on stderr is one JSON record: no trace, no console.error.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lines = stderr().trim().split("\n");
    for (const line of lines) JSON.parse(line);
    const records = lines.filter((line) => /bad request/.test(line));
    // One record for each bad request, and one for the HTTP/2.0 request line.
    assert.equal(records.length, bad.length + 1, stderr());
  });
});

Deno.test("admin http: size limits: long headers 431, a body over the limit 413", async () => {
  await withAdmin([], async (port) => {
    const long = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: ${
      "a".repeat(20_000)
    }\r\n\r\n`;
    assert.equal(status(await exchange(port, long)), 431);
    const many = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${"X: y\r\n".repeat(5000)}\r\n`;
    assert.equal(status(await exchange(port, many)), 431);
    const body = `POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n`;
    assert.equal(status(await exchange(port, body)), 413);
    // Keep-alive works, pipelined requests are answered in order.
    const two = await exchange(
      port,
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + get("127.0.0.1", "/nope"),
    );
    assert.match(two, /^HTTP\/1\.1 200 [\s\S]*ok\n[\s\S]*HTTP\/1\.1 404 /);
    const head = await exchange(
      port,
      "HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert.match(head, /^HTTP\/1\.1 200 [\s\S]*content-length: 3\r\n[\s\S]*\r\n\r\n$/i);
  });
});

Deno.test("admin http: a bad --admin-name, or one without --admin, is one line and a hint, exit 2", async () => {
  for (
    const args of [
      ["--admin", "127.0.0.1:0", "--admin-name", "evil name"],
      ["--admin", "127.0.0.1:0", "--admin-name", "a..b"],
      ["--admin-name", "poetry.internal"],
    ]
  ) {
    const result = await runServer([...args, poems.path("p.txt")]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^error: --admin-name needs .+\n {2}(use|add) e\.g\. .+\n$/);
    assert.equal(result.stdout, "");
  }
});
