// The real program over real TCP: exact bytes, several poems, IPv6, pacing,
// clients that leave, many clients at once, logs.

import assert from "node:assert/strict";
import {
  CUSTOM_SERVER,
  delay,
  fetchBytes,
  freePortRange,
  hasIpv6Loopback,
  makePoems,
  readTimed,
  ROOT,
  runServer,
  seededBytes,
  startServer,
} from "../helpers.ts";

const TEXT =
  "Ode to a Byte\n\nÜber alles, ein Gedicht — 詩 — with UTF-8 in it.\r\nAnd a CRLF line.\n";
const BINARY = seededBytes(1024 * 1024);
const encoder = new TextEncoder();

Deno.test("serves a UTF-8 text poem byte for byte, and prints one Serving line", async () => {
  const poems = await makePoems({ "ode.txt": TEXT });
  const server = await startServer([poems.path("ode.txt"), "--iface", "127.0.0.1"]);
  try {
    assert.match(server.lines[0], /^Serving .*ode\.txt on 127\.0\.0\.1:\d+\.$/);
    assert.deepEqual(await fetchBytes(server.addresses[0]), encoder.encode(TEXT));
  } finally {
    const status = await server.stop();
    // Windows has no SIGTERM: kill() ends the process without a drain.
    if (Deno.build.os !== "windows") assert.equal(status.code, 0);
    assert.equal(await server.restOfStdout(), "", "nothing but Serving lines on stdout");
    await poems.cleanup();
  }
});

Deno.test("serves a 1 MB binary poem byte for byte, to several clients at once", async () => {
  const poems = await makePoems({ "noise.bin": BINARY });
  const server = await startServer([poems.path("noise.bin")]);
  try {
    const got = await Promise.all(Array.from({ length: 5 }, () => fetchBytes(server.addresses[0])));
    for (const bytes of got) assert.deepEqual(bytes, BINARY);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("an empty poem: the client connects, gets zero bytes, and is closed", async () => {
  const poems = await makePoems({ "silence.txt": "" });
  const server = await startServer([poems.path("silence.txt")]);
  try {
    assert.equal((await fetchBytes(server.addresses[0])).length, 0);
    await server.waitForStderr(/got 0 of 0 bytes .* completed/);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("several poems get consecutive ports from --port, in the order given", async () => {
  const poems = await makePoems({ "a.txt": "first\n", "b.txt": "second\n", "c.txt": "third\n" });
  const port = freePortRange(3);
  const args = [
    "--port",
    String(port),
    poems.path("b.txt"),
    poems.path("a.txt"),
    poems.path("c.txt"),
  ];
  const server = await startServer(args, { listeners: 3 });
  try {
    assert.deepEqual(server.addresses.map((a) => a.port), [port, port + 1, port + 2]);
    const texts = await Promise.all(server.addresses.map(fetchBytes));
    assert.deepEqual(texts.map((b) => new TextDecoder().decode(b)), [
      "second\n",
      "first\n",
      "third\n",
    ]);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("a directory serves every regular file in it, sorted by name, skipping dotfiles", async () => {
  const poems = await makePoems({
    "2-b.txt": "B\n",
    "1-a.txt": "A\n",
    ".hidden": "no\n",
    "3-c.txt": "C\n",
  });
  await Deno.mkdir(poems.path("subdir"));
  const server = await startServer([poems.dir], { listeners: 3 });
  try {
    assert.deepEqual(server.lines.map((l) => l.match(/\d-\w\.txt/)?.[0]), [
      "1-a.txt",
      "2-b.txt",
      "3-c.txt",
    ]);
    const texts = await Promise.all(server.addresses.map(fetchBytes));
    assert.deepEqual(texts.map((b) => new TextDecoder().decode(b)), ["A\n", "B\n", "C\n"]);
    await delay(200);
    assert.equal(server.stderr().includes("hidden"), false);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test({
  name: "listens on IPv6 with --iface ::1 and prints the host in brackets",
  ignore: !hasIpv6Loopback(),
  async fn() {
    const poems = await makePoems({ "six.txt": TEXT });
    const server = await startServer(["--iface", "::1", poems.path("six.txt")]);
    try {
      assert.match(server.lines[0], /on \[::1\]:\d+\.$/);
      assert.deepEqual(await fetchBytes(server.addresses[0]), encoder.encode(TEXT));
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test("slow mode sends --num-bytes at a time, --delay apart", async () => {
  const poem = "0123456789".repeat(10); // 100 bytes: 10 writes, 9 delays
  const poems = await makePoems({ "slow.txt": poem });
  const server = await startServer(["--num-bytes", "10", "--delay", "0.1", poems.path("slow.txt")]);
  try {
    const { bytes, arrivals, ms } = await readTimed(server.addresses[0]);
    assert.equal(new TextDecoder().decode(bytes), poem);
    // Chunks 100 ms apart arrive one read each; a busy machine that runs the
    // reader late merges some (a server that ignored --num-bytes sends one).
    assert.ok(arrivals.length >= 6 && arrivals.length <= 10, `${arrivals.length} reads`);
    // The delays are strict; the upper bound only catches a pace far off.
    assert.ok(ms >= 850 && ms < 10_000, `took ${ms} ms, expected about 900`);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("fractional delays work, and --num-bytes defaults to 10", async () => {
  const poems = await makePoems({ "p.txt": "x".repeat(50) });
  const server = await startServer(["--delay", "0.05", poems.path("p.txt")]);
  try {
    const { bytes, ms } = await readTimed(server.addresses[0]);
    assert.equal(bytes.length, 50);
    // A delay rounded up to 1 s would take 4 s.
    assert.ok(ms >= 180 && ms < 3000, `took ${ms} ms, expected about 200`);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("a client that leaves mid-poem is noticed at the write after its reset; others are served", async () => {
  const poem = "abcdefghij".repeat(30); // 300 bytes at 10 per second: 30 s in all
  const poems = await makePoems({ "long.txt": poem });
  const server = await startServer(["--num-bytes", "10", "--delay", "1", poems.path("long.txt")]);
  try {
    const others = Array.from({ length: 3 }, () => readTimed(server.addresses[0], 20));
    const leaver = await readTimed(server.addresses[0], 10);
    assert.equal(leaver.bytes.length, 10);
    const left = performance.now();
    // The next write draws a reset from the client's kernel; the one after fails.
    await server.waitForStderr(/got 20 of 300 bytes .* client left/, 3000);
    assert.ok(performance.now() - left < 2900);
    for (const other of await Promise.all(others)) {
      assert.equal(new TextDecoder().decode(other.bytes), poem.slice(0, 20));
    }
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("a client that resets the connection is logged as gone; the server goes on", async () => {
  const poems = await makePoems({ "big.bin": BINARY });
  const server = await startServer([
    "--num-bytes",
    "1000",
    "--delay",
    "0.05",
    poems.path("big.bin"),
  ]);
  try {
    const conn = await Deno.connect(server.addresses[0]);
    await conn.read(new Uint8Array(10));
    // Closing with unread data makes the kernel send a reset.
    conn.close();
    await server.waitForStderr(/of 1048576 bytes .* client left/);
    const fast = await startServer([poems.path("big.bin")]);
    try {
      assert.deepEqual(await fetchBytes(fast.addresses[0]), BINARY);
    } finally {
      await fast.stop();
    }
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("200 clients at once all get the exact poem", async () => {
  const poem = encoder.encode(TEXT.repeat(40));
  const poems = await makePoems({ "p.txt": poem });
  const server = await startServer(["--log-level", "warning", poems.path("p.txt")]);
  try {
    const got = await Promise.all(
      Array.from({ length: 200 }, () => fetchBytes(server.addresses[0])),
    );
    assert.equal(
      got.filter((b) => b.length === poem.length && b.every((x, i) => x === poem[i])).length,
      200,
    );
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("200 slow clients at once are paced together", async () => {
  const poems = await makePoems({ "p.txt": "y".repeat(40) });
  const server = await startServer([
    "--log-level",
    "warning",
    "--num-bytes",
    "10",
    "--delay",
    "0.1",
    poems.path("p.txt"),
  ]);
  try {
    const started = performance.now();
    const got = await Promise.all(
      Array.from({ length: 200 }, () => readTimed(server.addresses[0])),
    );
    const ms = performance.now() - started;
    assert.ok(got.every((r) => r.bytes.length === 40));
    // One after another they would take a minute; room for a busy machine.
    assert.ok(ms >= 280 && ms < 15_000, `200 clients took ${ms} ms, expected about 300`);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("logs one record per connection: peer, poem, bytes, ms, outcome", async () => {
  const poems = await makePoems({ "p.txt": TEXT });
  const server = await startServer(["--log-format", "json", poems.path("p.txt")]);
  try {
    await fetchBytes(server.addresses[0]);
    await server.waitForStderr(/"outcome":"completed"/);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
  const records = server.stderr().trim().split("\n").map((line) => JSON.parse(line));
  const connection = records.find((r) => r.outcome);
  assert.equal(connection.level, "INFO");
  assert.match(connection.peer, /^127\.0\.0\.1:\d+$/);
  assert.equal(connection.sent, encoder.encode(TEXT).length);
  assert.equal(connection.total, encoder.encode(TEXT).length);
  assert.equal(typeof connection.ms, "number");
  assert.match(connection.poem, /p\.txt$/);
  assert.ok(records.some((r) => /^Serving .*p\.txt/.test(r.message)), "a startup record");
});

Deno.test("--log-level warning keeps info records off stderr", async () => {
  const poems = await makePoems({ "p.txt": TEXT });
  const server = await startServer(["--log-level", "warning", poems.path("p.txt")]);
  await fetchBytes(server.addresses[0]);
  await server.stop();
  await poems.cleanup();
  assert.equal(server.stderr(), "");
});

Deno.test("--help prints usage with examples and exits 0; --version prints the version", async () => {
  const help = await runServer(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage:/);
  assert.match(help.stdout, /--num-bytes/);
  assert.match(help.stdout, /Examples:/);
  const version = await runServer(["--version"]);
  assert.equal(version.code, 0);
  const { version: expected } = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  assert.equal(version.stdout.trim(), `poetry ${expected}`);
});

const nc = await findNc();

Deno.test({
  name: `the system's nc, with -N or -q 0 too, and Python's half-close get a 4 MB poem whole${
    nc ? "" : " (skipped: no nc installed)"
  }`,
  ignore: nc === undefined,
  async fn() {
    const poem = seededBytes(4 * 1024 * 1024, 43);
    const poems = await makePoems({ "p.bin": poem });
    const server = await startServer(["--iface", "127.0.0.1", poems.path("p.bin")]);
    try {
      const { port } = server.addresses[0];
      for (const flags of [[], ["-N"], ["-q", "0"]]) {
        const out = await new Deno.Command(nc!, {
          args: [...flags, "127.0.0.1", String(port)],
          stdin: "null",
        }).output();
        assert.deepEqual(out.stdout, poem, `nc ${flags.join(" ")}`);
      }
      const python = await new Deno.Command("python3", {
        args: [
          "-c",
          `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
s.shutdown(socket.SHUT_WR)
while True:
    b = s.recv(65536)
    if not b: break
    sys.stdout.buffer.write(b)
`,
          String(port),
        ],
      }).output();
      assert.deepEqual(python.stdout, poem, "python: input, then shutdown(SHUT_WR)");
      await server.waitForLines(/: completed\./, 4);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "deno task start serves every sample poem on 10000 and up",
  ignore: CUSTOM_SERVER,
  async fn() {
    const samples = [...Deno.readDirSync(`${ROOT}/poems`)].filter((e) => e.isFile).length;
    const port = freePortRange(samples);
    const server = await startServer(["--port", String(port), "poems/"], { listeners: samples });
    try {
      assert.deepEqual(
        server.addresses.map((a) => a.port),
        Array.from({ length: samples }, (_, i) => port + i),
      );
      for (const [i, address] of server.addresses.entries()) {
        const file = server.lines[i].match(/^Serving (.+) on /)![1];
        assert.deepEqual(await fetchBytes(address), await Deno.readFile(`${ROOT}/${file}`));
      }
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "works with least privilege: read only the poem, net only the listen address",
  ignore: CUSTOM_SERVER,
  async fn() {
    const poems = await makePoems({ "p.txt": TEXT });
    const command = [
      Deno.execPath(),
      "run",
      `--allow-read=${poems.path("p.txt")}`,
      "--allow-net=127.0.0.1",
      "main.ts",
    ];
    const process = new Deno.Command(command[0], {
      args: [...command.slice(1), "--iface", "127.0.0.1", poems.path("p.txt")],
      cwd: ROOT,
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    const port = Number(/:(\d+)\.\n/.exec(value!)![1]);
    assert.deepEqual(await fetchBytes({ hostname: "127.0.0.1", port }), encoder.encode(TEXT));
    process.kill("SIGTERM");
    await reader.cancel();
    assert.equal((await process.status).code, 0);
    await poems.cleanup();
  },
});

Deno.test("--samples serves the poems shipped with the program (embedded in a binary)", async () => {
  const names = [...Deno.readDirSync(`${ROOT}/poems`)].map((e) => e.name).sort();
  const server = await startServer(["--samples", "--iface", "127.0.0.1"], {
    listeners: names.length,
  });
  try {
    for (const [i, address] of server.addresses.entries()) {
      assert.ok(server.lines[i].includes(`poems/${names[i]} on `), server.lines[i]);
      assert.deepEqual(await fetchBytes(address), await Deno.readFile(`${ROOT}/poems/${names[i]}`));
    }
  } finally {
    await server.stop();
  }
});

async function findNc(): Promise<string | undefined> {
  for (const name of ["nc", "ncat", "netcat"]) {
    try {
      await new Deno.Command(name, { args: ["-h"], stdout: "null", stderr: "null" }).output();
      return name;
    } catch {
      // Not installed under this name.
    }
  }
  return undefined;
}
