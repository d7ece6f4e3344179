// Fault tests: the real server under abuse, over loopback, bounded in time.
// Linux only: they read the server's descriptors and memory from /proc.
// Each prints the figures it saw, for the record.

import assert from "node:assert/strict";
import {
  delay,
  fetchBytes,
  makePoems,
  readTimed,
  rssKiB,
  runServer,
  seededBytes,
  socketCount,
  startServer,
  STREAMED_SIZE,
  waitForSockets,
} from "../helpers.ts";

const linux = Deno.build.os === "linux";
const BIG = seededBytes(16 * 1024 * 1024, 7);
const POEM = "Twinkle, twinkle, little port,\nhow I wonder what you sort.\n".repeat(20);
const poems = linux
  ? await makePoems({ "big.bin": BIG, "poem.txt": POEM, "hundred.txt": "z".repeat(100) })
  : undefined;

function faultTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `fault: ${name}`, ignore: !linux, fn });
}

/** Open descriptors of a process. */
function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/**
 * The process's TCP connections on local `port`, its listening socket aside
 * (Linux: its socket descriptors, looked up in /proc/net/tcp{,6}). Only these
 * are clients: a socket of another kind the runtime opens for a moment is not.
 */
function connectionsOn(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      const socket = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`));
      if (socket) inodes.add(socket[1]);
    } catch {
      // Closed while we looked.
    }
  }
  const local = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let count = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of Deno.readTextFileSync(table).split("\n").slice(1)) {
      // sl local_address rem_address st ... inode (field 9); 0A is LISTEN.
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(local) && fields[3] !== "0A" && inodes.has(fields[9])) count++;
    }
  }
  return count;
}

/**
 * The process's descriptors once they are back to `expected`, or what they
 * are after `timeoutMs`: closing a reset connection takes the server a turn
 * or a paced write, later still on a busy machine.
 */
async function settledFdCount(pid: number, expected: number, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let count = fdCount(pid);
  while (count !== expected && Date.now() < deadline) {
    await delay(50);
    count = fdCount(pid);
  }
  return count;
}

/** Connects, reads a little, then closes with data unread: the kernel sends a reset. */
async function resetAfterFirstBytes(address: Deno.ConnectOptions): Promise<void> {
  try {
    const conn = await Deno.connect(address);
    await conn.read(new Uint8Array(100));
    conn.close();
  } catch {
    // A refused or reset connect is part of a storm too.
  }
}

/**
 * 20 clients at a time that each read a little and reset, for `ms`, or on
 * until `atLeast` have (a busy machine is slower), but not past 30 s.
 */
async function resetStorm(
  address: Deno.ConnectOptions,
  ms: number,
  atLeast = 0,
): Promise<number> {
  const started = performance.now();
  let count = 0;
  const going = () => {
    const elapsed = performance.now() - started;
    return elapsed < ms || (count < atLeast && elapsed < 30_000);
  };
  await Promise.all(Array.from({ length: 20 }, async () => {
    while (going()) {
      await resetAfterFirstBytes(address);
      count++;
    }
  }));
  return count;
}

faultTest("file-descriptor exhaustion: the server stays up and serves again", async () => {
  const wrapper = ["sh", "-c", 'ulimit -n 64 && exec "$@"', "sh"];
  // Each transfer holds its descriptor for a second: 100 bytes, 50 at a time.
  const args = ["--num-bytes", "50", "--delay", "1", poems!.path("hundred.txt")];
  const server = await startServer(args, { wrapper });
  const pid = server.process.pid;
  const address = server.addresses[0];
  try {
    const before = fdCount(pid);
    // 200 clients that hold their connections: far more than 64 descriptors.
    const holders = await Promise.all(
      Array.from({ length: 200 }, () => Deno.connect(address).catch(() => undefined)),
    );
    await server.waitForStderr(/Accepting on .* failed: .*(Too many open files|os error 24)/);
    const during = fdCount(pid);
    const limit = /Max open files\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/limits`))![1];
    for (const conn of holders) conn?.close();
    await delay(1500);
    const bytes = await fetchBytes(address);
    assert.equal(new TextDecoder().decode(bytes), "z".repeat(100));
    console.log(
      `  fds before ${before}, during ${during} (limit ${limit}); served again afterwards`,
    );
    assert.equal(limit, "64");
  } finally {
    await server.stop();
  }
});

faultTest(
  "a reset storm: descriptors come back, memory stops growing, bytes stay exact",
  async () => {
    const server = await startServer(["--log-level", "warning", poems!.path("big.bin")]);
    const pid = server.process.pid;
    const address = server.addresses[0];
    try {
      await fetchBytes(address); // warm up
      await delay(200);
      const fdsBefore = fdCount(pid);
      // The heap grows to its working size over the first storms, then stays
      // (the same with the code before issue 8: 64 -> 82 -> 108 -> 138 -> 142
      // -> 142 MiB over six 2 s storms; when it levels off depends on the
      // machine's speed). A leak of 4 KB per connection over ~45,000 resets
      // would pass 250 MiB.
      const fds: number[] = [];
      const rss: number[] = [rssKiB(pid)];
      let resets = 0;
      for (let i = 0; i < 6; i++) {
        resets += await resetStorm(address, 1500);
        await delay(400);
        fds.push(await settledFdCount(pid, fdsBefore));
        rss.push(rssKiB(pid));
      }
      console.log(
        `  ${resets} resets in six storms; fds ${fdsBefore} -> ${fds.join(", ")}; ` +
          `RSS ${rss.map((k) => Math.round(k / 1024)).join(" -> ")} MiB`,
      );
      for (const n of fds) assert.equal(n, fdsBefore);
      assert.ok(rss[6] < 250 * 1024, `memory keeps growing across storms: RSS ${rss[6]} KiB`);
      assert.deepEqual(await fetchBytes(address), BIG);
    } finally {
      await server.stop();
    }
  },
);

faultTest("stalled readers of a large poem are dropped after --write-timeout", async () => {
  const server = await startServer(["--write-timeout", "2", poems!.path("big.bin")]);
  try {
    const started = performance.now();
    const stalled = await Promise.all(
      Array.from({ length: 10 }, () => Deno.connect(server.addresses[0])),
    );
    await server.waitForLines(/: timed out\./, 10);
    const ms = performance.now() - started;
    for (const conn of stalled) conn.close();
    console.log(`  10 stalled readers dropped after ${(ms / 1000).toFixed(1)} s (timeout 2 s)`);
    // Not before the 2 s timeout (strict); the upper bound only catches a
    // timeout several times too long, with room for a busy machine.
    assert.ok(ms >= 2000 && ms < 12_000, `took ${ms} ms`);
    assert.deepEqual(await fetchBytes(server.addresses[0]), BIG, "others are still served");
  } finally {
    await server.stop();
  }
});

faultTest(
  "SIGTERM during 50 slow transfers: all finish, new clients are refused, exit 0",
  async () => {
    // 100 bytes, 10 per 0.1 s: about 0.9 s each.
    const server = await startServer([
      "--num-bytes",
      "10",
      "--delay",
      "0.1",
      poems!.path("hundred.txt"),
    ]);
    const address = server.addresses[0];
    const listening = socketCount(server.process.pid);
    const transfers = Array.from({ length: 50 }, () => readTimed(address));
    // All 50 accepted: a client still in the backlog at SIGTERM is refused.
    await waitForSockets(server.process.pid, listening + 50);
    server.process.kill("SIGTERM");
    await server.waitForStderr(/Stopped accepting/);
    await assert.rejects(() => Deno.connect(address), Deno.errors.ConnectionRefused);
    const results = await Promise.all(transfers);
    const status = await server.stop();
    const whole = results.filter((r) => r.bytes.length === 100).length;
    const summary = /Shut down: .*/.exec(server.stderr())?.[0];
    console.log(`  ${whole} of 50 got the whole poem; ${summary}; exit ${status.code}`);
    assert.equal(whole, 50);
    assert.equal(status.code, 0);
    assert.match(
      server.stderr(),
      /Shut down: 50 completed, 0 client left, 0 timed out, 0 cut short/,
    );
  },
);

faultTest(
  "the drain timeout cuts off what is left and still exits 0; a second signal exits at once",
  async () => {
    const server = await startServer([
      "--drain-timeout",
      "0.5",
      "--delay",
      "1",
      poems!.path("hundred.txt"),
    ]);
    const listening = socketCount(server.process.pid);
    const transfers = Array.from({ length: 5 }, () => readTimed(server.addresses[0]));
    await waitForSockets(server.process.pid, listening + 5);
    const started = performance.now();
    const status = await server.stop("SIGTERM");
    const ms = performance.now() - started;
    await Promise.all(transfers);
    assert.equal(status.code, 0);
    // The 0.5 s drain timeout, not the transfers' 10 s; room for a busy machine.
    assert.ok(ms < 6000, `exit took ${ms} ms`);
    assert.match(
      server.stderr(),
      /Shut down: 0 completed, 0 client left, 0 timed out, 5 cut short/,
    );

    const again = await startServer(["--delay", "1", poems!.path("hundred.txt")]);
    const idle = socketCount(again.process.pid);
    const slow = readTimed(again.addresses[0]);
    await waitForSockets(again.process.pid, idle + 1);
    again.process.kill("SIGINT");
    await again.waitForStderr(/Stopped accepting/);
    // A second signal sooner than a second after the first is the same Ctrl-C.
    await delay(1100);
    const second = await again.stop("SIGINT");
    await slow;
    assert.equal(second.code, 1);
    assert.match(again.stderr(), /Second signal/);
  },
);

faultTest(
  "SIGHUP reloads a changed poem, and keeps the old one when the file is gone",
  async () => {
    const dir = await makePoems({ "live.txt": "first version\n" });
    const server = await startServer([dir.path("live.txt")]);
    try {
      await Deno.writeTextFile(dir.path("live.txt"), "second version, longer\n");
      server.process.kill("SIGHUP");
      await server.waitForStderr(/Reloaded .*live\.txt/);
      assert.equal(
        new TextDecoder().decode(await fetchBytes(server.addresses[0])),
        "second version, longer\n",
      );
      await Deno.remove(dir.path("live.txt"));
      server.process.kill("SIGHUP");
      await server.waitForStderr(/Could not reload .*live\.txt, keeping the old version/);
      assert.equal(
        new TextDecoder().decode(await fetchBytes(server.addresses[0])),
        "second version, longer\n",
      );
    } finally {
      await server.stop();
      await dir.cleanup();
    }
  },
);

faultTest("--watch reloads a poem when its file changes", async () => {
  const dir = await makePoems({ "w.txt": "before\n" });
  const server = await startServer(["--watch", dir.path("w.txt")]);
  try {
    await Deno.writeTextFile(dir.path("w.txt"), "after\n");
    await server.waitForStderr(/Reloaded .*w\.txt/);
    assert.equal(new TextDecoder().decode(await fetchBytes(server.addresses[0])), "after\n");
  } finally {
    await server.stop();
    await dir.cleanup();
  }
});

faultTest(
  "a client flooding input while reading a slow poem: flow control stops it, memory stays flat",
  async () => {
    const server = await startServer([
      "--num-bytes",
      "10",
      "--delay",
      "0.2",
      poems!.path("poem.txt"),
    ]);
    const pid = server.process.pid;
    try {
      const quiet = readTimed(server.addresses[0], 50);
      await delay(300);
      const before = rssKiB(pid);
      const conn = await Deno.connect(server.addresses[0]);
      const junk = new Uint8Array(1024 * 1024).fill(0x41);
      let sent = 0;
      let flooding = true;
      // Nothing is read during a transfer: once the kernel's buffers are full,
      // TCP flow control stops the flood at the client.
      const flood = (async () => {
        try {
          while (flooding) sent += await conn.write(junk);
        } catch {
          // Closed below.
        }
      })();
      await delay(3000);
      const during = rssKiB(pid);
      flooding = false;
      conn.close();
      await flood;
      await quiet;
      console.log(
        `  flood stopped by flow control at ${
          (sent / 2 ** 20).toFixed(1)
        } MiB; RSS ${before} -> ${during} KiB`,
      );
      assert.ok(sent < 64 * 2 ** 20, `the flood went on: ${sent} bytes`);
      assert.ok(during - before < 20 * 1024, `RSS grew by ${during - before} KiB`);
    } finally {
      await server.stop();
    }
  },
);

faultTest("--deny 127.0.0.0/8: a local client gets zero bytes", async () => {
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--deny",
    "127.0.0.0/8",
    poems!.path("poem.txt"),
  ]);
  try {
    assert.equal((await fetchBytes(server.addresses[0])).length, 0);
    await server.waitForStderr(/denied by --allow\/--deny/);
  } finally {
    await server.stop();
  }
  const allowed = await startServer([
    "--iface",
    "127.0.0.1",
    "--allow",
    "127.0.0.1/32",
    "--deny",
    "10.0.0.0/8",
    poems!.path("poem.txt"),
  ]);
  try {
    assert.equal(new TextDecoder().decode(await fetchBytes(allowed.addresses[0])), POEM);
  } finally {
    await allowed.stop();
  }
});

faultTest(
  "--max-connections 10 with 40 slow clients: never more than 10 open, all served",
  async () => {
    const server = await startServer([
      "--max-connections",
      "10",
      "--num-bytes",
      "50",
      "--delay",
      "0.1",
      poems!.path("hundred.txt"),
    ]);
    const pid = server.process.pid;
    try {
      // Its connections, not every socket: seen once on a busy machine, a
      // twelfth socket that was no TCP connection by the time it was looked up.
      let most = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          most = Math.max(most, connectionsOn(pid, server.addresses[0].port));
          await delay(10);
        }
      })();
      const results = await Promise.all(
        Array.from({ length: 40 }, () => readTimed(server.addresses[0])),
      );
      sampling = false;
      await sampler;
      console.log(`  at most ${most} client sockets open; ${results.length} clients served`);
      // Ten transfers, and one client accepted and held until a slot frees.
      assert.ok(most <= 11, `${most} client sockets open`);
      assert.ok(most >= 5, "the cap was reached in earnest");
      assert.ok(results.every((r) => r.bytes.length === 100));
      await server.waitForStderr(/At the cap of 10 transfers/);
    } finally {
      await server.stop();
    }
  },
);

faultTest(
  "random malformed command lines: exit 1 or 2 with an error line, never a trace",
  async () => {
    let seed = 20261124;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)];
    const options = [
      "--port",
      "--iface",
      "--num-bytes",
      "--delay",
      "--max-connections",
      "--write-timeout",
      "--drain-timeout",
      "--allow",
      "--deny",
      "--log-level",
      "--log-format",
    ];
    const badValues = [
      "-1",
      "abc",
      "",
      "1e9",
      "0x10",
      "NaN",
      "99999999",
      "../",
      "--",
      "💥",
      "1.5.6",
      "10.0.0.0/99",
      " ",
      "\u0000x",
      "-0.1",
    ];
    const mutations: (() => string[])[] = [
      () => [pick(options), pick(badValues)], // a bad value
      () => [`--${pick(["bogus", "po", "prt", "nmbytes"])}`], // an unknown option
      () => [`-${pick(["x", "p", "Z"])}`],
      () => [pick(options)], // a value missing at the end
      () => ["--watch=" + pick(badValues)],
      () => ["/no/such/poem-" + Math.floor(random() * 1000)],
    ];
    const lines: string[][] = [];
    for (let i = 0; i < 30; i++) {
      const args = [poems!.path("poem.txt")];
      for (let m = 1 + Math.floor(random() * 2); m > 0; m--) args.push(...pick(mutations)());
      if (random() < 0.15) args.shift(); // sometimes no good poem at all
      lines.push(args);
    }
    // A bad value must not start a server: one that did would run until the
    // helper's minute is up and be killed (exit 137), a failure below. Four
    // at a time: thirty Deno start-ups at once on a busy 2-core machine take
    // longer than any bound a passing run should need.
    const results: { code: number; stdout: string; stderr: string }[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < lines.length) {
        const i = next++;
        results[i] = await runServer(lines[i]);
      }
    }));
    for (const [i, result] of results.entries()) {
      const where = `args ${JSON.stringify(lines[i])}:\n${result.stderr}`;
      assert.ok(result.code === 1 || result.code === 2, `exit ${result.code} for ${where}`);
      assert.match(result.stderr, /^error: /, where);
      assert.doesNotMatch(result.stderr, /^\s+at |Stack backtrace|panicked/m, where);
    }
  },
);

/** Connects `count` times and resets each connection at once (SO_LINGER 0), with Python. */
async function resetsBeforeAccept(port: number, count: number): Promise<void> {
  const script = `
import socket, struct, sys
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.close()
`;
  const { code, stderr } = await new Deno.Command("python3", {
    args: ["-c", script, String(port), String(count)],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
}

faultTest("clients that reset in the accept queue do not stall the ones after them", async () => {
  // One transfer at a time, a second each: the resets pile up in the backlog.
  const server = await startServer([
    "--max-connections",
    "1",
    "--num-bytes",
    "50",
    "--delay",
    "0.5",
    poems!.path("hundred.txt"),
  ]);
  const address = server.addresses[0];
  try {
    const holder = readTimed(address);
    await delay(100);
    const waiting = readTimed(address); // accepted, held for the slot
    await delay(100);
    await resetsBeforeAccept(address.port, 100);
    const started = performance.now();
    const after = await readTimed(address);
    const ms = performance.now() - started;
    const [first, second] = await Promise.all([holder, waiting]);
    console.log(`  a client behind 100 resets got its poem after ${(ms / 1000).toFixed(1)} s`);
    for (const r of [first, second, after]) assert.equal(r.bytes.length, 100);
    // Its own turn comes after the two before it: about 2.5 s, not minutes.
    assert.ok(ms < 30_000, `took ${ms} ms`);
    assert.doesNotMatch(server.stderr(), /retrying in/);
  } finally {
    await server.stop();
  }
});

faultTest(
  "the cap does not starve a listener: with --max-connections 1, each poem is served",
  async () => {
    const server = await startServer([
      "--max-connections",
      "1",
      poems!.path("hundred.txt"),
      poems!.path("poem.txt"),
    ], { listeners: 2 });
    try {
      await delay(200);
      assert.doesNotMatch(server.stderr(), /At the cap/, "nobody is connected yet");
      const second = await Promise.race([fetchBytes(server.addresses[1]), delay(3000)]);
      assert.equal(new TextDecoder().decode(second as Uint8Array), POEM);
      assert.equal(
        new TextDecoder().decode(await fetchBytes(server.addresses[0])),
        "z".repeat(100),
      );
    } finally {
      await server.stop();
    }
  },
);

faultTest("a huge --num-bytes on a streamed poem costs a bounded block per client", async () => {
  const huge = await makePoems({ "huge.bin": seededBytes(STREAMED_SIZE, 31) });
  const server = await startServer([
    "--num-bytes",
    "1073741824",
    "--delay",
    "1",
    huge.path("huge.bin"),
  ]);
  const pid = server.process.pid;
  try {
    const rssBefore = rssKiB(pid);
    const stalled = await Promise.all(
      Array.from({ length: 20 }, () => Deno.connect(server.addresses[0])),
    );
    await delay(1500);
    const grown = rssKiB(pid) - rssBefore;
    for (const conn of stalled) conn.close();
    console.log(`  20 stalled clients at --num-bytes 1 GiB: RSS +${(grown / 1024).toFixed(0)} MiB`);
    assert.ok(grown < 100 * 1024, `RSS grew by ${grown} KiB`);
  } finally {
    await server.stop();
    await huge.cleanup();
  }
});

faultTest("slow clients of a streamed poem that leave early leak no descriptors", async () => {
  const huge = await makePoems({ "huge.bin": seededBytes(STREAMED_SIZE, 37) });
  const server = await startServer([
    "--log-level",
    "warning",
    "--num-bytes",
    "1000",
    "--delay",
    "0.05",
    huge.path("huge.bin"),
  ]);
  const pid = server.process.pid;
  try {
    await resetStorm(server.addresses[0], 100); // warm up
    await delay(500);
    const before = fdCount(pid);
    const storms = await resetStorm(server.addresses[0], 3000, 1000);
    await delay(1000); // the next paced write notices each one
    const after = await settledFdCount(pid, before);
    console.log(`  ${storms} clients left early; fds ${before} -> ${after}`);
    assert.ok(storms >= 1000, `only ${storms} clients`);
    assert.equal(after, before);
  } finally {
    await server.stop();
    await huge.cleanup();
  }
});

faultTest(
  "a FIFO swapped in for a streamed poem holds nobody; SIGTERM still ends the process",
  async () => {
    const poem = seededBytes(STREAMED_SIZE, 41);
    const huge = await makePoems({ "huge.bin": poem });
    const path = huge.path("huge.bin");
    const server = await startServer(["--drain-timeout", "2", path]);
    try {
      const conn = await Deno.connect(server.addresses[0]);
      await conn.read(new Uint8Array(1024));
      await Deno.remove(path);
      const mkfifo = await new Deno.Command("mkfifo", { args: [path] }).output();
      assert.equal(mkfifo.code, 0);
      server.process.kill("SIGHUP");
      await server.waitForStderr(/Could not reload .*huge\.bin/);
      const late = await fetchBytes(server.addresses[0]);
      assert.equal(
        late.length,
        poem.length,
        "a later client still gets the version the server holds open",
      );
      const started = performance.now();
      const status = await server.stop("SIGTERM");
      const ms = performance.now() - started;
      conn.close();
      console.log(
        `  SIGTERM with a client parked on the old version: exit ${status.code} in ${
          ms.toFixed(0)
        } ms`,
      );
      assert.equal(status.code, 0);
      // The 2 s drain timeout, not the parked client's transfer, which would
      // never end; room for a busy machine.
      assert.ok(ms < 15_000, `took ${ms} ms`);
    } finally {
      await server.stop();
      await huge.cleanup();
    }
  },
);

Deno.test({ name: "fault: cleanup", ignore: !linux, fn: () => poems!.cleanup() });
