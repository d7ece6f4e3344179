// `deno task get` against the real server: progress redrawn in place on a
// terminal (a real one: tmux), the tutorial's per-chunk lines otherwise,
// poems that do not run together on stdout, and a task that got nothing.

import assert from "node:assert/strict";
import { delay, findProgram, makePoems, ROOT, startServer } from "../helpers.ts";

const tmux = findProgram("tmux");

/** Runs `deno task get ARGS` with stdout and stderr piped (not a terminal). */
async function get(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "get", ...args],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("client: without a terminal, the tutorial's lines as chunks arrive, and poems kept apart", async () => {
  const poems = await makePoems({
    "a.txt": "no newline at the end",
    "b.txt": "ends well\n",
    "empty.txt": "",
  });
  const server = await startServer(
    [
      "--iface",
      "127.0.0.1",
      "--num-bytes",
      "7",
      // Far enough apart that a client slowed by a busy machine still reads
      // the chunks one by one (at 0.02 s, seen: all 21 bytes in one read).
      "--delay",
      "0.2",
      poems.path("a.txt"),
      poems.path("b.txt"),
      poems.path("empty.txt"),
    ],
    { listeners: 3 },
  );
  try {
    const [a, b, empty] = server.addresses.map((x) => `127.0.0.1:${x.port}`);
    const cooked = await get([a, b]);
    assert.equal(cooked.code, 0, cooked.stderr);
    assert.equal(cooked.stdout, "no newline at the end\nends well\n");
    // 21 bytes in writes of 7: three chunks, each a line (TCP may merge two).
    const chunks = cooked.stderr.match(
      new RegExp(`^Task 1: got \\d+ bytes of poetry from ${a}$`, "gm"),
    );
    assert.ok(chunks && chunks.length >= 2, cooked.stderr);
    assert.match(
      cooked.stderr,
      new RegExp(`^Task 1: got 21 bytes of poetry from ${a} in \\d+\\.\\d\\ds$`, "m"),
    );
    assert.match(cooked.stderr, /^Got 2 of 2 poems in \d+\.\d\ds$/m);
    const raw = await get(["--raw", a, b]);
    assert.equal(raw.stdout, "no newline at the endends well\n");
    const nothing = await get([empty]);
    assert.equal(nothing.stdout, "");
    assert.match(
      nothing.stderr,
      new RegExp(
        `^Task 1: got no poetry from ${empty}: the server closed without sending a byte`,
        "m",
      ),
    );
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test({
  name: `client: on a terminal (tmux), one progress line per task, redrawn in place${
    tmux ? "" : " (skipped: tmux is not installed)"
  }`,
  ignore: !tmux,
  async fn() {
    const poems = await makePoems({ "slow.txt": "s".repeat(299) + "\n", "quick.txt": "quick\n" });
    const server = await startServer(
      [
        "--iface",
        "127.0.0.1",
        "--num-bytes",
        "10",
        "--delay",
        "0.1",
        poems.path("slow.txt"),
        poems.path("quick.txt"),
      ],
      { listeners: 2 },
    );
    // Our own tmux server (-L), so nobody else's sessions are touched.
    const socket = `poetry-test-${Deno.pid}`;
    const run = (...args: string[]) =>
      new Deno.Command(tmux!, { args: ["-L", socket, ...args], stdin: "null" }).output();
    const pane = async () =>
      new TextDecoder().decode((await run("capture-pane", "-p", "-t", "get")).stdout);
    try {
      const [slow, quick] = server.addresses.map((x) => `127.0.0.1:${x.port}`);
      // stdout goes to a file so that the pane shows only the progress on stderr.
      const out = await Deno.makeTempFile();
      const command = `'${Deno.execPath()}' task -q get ${slow} ${quick} > '${out}'; sleep 30`;
      const started = await run(
        "new-session",
        "-d",
        "-s",
        "get",
        "-x",
        "100",
        "-y",
        "10",
        "-c",
        ROOT,
        command,
      );
      assert.equal(started.code, 0, new TextDecoder().decode(started.stderr));
      const seen: number[] = [];
      let screen = "";
      for (let i = 0; i < 60 && !/Got 2 of 2/.test(screen); i++) {
        await delay(100);
        screen = await pane();
        const progress = new RegExp(
          `^Task 1: (\\d+) bytes from ${slow}, \\d+\\.\\ds, \\d+ B/s`,
          "m",
        ).exec(screen);
        if (progress) seen.push(Number(progress[1]));
        // One line per task, whatever has been drawn: redrawn, never appended.
        assert.ok((screen.match(/^Task 1:/gm) ?? []).length <= 1, screen);
      }
      assert.match(
        screen,
        new RegExp(`^Task 1: got 300 bytes of poetry from ${slow} in \\d+\\.\\d\\ds`, "m"),
        screen,
      );
      assert.match(
        screen,
        new RegExp(`^Task 2: got 6 bytes of poetry from ${quick} in`, "m"),
        screen,
      );
      assert.match(screen, /^Got 2 of 2 poems in/m);
      const distinct = [...new Set(seen)];
      assert.ok(distinct.length >= 5, `progress seen: ${seen.join(", ")}`);
      assert.deepEqual(distinct, [...distinct].sort((x, y) => x - y), "progress only grows");
      assert.equal(await Deno.readTextFile(out), "s".repeat(299) + "\nquick\n");
      console.log(
        `tmux pane showed task 1 at ${distinct.join(", ")} bytes, then:\n${screen.trim()}`,
      );
      await Deno.remove(out);
    } finally {
      await run("kill-server");
      await server.stop();
      await poems.cleanup();
    }
  },
});
