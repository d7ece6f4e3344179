// --workers N: several threads accept on the same ports (SO_REUSEPORT, Linux),
// and the process still behaves as one server: exact bytes from every worker,
// one Serving line per listener, signals reach every worker, the summary, the
// stats record, /metrics and /status.json add them up, caps are shared, and
// the log is one record per line.

import assert from "node:assert/strict";
import {
  adminUrl,
  connectOrReset,
  delay,
  fetchBytes,
  freePort,
  httpGet,
  makePoems,
  readTimed,
  runServer,
  sampleValue,
  seededBytes,
  socketCount,
  startServer,
  waitForSockets,
} from "../helpers.ts";

const linux = Deno.build.os === "linux";
const POEM = "One poem,\ntwo threads,\nthe same bytes.\n";
const BYTES = new TextEncoder().encode(POEM);

interface Status {
  totals: { completed: number; inFlight: number };
  listeners: { active: number; transfers: unknown[] }[];
  workers?: { completed: number; inFlight: number }[];
}

async function status(base: string): Promise<Status> {
  return JSON.parse((await httpGet(`${base}status.json`)).body);
}

/** Fetches `count` times, `parallel` at once, and returns the bodies. */
async function fetchMany(
  address: { hostname: string; port: number },
  count: number,
  parallel = 20,
): Promise<Uint8Array[]> {
  const bodies: Uint8Array[] = [];
  for (let done = 0; done < count; done += parallel) {
    const batch = Math.min(parallel, count - done);
    bodies.push(...await Promise.all(Array.from({ length: batch }, () => fetchBytes(address))));
  }
  return bodies;
}

Deno.test({
  name: "--workers 2: every client gets the exact bytes, both workers serve, the totals add up",
  ignore: !linux,
  async fn() {
    const big = seededBytes(1024 * 1024 + 7);
    const poems = await makePoems({ "a.txt": POEM, "big.bin": big });
    const server = await startServer(
      ["--iface", "127.0.0.1", "--workers", "2", "--admin", "127.0.0.1:0", poems.dir],
      { listeners: 2 },
    );
    try {
      // One Serving line per listener, not per worker.
      assert.equal(server.lines.length, 2);
      const [small, big1] = server.addresses;
      const smalls = await fetchMany(small, 300);
      for (const body of smalls) assert.deepEqual(body, BYTES);
      const bigs = await fetchMany(big1, 40, 10);
      for (const body of bigs) assert.deepEqual(body, big);
      await server.waitForLines(/: completed\./, 340);
      const base = await adminUrl(server);
      const report = await status(base);
      assert.equal(report.totals.completed, 340);
      assert.equal(report.workers?.length, 2);
      // The kernel hashes each connection's addresses and ports: 340 clients
      // all landing on one of two sockets has odds of 2^-339.
      for (const worker of report.workers!) assert.ok(worker.completed > 0, JSON.stringify(report));
      assert.equal(report.workers!.reduce((n, w) => n + w.completed, 0), 340);
      const metrics = (await httpGet(`${base}metrics`)).body;
      const series = (poem: string) =>
        `poetry_connections_total{poem="${poems.path(poem)}",outcome="completed"}`;
      assert.equal(sampleValue(metrics, series("a.txt")), 300);
      assert.equal(sampleValue(metrics, series("big.bin")), 40);
      assert.equal(
        sampleValue(metrics, `poetry_sent_bytes_total{poem="${poems.path("big.bin")}"}`),
        40 * big.length,
      );
      // The process's own figures are counted once, not once per worker.
      assert.equal(sampleValue(metrics, `poetry_build_info{version="0.1.0"}`), 1);
      server.process.kill("SIGUSR2");
      await server.waitForStderr(/Stats: 340 completed, .*; \d+ bytes sent; 0 in flight/);
      assert.equal((await server.stop()).code, 0);
      assert.match(server.stderr(), /Shut down: 340 completed, 0 client left, 0 timed out/);
      // Each listener's start is logged once, by the main thread.
      assert.equal(
        server.stderr().split("\n").filter((l) => /Serving .*big\.bin/.test(l)).length,
        1,
      );
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "--workers 2: SIGTERM drains the transfers of every worker, and the summary adds them",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM.repeat(4) });
    const expected = new TextEncoder().encode(POEM.repeat(4));
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--workers",
      "2",
      "--num-bytes",
      "20",
      "--delay",
      "0.1",
      poems.path("p.txt"),
    ]);
    try {
      const listening = socketCount(server.process.pid);
      const reads = Array.from({ length: 24 }, () => readTimed(server.addresses[0]));
      // All 24 accepted: a client still in a backlog at SIGTERM is refused.
      await waitForSockets(server.process.pid, listening + 24);
      server.process.kill("SIGTERM");
      const bodies = await Promise.all(reads);
      for (const { bytes } of bodies) assert.deepEqual(bytes, expected);
      const status = await server.stop();
      assert.equal(status.code, 0);
      const stderr = server.stderr();
      assert.match(stderr, /Stopped accepting; draining 24 transfers/);
      assert.match(stderr, /Shut down: 24 completed, 0 client left, 0 timed out, 0 cut short/);
      // The drain and the summary are written once, for the whole process.
      assert.equal(stderr.split("\n").filter((l) => l.includes("Shut down:")).length, 1);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "--workers 2: SIGHUP and --watch reach every worker: all clients get the new poem",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": "old\n" });
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--workers",
      "2",
      "--watch",
      poems.path("p.txt"),
    ]);
    const text = async (n: number) =>
      (await fetchMany(server.addresses[0], n)).map((b) => new TextDecoder().decode(b));
    // A worker re-reads at its own pace, after the main thread's record: fetch
    // until every body is the new poem (a worker the reload never reaches
    // keeps serving the old one past the deadline, which a busy machine's
    // workers do not reach).
    const settled = async (expected: string, n: number) => {
      const deadline = Date.now() + 30_000;
      let seen = new Set(await text(n));
      while ((seen.size !== 1 || !seen.has(expected)) && Date.now() < deadline) {
        await delay(50);
        seen = new Set(await text(n));
      }
      return seen;
    };
    try {
      assert.deepEqual(new Set(await text(40)), new Set(["old\n"]));
      // Saved by rename, as editors do; the watch re-reads it.
      await Deno.writeTextFile(poems.path("new.tmp"), "new\n");
      await Deno.rename(poems.path("new.tmp"), poems.path("p.txt"));
      await server.waitForStderr(/Reloaded .*p\.txt: now 4 bytes/);
      assert.deepEqual(await settled("new\n", 60), new Set(["new\n"]));
      // SIGHUP likewise, for a write in place the watch would also see:
      // the point is that the signal, sent to the process, reaches the workers.
      await Deno.writeTextFile(poems.path("newer.tmp"), "newer\n");
      await Deno.rename(poems.path("newer.tmp"), poems.path("p.txt"));
      server.process.kill("SIGHUP");
      await server.waitForStderr(/Reloaded .*p\.txt: now 6 bytes/);
      assert.deepEqual(await settled("newer\n", 60), new Set(["newer\n"]));
      assert.equal((await server.stop()).code, 0);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "--workers 2 --max-connections 4: the cap holds over both workers together",
  ignore: !linux,
  async fn() {
    // 400 bytes, 10 per 0.1 s: about 4 s a transfer, so no slot frees in the window below.
    const poems = await makePoems({ "p.txt": "x".repeat(400) });
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--workers",
      "2",
      "--max-connections",
      "4",
      "--num-bytes",
      "10",
      "--delay",
      "0.1",
      poems.path("p.txt"),
    ]);
    const conns: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 12; i++) conns.push(await Deno.connect(server.addresses[0]));
      // Who got a first byte within 1.5 s: exactly the 4 the cap lets in.
      const started = await Promise.all(conns.map(async (conn) => {
        const buffer = new Uint8Array(1);
        const got = await Promise.race([conn.read(buffer), delay(1500).then(() => "waiting")]);
        return got !== "waiting";
      }));
      assert.equal(started.filter(Boolean).length, 4);
      // "At the cap" when it is reached, not at every hand-over of a slot.
      const atCap = server.stderr().split("\n").filter((l) => l.includes("At the cap"));
      assert.ok(atCap.length <= 2, atCap.join("\n"));
    } finally {
      for (const conn of conns) conn.close();
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "--workers 2: 3,000 connection records under load, every stderr line one whole record",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM });
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--workers",
      "2",
      "--log-format",
      "json",
      poems.path("p.txt"),
    ]);
    try {
      await fetchMany(server.addresses[0], 3000, 50);
      await server.waitForLines(/completed\./, 3000, 20_000);
      assert.equal((await server.stop()).code, 0);
      const lines = server.stderr().split("\n");
      assert.equal(lines.pop(), "");
      for (const line of lines) JSON.parse(line);
      const records = lines.map((line) => JSON.parse(line));
      assert.equal(records.filter((r) => r.logger === "poetry.connection").length, 3000);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "--workers 2 with reset-after: the resetting listener shares its port too",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": "y".repeat(5000) });
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--workers",
      "2",
      "--fault",
      "reset-after=100",
      // A reset that comes as soon as the connection is accepted can fail
      // Deno.connect itself (it asks for the peer's address after the
      // handshake): let the client get connected first.
      "--fault",
      "first-byte-delay=0.05",
      poems.path("p.txt"),
    ]);
    try {
      // The delay makes it rare, not impossible: a client whose task runs late
      // sees the reset at connect, with no byte to check. It is counted, and
      // clients go on until 20 have read their 100 bytes and the reset.
      let read = 0;
      let resetAtConnect = 0;
      for (let i = 0; i < 100 && read < 20; i++) {
        const conn = await connectOrReset(server.addresses[0]);
        if (conn === "reset") {
          resetAtConnect++;
          continue;
        }
        const buffer = new Uint8Array(8192);
        let got = 0;
        let error: unknown;
        try {
          for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) got += n;
        } catch (err) {
          error = err;
        } finally {
          conn.close();
        }
        assert.equal(got, 100);
        assert.ok(error instanceof Deno.errors.ConnectionReset, String(error));
        read++;
      }
      assert.equal(read, 20, `${resetAtConnect} clients reset before Deno.connect settled`);
      assert.equal((await server.stop()).code, 0);
      // Every client, those reset at connect too, was the fault's doing.
      const records = server.stderr().match(
        /got at most 100 of 5000 bytes .*: faulted\. Faults: reset-after=100, first-byte-delay=0\.05\./g,
      );
      assert.equal(records?.length, read + resetAtConnect, server.stderr());
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test("--workers must be a whole number from 1 to 256 or auto: exit 2", async () => {
  for (const bad of ["0", "two", "-1", "1.5", "257"]) {
    const { code, stderr } = await runServer(["--workers", bad, "--samples"]);
    assert.equal(code, 2, bad);
    assert.match(stderr, /^error: --workers must be a whole number from 1 to 256 or auto, got/);
    assert.equal(stderr.trim().split("\n").length, 2, stderr);
  }
});

Deno.test({
  name: "--workers auto uses the cores and serves as one",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM });
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--workers",
      "auto",
      "--admin",
      "127.0.0.1:0",
      poems.dir,
    ]);
    try {
      assert.equal(server.lines.length, 1);
      for (const body of await fetchMany(server.addresses[0], 40)) assert.deepEqual(body, BYTES);
      // One worker per core this process may use (two here); one core: no list.
      const report = await status(await adminUrl(server));
      assert.equal(report.workers?.length ?? 1, navigator.hardwareConcurrency);
      assert.equal((await server.stop()).code, 0);
      assert.match(server.stderr(), /Shut down: 40 completed/);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "--workers 2 on a port another poetry --workers holds: in use, exit 1, not a silent share",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM });
    const port = freePort();
    const args = ["--iface", "127.0.0.1", "--port", String(port), "--workers", "2", poems.dir];
    const first = await startServer(args);
    try {
      const second = await runServer(args);
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
      for (const body of await fetchMany(first.addresses[0], 20)) assert.deepEqual(body, BYTES);
      assert.equal((await first.stop()).code, 0);
      assert.match(first.stderr(), /Shut down: 20 completed/);
    } finally {
      await first.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "--workers 2 off Linux: one line saying why, exit 2",
  // Runs where the release workflow tests the macOS and Windows binaries.
  ignore: linux,
  async fn() {
    const { code, stderr } = await runServer(["--workers", "2", "--samples"]);
    assert.equal(code, 2);
    assert.match(stderr, /^error: --workers 2 needs Linux \(SO_REUSEPORT\)/);
  },
});

Deno.test({
  name:
    "--workers under a --allow-read that leaves out the workers' code: one line saying so, exit 2",
  ignore: !linux,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM });
    try {
      const { code, stderr } = await runServer([
        "--iface",
        "127.0.0.1",
        "--workers",
        "2",
        poems.dir,
      ], {
        command: [Deno.execPath(), "run", "--allow-net", `--allow-read=${poems.dir}`, "main.ts"],
      });
      assert.equal(code, 2, stderr);
      assert.match(
        stderr,
        /^error: workers need read access to the program's code: \S+\/lib and \S+\/deno\.json\n/,
      );
      assert.match(stderr, /\n {2}add them to --allow-read, e\.g\. --allow-read=poems,\S+\/lib,/);
      assert.doesNotMatch(stderr, /Uncaught/);
      assert.ok(!stderr.includes("\u001b["), "no ANSI colour codes on stderr");
    } finally {
      await poems.cleanup();
    }
  },
});
