// Faults you can see (issue 20): the real program over real TCP, its faults
// on purpose, and what every view of it says afterwards. The clients'
// own account (bytes, then an end of stream or a reset) is the truth; the
// log records, /status.json, /metrics (checked by promtool), the stats
// record and the shutdown summary must all agree with it, connection by
// connection and count by count.

import assert from "node:assert/strict";
import {
  adminUrl,
  delay,
  findProgram,
  httpGet,
  makePoems,
  sampleValue,
  startServer,
} from "../helpers.ts";

const POEM = "Cut me, reset me,\nI am a poem all the same.\n".repeat(4);
const SIZE = new TextEncoder().encode(POEM).length;
const promtool = findProgram("promtool");
const posix = Deno.build.os !== "windows";

/** What one client saw: its port, the bytes, and how the stream ended. */
interface Seen {
  /** Unknown when the reset beat Deno.connect (see below). */
  port?: number;
  bytes: number;
  end: "eof" | "reset";
}

/** Reads until the end of stream or a reset, as a client would. */
async function fetchSeen(address: { hostname: string; port: number }): Promise<Seen> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect(address);
  } catch (err) {
    // A reset right after the handshake can fail Deno.connect itself (it
    // asks for the peer's address once connected): still a reset, 0 bytes.
    if (err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.NotConnected) {
      return { bytes: 0, end: "reset" };
    }
    throw err;
  }
  const port = (conn.localAddr as Deno.NetAddr).port;
  const buffer = new Uint8Array(4096);
  let bytes = 0;
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) bytes += n;
    return { port, bytes, end: "eof" };
  } catch (err) {
    if (err instanceof Deno.errors.ConnectionReset) return { port, bytes, end: "reset" };
    throw err;
  } finally {
    try {
      conn.close();
    } catch {
      // Reset: closed already.
    }
  }
}

const json = (value: unknown) => JSON.stringify(value);

async function statusJson(base: string) {
  const { status, body } = await httpGet(`${base}status.json`);
  assert.equal(status, 200, body);
  return JSON.parse(body);
}

async function checkWithPromtool(body: string): Promise<void> {
  if (!promtool) return console.log("promtool not installed: the format check is skipped");
  const check = new Deno.Command(promtool, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = check.stdin.getWriter();
  await writer.write(new TextEncoder().encode(body));
  await writer.close();
  const out = await check.output();
  const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `promtool check metrics:\n${said}\n${body}`);
}

Deno.test({
  name:
    "faults you can see: cuts and resets are 'faulted' in the log, /status.json, /metrics, the stats record and the summary, as the clients saw them",
  ignore: !posix,
  async fn() {
    const poems = await makePoems({ "cut.txt": POEM });
    const poem = poems.path("cut.txt");
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--admin",
      "127.0.0.1:0",
      "--fault",
      "reset-after=10",
      "--fault",
      "close-after=5,probability=0.5",
      "--seed",
      "7",
      poem,
    ]);
    try {
      const base = await adminUrl(server);
      const seen: Seen[] = [];
      for (let i = 0; i < 8; i++) seen.push(await fetchSeen(server.addresses[0]));
      // The two cuts, as the clients saw them: 5 bytes and an end of stream,
      // or the first 10 bytes and a reset.
      for (const s of seen) {
        assert.ok(
          (s.end === "eof" && s.bytes === 5) || (s.end === "reset" && s.bytes <= 10),
          JSON.stringify(seen),
        );
      }
      const closed = seen.filter((s) => s.end === "eof");
      const reset = seen.filter((s) => s.end === "reset");
      // --seed 7 draws both within eight connections, the same every run.
      assert.deepEqual(
        seen.map((s) => s.end).join(" "),
        "eof reset eof eof reset eof reset eof",
      );

      // The log: one record per client, by its port, with its outcome and fault.
      const log = await server.waitForLines(/ got .* bytes of .* Faults: /, 8);
      const records = (pattern: RegExp) => log.split("\n").filter((l) => pattern.test(l)).length;
      assert.equal(records(/: faulted\. Faults: close-after=5\.$/), closed.length, log);
      assert.equal(records(/: faulted\. Faults: reset-after=10\.$/), reset.length, log);
      for (const s of seen) {
        if (s.port === undefined) continue;
        const record = new RegExp(
          s.end === "eof"
            ? `127\\.0\\.0\\.1:${s.port} got 5 of ${SIZE} bytes of .*: faulted\\. Faults: close-after=5\\.`
            : `127\\.0\\.0\\.1:${s.port} got at most 10 of ${SIZE} bytes of .*: faulted\\. Faults: reset-after=10\\.`,
        );
        assert.match(log, record);
      }
      assert.doesNotMatch(log, /: completed\./);

      // /status.json: totals, and the listener's faults and counts.
      const status = await statusJson(base);
      assert.equal(status.totals.completed, 0);
      assert.equal(status.totals.faulted, 8);
      assert.deepEqual(status.totals.faultsApplied, {
        "close-after": closed.length,
        "reset-after": reset.length,
      });
      const [listener] = status.listeners;
      assert.deepEqual(listener.faults, ["reset-after=10", "close-after=5,probability=0.5"]);
      assert.equal(listener.seed, 7);
      assert.deepEqual(listener.faultsApplied, {
        "close-after": closed.length,
        "reset-after": reset.length,
      });

      // /metrics: the outcome label, and the faults by listener and kind.
      const { body } = await httpGet(`${base}metrics`);
      const p = `poem="${poem}"`;
      assert.equal(sampleValue(body, `poetry_connections_total{${p},outcome="faulted"}`), 8, body);
      assert.equal(sampleValue(body, `poetry_connections_total{${p},outcome="completed"}`), 0);
      assert.equal(
        sampleValue(body, `poetry_faults_applied_total{${p},listener="0",fault="close-after"}`),
        closed.length,
        body,
      );
      assert.equal(
        sampleValue(body, `poetry_faults_applied_total{${p},listener="0",fault="reset-after"}`),
        reset.length,
      );
      await checkWithPromtool(body);

      // The stats record and the shutdown summary, in the same words.
      server.process.kill("SIGUSR2");
      await server.waitForStderr(/Stats: /);
      assert.match(
        server.stderr(),
        new RegExp(
          `Stats: 0 completed, 8 faulted, 0 client left, 0 timed out, 0 cut short, 0 error, 0 denied; ` +
            `faults applied: ${closed.length} close-after, ${reset.length} reset-after; `,
        ),
      );
      assert.equal((await server.stop()).code, 0);
      assert.match(
        server.stderr(),
        new RegExp(
          `Shut down: 0 completed, 8 faulted, 0 client left, 0 timed out, 0 cut short, 0 error, 0 denied; ` +
            `faults applied: ${closed.length} close-after, ${reset.length} reset-after\\.`,
        ),
      );
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test("faults you can see: a fault that cuts nothing leaves the transfer 'completed', still counted and shown", async () => {
  const poems = await makePoems({ "whole.txt": POEM });
  const poem = poems.path("whole.txt");
  // chunks delivers every byte; a close-after longer than the poem cuts nothing.
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--admin",
    "127.0.0.1:0",
    "--fault",
    "chunks=1-8",
    "--fault",
    `close-after=${SIZE}`,
    poem,
  ]);
  try {
    const base = await adminUrl(server);
    for (let i = 0; i < 3; i++) {
      const s = await fetchSeen(server.addresses[0]);
      assert.deepEqual([s.bytes, s.end], [SIZE, "eof"]);
    }
    const record = new RegExp(
      `got ${SIZE} of ${SIZE} bytes .*: completed\\. Faults: chunks=1-8, close-after=${SIZE}\\.`,
    );
    await server.waitForLines(record, 3);
    const status = await statusJson(base);
    assert.equal(status.totals.completed, 3);
    assert.equal(status.totals.faulted, 0);
    assert.deepEqual(status.listeners[0].faultsApplied, { "close-after": 3, chunks: 3 });
    const { body } = await httpGet(`${base}metrics`);
    const p = `poem="${poem}"`;
    assert.equal(sampleValue(body, `poetry_connections_total{${p},outcome="completed"}`), 3, body);
    assert.equal(sampleValue(body, `poetry_connections_total{${p},outcome="faulted"}`), 0);
    assert.equal(
      sampleValue(body, `poetry_faults_applied_total{${p},listener="0",fault="chunks"}`),
      3,
      body,
    );
    assert.equal((await server.stop()).code, 0);
    assert.match(
      server.stderr(),
      /Shut down: 3 completed, 0 faulted, .* 0 denied; faults applied: 3 close-after, 3 chunks\./,
    );
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("faults you can see: a stall in flight shows its fault; the client leaving or the drain ends it 'faulted'", async () => {
  const poems = await makePoems({ "stall.txt": POEM });
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--admin",
    "127.0.0.1:0",
    "--drain-timeout",
    "0.5",
    "--fault",
    "stall-after=5",
    "--seed",
    "3",
    poems.path("stall.txt"),
  ]);
  const leaving = await Deno.connect(server.addresses[0]);
  const staying = await Deno.connect(server.addresses[0]);
  try {
    const base = await adminUrl(server);
    let status;
    for (let i = 0; i < 100; i++) {
      status = await statusJson(base);
      if (status.listeners[0].transfers.length === 2) break;
      await delay(50);
    }
    const [listener] = status.listeners;
    assert.deepEqual(listener.faults, ["stall-after=5"]);
    assert.equal(listener.seed, 3);
    assert.deepEqual(listener.faultsApplied, { "stall-after": 2 });
    assert.deepEqual(
      listener.transfers.map((t: { faults: string[] }) => t.faults),
      [["stall-after=5"], ["stall-after=5"]],
      JSON.stringify(listener),
    );
    // Both stalled: five bytes each, then nothing.
    const buffer = new Uint8Array(64);
    for (const conn of [leaving, staying]) {
      let got = 0;
      while (got < 5) got += (await conn.read(buffer.subarray(got)))!;
      assert.equal(got, 5);
    }
    leaving.close();
    await server.waitForStderr(/got 5 of \d+ bytes .*: faulted\. Faults: stall-after=5\./);
    assert.equal((await statusJson(base)).totals.faulted, 1);
    assert.equal((await server.stop()).code, 0);
    assert.equal(server.stderr().match(/: faulted\. Faults: stall-after=5\./g)?.length, 2);
    assert.match(
      server.stderr(),
      /Shut down: 0 completed, 2 faulted, 0 client left, 0 timed out, 0 cut short, 0 error, 0 denied; faults applied: 2 stall-after\./,
    );
  } finally {
    try {
      staying.close();
    } catch {
      // Closed by the server's drain.
    }
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test({
  name: "faults you can see: with --workers 2 the faults and outcomes add up over every thread",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const poems = await makePoems({ "w.txt": POEM });
    const poem = poems.path("w.txt");
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--admin",
      "127.0.0.1:0",
      "--workers",
      "2",
      "--fault",
      "close-after=5",
      poem,
    ]);
    const CLIENTS = 60;
    try {
      const base = await adminUrl(server);
      const seen = await Promise.all(
        Array.from({ length: CLIENTS }, () => fetchSeen(server.addresses[0])),
      );
      assert.ok(seen.every((s) => s.bytes === 5 && s.end === "eof"), JSON.stringify(seen));
      await server.waitForLines(/: faulted\. Faults: close-after=5\./, CLIENTS, 15_000);
      const status = await statusJson(base);
      assert.equal(status.totals.faulted, CLIENTS);
      assert.deepEqual(status.totals.faultsApplied, { "close-after": CLIENTS });
      assert.deepEqual(status.listeners[0].faultsApplied, { "close-after": CLIENTS });
      assert.equal(status.workers.length, 2);
      // The kernel spreads 60 clients over both threads (one alone: 2^-59).
      assert.ok(status.workers.every((w: { faulted: number }) => w.faulted > 0), json(status));
      assert.equal(
        status.workers.reduce((n: number, w: { faulted: number }) => n + w.faulted, 0),
        CLIENTS,
      );
      const { body } = await httpGet(`${base}metrics`);
      const p = `poem="${poem}"`;
      assert.equal(
        sampleValue(body, `poetry_faults_applied_total{${p},listener="0",fault="close-after"}`),
        CLIENTS,
        body,
      );
      assert.equal(
        sampleValue(body, `poetry_connections_total{${p},outcome="faulted"}`),
        CLIENTS,
      );
      await checkWithPromtool(body);
      assert.equal((await server.stop()).code, 0);
      assert.match(
        server.stderr(),
        new RegExp(
          `Shut down: 0 completed, ${CLIENTS} faulted, .*; faults applied: ${CLIENTS} close-after\\.`,
        ),
      );
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});
