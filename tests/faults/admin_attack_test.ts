// The admin endpoint attacked as a hostile HTTP client would (issue 16,
// points 1-5), over real TCP against the real program: a client that never
// reads, exhausted descriptors, half requests, foreign Host names, malformed
// Host headers with stderr stalled. Each failed on the Deno.serve endpoint.

import assert from "node:assert/strict";
import {
  adminUrl,
  delay,
  fetchBytes,
  freePort,
  makePoems,
  rawExchange,
  sampleValue,
  startServer,
  WAIT_TIMEOUT_MS,
} from "../helpers.ts";

const linux = Deno.build.os === "linux";
const POEM = "Scrape me gently.\n";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const poems = linux ? await makePoems({ "p.txt": POEM, "slow.txt": "s".repeat(100) }) : undefined;

function attackTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `admin attack: ${name}`, ignore: !linux, fn });
}

function adminAddress(base: string): { hostname: string; port: number } {
  const url = new URL(base);
  return { hostname: url.hostname, port: Number(url.port) };
}

/** Waits for the process to exit, up to `ms`; undefined when it did not. */
async function exitWithin(
  process: Deno.ChildProcess,
  ms: number,
): Promise<Deno.CommandStatus | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  const status = await Promise.race([process.status, late]);
  clearTimeout(timer);
  return status;
}

attackTest("5,000 pipelined requests never read do not keep the process alive", async () => {
  const server = await startServer(["--admin", "127.0.0.1:0", poems!.path("p.txt")]);
  const conn = await Deno.connect(adminAddress(await adminUrl(server)));
  try {
    const request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    // Written in the background: the server stops reading once its answers
    // fill the socket, so this write may never complete.
    conn.write(encoder.encode(request.repeat(5000))).catch(() => {});
    await delay(1000);
    server.process.kill("SIGTERM");
    // A process kept alive stays for ever: 30 s is only room for a busy machine.
    const status = await exitWithin(server.process, 30_000);
    if (!status) server.process.kill("SIGKILL");
    assert.ok(status, "still running 30 s after SIGTERM with an unread admin client");
    assert.equal(status.code, 0, server.stderr());
    assert.match(server.stderr(), /Shut down:/);
  } finally {
    conn.close();
    await server.stop("SIGKILL");
  }
});

attackTest("descriptors exhausted by poem clients: /healthz answers again afterwards", async () => {
  const wrapper = ["sh", "-c", 'ulimit -n 64 && exec "$@"', "sh"];
  const args = ["--admin", "127.0.0.1:0", "--num-bytes", "50", "--delay", "1"];
  const server = await startServer([...args, poems!.path("slow.txt")], { wrapper });
  const admin = adminAddress(await adminUrl(server));
  const healthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  try {
    const holders = await Promise.all(
      Array.from({ length: 200 }, () => Deno.connect(server.addresses[0]).catch(() => undefined)),
    );
    await server.waitForStderr(/Accepting on .* failed: .*(Too many open files|os error 24)/);
    // Admin clients while no descriptor is free: the admin accept fails too.
    const tries = await Promise.all(
      Array.from({ length: 5 }, () => rawExchange(admin, healthz, 1000).catch(() => "")),
    );
    await server.waitForStderr(/Admin endpoint: accepting on .* failed/);
    for (const conn of holders) conn?.close();
    await delay(2500);
    const answer = await rawExchange(admin, healthz, 5000);
    assert.match(answer, /^HTTP\/1\.1 200 /, `${answer}\n(during: ${tries.length} tries)`);
    assert.match(answer, /\r\n\r\nok\n$/);
    assert.equal(decoder.decode(await fetchBytes(server.addresses[0])), "s".repeat(100));
    const metrics = await rawExchange(admin, healthz.replace("/healthz", "/metrics"));
    assert.ok(sampleValue(metrics, "poetry_admin_accept_errors_total")! > 0, metrics);
  } finally {
    await server.stop();
  }
});

attackTest("half requests: capped, timed out, and the poem port keeps its share", async () => {
  const wrapper = ["sh", "-c", 'ulimit -n 256 && exec "$@"', "sh"];
  const server = await startServer(
    ["--admin", "127.0.0.1:0", poems!.path("p.txt")],
    { wrapper },
  );
  const admin = adminAddress(await adminUrl(server));
  const pid = server.process.pid;
  const conns: Deno.Conn[] = [];
  try {
    // 400 connections that send half a request line and then nothing.
    for (let i = 0; i < 400; i++) {
      const conn = await Deno.connect(admin).catch(() => undefined);
      if (!conn) continue;
      conns.push(conn);
      conn.write(encoder.encode("GET /metr")).catch(() => {});
    }
    // Until the server has dealt with the backlog (accepted and let in, or
    // closed, each one): a busy machine takes seconds. Without a cap the
    // count stays near 400 until the deadline.
    const fdCount = () => [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
    const deadline = Date.now() + WAIT_TIMEOUT_MS;
    while (fdCount() >= 150 && Date.now() < deadline) await delay(50);
    const fds = fdCount();
    assert.ok(fds < 150, `${fds} descriptors held by half requests`);
    // Poem clients are still served while the half requests wait.
    for (let i = 0; i < 20; i++) {
      assert.equal(decoder.decode(await fetchBytes(server.addresses[0])), POEM);
    }
    // The header timeout closes the ones that were let in.
    const closed = await Promise.all(
      conns.slice(0, 10).map(async (conn) => {
        const buf = new Uint8Array(1024);
        const timer = setTimeout(() => conn.close(), 20_000);
        const n = await conn.read(buf).catch(() => null);
        clearTimeout(timer);
        return n === null || decoder.decode(buf.subarray(0, n)).startsWith("HTTP/1.1 408");
      }),
    );
    assert.deepEqual(closed, closed.map(() => true));
    await server.waitForStderr(/header timeout/i);
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // Closed by the server or the timer.
      }
    }
    await server.stop();
  }
});

attackTest(
  "malformed Host headers with stderr stalled: 400s, poems served, SIGTERM exits",
  async () => {
    const port = freePort();
    const admin = { hostname: "127.0.0.1", port };
    const stalled = await startServer(
      ["--admin", `127.0.0.1:${port}`, "--log-format", "json", poems!.path("p.txt")],
      { stallStderr: true },
    );
    try {
      const hosts = ["[", "a b", "x:99999"];
      for (let i = 0; i < 600; i++) {
        const answer = await rawExchange(
          admin,
          `GET /status.json HTTP/1.1\r\nHost: ${hosts[i % 3]}\r\nConnection: close\r\n\r\n`,
          5000,
        );
        assert.match(answer, /^HTTP\/1\.1 400 /, answer);
      }
      assert.equal(decoder.decode(await fetchBytes(stalled.addresses[0])), POEM);
      stalled.process.kill("SIGTERM");
      const status = await exitWithin(stalled.process, 10_000);
      assert.ok(status, "SIGTERM did not end a server whose stderr is stalled");
    } finally {
      await stalled.stop("SIGKILL");
    }
  },
);
