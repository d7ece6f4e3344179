// Attack tests: defects found by a hostile tester after issue 8, each over real
// TCP against the real server. Each fails today; see the comment on each for
// what was seen. Linux only (they read /proc, use symlinks, Python for resets).

import assert from "node:assert/strict";
import {
  delay,
  fetchBytes,
  freePortRange,
  makePoems,
  ROOT,
  rssKiB,
  seededBytes,
  serverCommand,
  startServer,
} from "../helpers.ts";

const linux = Deno.build.os === "linux";

function attackTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `attack: ${name}`, ignore: !linux, fn });
}

/** Outcomes of the per-connection records in a server's stderr, in order. */
function outcomes(stderr: string): string[] {
  return [...stderr.matchAll(/got \d+ of \d+ bytes of .* in \d+ ms: ([a-z ]+)[.(]/g)].map((m) =>
    m[1].trim()
  );
}

// Issue 8 point 9 ("takes no bytes for SECS must mean exactly that") is not
// met: the kernel only takes more once a third of its ~4 MiB send buffer has
// drained, so a client that reads steadily is dropped as "timed out". Seen: a
// client reading ~93 KiB/s without pause was dropped at --write-timeout 3
// after 3.5 s ("got 3919872 of 16777216 bytes ... timed out") while it had
// read only 760 KB and kept reading.
// Not met, and not fixable in Deno 2.9.6 with least privilege: Deno.Conn
// exposes no send-queue size (SIOCOUTQ, TCP_INFO) and no SO_SNDBUF or
// TCP_NOTSENT_LOWAT, and /proc/net/tcp needs --allow-all. Kept, ignored, so
// that whoever gets such an API finds the case ready (docs/operations.md: Stalled readers).
Deno.test({
  name:
    "attack: a client that keeps reading ~100 KiB/s is never logged 'timed out' by --write-timeout 2 " +
    "(ignored: Deno shows no socket send queue)",
  ignore: true,
  fn: async () => {
    const poems = await makePoems({ "big.bin": seededBytes(16 * 1024 * 1024, 11) });
    const server = await startServer(["--write-timeout", "2", poems.path("big.bin")]);
    try {
      const conn = await Deno.connect(server.addresses[0]);
      const buffer = new Uint8Array(5000);
      let got = 0;
      let endedEarly = false;
      const until = performance.now() + 6000;
      while (performance.now() < until) {
        const n = await conn.read(buffer);
        if (n === null) {
          endedEarly = true;
          break;
        }
        got += n;
        await delay(50); // at most 5000 bytes per 50 ms: ~100 KiB/s, never a pause over 2 s
      }
      conn.close();
      await server.waitForLines(/ got \d+ of /, 1);
      console.log(`  read ${got} bytes in 6 s; records: ${outcomes(server.stderr()).join(", ")}`);
      assert.ok(!endedEarly, `cut off after ${got} bytes though it never paused`);
      assert.doesNotMatch(server.stderr(), /timed out/);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

// The Serving lines are written with a synchronous console.log. With stdout
// into a pipe that is not read (a supervisor that read the first line, or
// none) and more than 64 KiB of Serving lines, the process blocks in
// write(2) (wchan anon_pipe_write): no client gets a byte, and SIGTERM is
// ignored until someone reads stdout. Seen with 700 poems: the first poem's
// client got no byte in 5 s; the process was still alive 8 s after SIGTERM.
attackTest("a stalled stdout pipe neither stops serving nor blocks SIGTERM", async () => {
  // 40 poems whose paths are ~3 KB long: ~120 KB of Serving lines.
  const poems = await makePoems({});
  let deep = poems.dir;
  for (let i = 0; i < 14; i++) deep += `/${String(i).padStart(2, "0")}${"d".repeat(200)}`;
  await Deno.mkdir(deep, { recursive: true });
  for (let i = 0; i < 40; i++) {
    await Deno.writeTextFile(`${deep}/poem-${String(i).padStart(2, "0")}.txt`, `poem ${i}\n`);
  }
  const port = freePortRange(40);
  const [cmd, ...rest] = [
    ...serverCommand(),
    "--iface",
    "127.0.0.1",
    "--port",
    String(port),
    deep,
  ];
  // stdout is piped and never read, like a log pipe whose reader stopped.
  const process = new Deno.Command(cmd, {
    args: rest,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const killer = setTimeout(() => process.kill("SIGKILL"), 30_000);
  try {
    // The first poem, once the server listens (allow for start-up).
    let bytes: Uint8Array | undefined;
    const deadline = performance.now() + 10_000;
    while (!bytes && performance.now() < deadline) {
      bytes = await Promise.race([
        fetchBytes({ hostname: "127.0.0.1", port }).catch(() => undefined),
        delay(2000).then(() => undefined),
      ]);
      if (!bytes) await delay(200);
    }
    assert.equal(new TextDecoder().decode(bytes), "poem 0\n", "no poem while stdout is stalled");
    process.kill("SIGTERM");
    const exited = await Promise.race([process.status.then(() => true), delay(5000)]);
    assert.ok(exited, "still running 5 s after SIGTERM with stdout stalled");
  } finally {
    clearTimeout(killer);
    try {
      process.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await process.stdout.cancel();
    await process.status;
    await poems.cleanup();
  }
});

// chunksOf cuts an in-memory poem of up to 1 MiB into --num-bytes views, all
// at once, on the event loop. With --num-bytes 1 that is a million
// Uint8Arrays for the first client: seen, the whole server froze for ~1 s (a
// paced client of another poem, due a byte every 50 ms, waited 1.04 s) and
// RSS grew by ~160 MB per poem version (+130-180 MB again after each reload).
attackTest(
  "slow mode, --num-bytes 1: the first client of a 1 MiB poem neither freezes the server nor costs 100+ MB",
  async () => {
    const poems = await makePoems({
      "m1.bin": seededBytes(1024 * 1024, 5),
      "small.txt": "x".repeat(1000),
    });
    const server = await startServer(
      ["--num-bytes", "1", "--delay", "0.05", poems.path("m1.bin"), poems.path("small.txt")],
      { listeners: 2 },
    );
    const pid = server.process.pid;
    try {
      // A bystander on the small poem, paced at one byte per 50 ms.
      const bystander = await Deno.connect(server.addresses[1]);
      const one = new Uint8Array(1);
      await bystander.read(one);
      const rssBefore = rssKiB(pid);
      let last = performance.now();
      let maxGap = 0;
      let victim: Deno.Conn | undefined;
      const started = performance.now();
      while (performance.now() - started < 3000) {
        if (!victim && performance.now() - started > 500) {
          victim = await Deno.connect(server.addresses[0]);
        }
        if (await bystander.read(one) === null) break;
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
      }
      const grown = rssKiB(pid) - rssBefore;
      console.log(`  bystander's longest wait ${Math.round(maxGap)} ms; RSS +${grown} KiB`);
      bystander.close();
      victim?.close();
      // A server that stalls on the big poem holds every byte for its whole
      // transfer (seconds); 1.5 s leaves room for a busy machine's scheduling.
      assert.ok(maxGap < 1500, `a paced client waited ${Math.round(maxGap)} ms for one byte`);
      assert.ok(grown < 64 * 1024, `RSS grew by ${grown} KiB for one client of a 1 MiB poem`);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
);

// A client that read every byte and the end of the stream, then reset
// (SO_LINGER 0, as many load generators and some HTTP stacks close), was
// logged `client left` while an earlier README said `completed`; the README
// now says what the server does: a reset it sees is `client left`.
attackTest(
  "a client that reads the whole poem and EOF, then resets, is logged as the README says (client left)",
  async () => {
    const poems = await makePoems({ "poem.txt": "y".repeat(3200) });
    const server = await startServer([poems.path("poem.txt")]);
    const { port } = server.addresses[0];
    try {
      const script = `
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
got = b""
while True:
    d = s.recv(65536)
    if not d: break
    got += d
assert len(got) == 3200, len(got)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
`;
      const { code, stderr } = await new Deno.Command("python3", {
        args: ["-c", script, String(port)],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      await server.waitForLines(/ got \d+ of /, 1);
      assert.deepEqual(outcomes(server.stderr()), ["client left"]);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
);
