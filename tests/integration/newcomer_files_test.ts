// Issue 18, the newcomer's first hour: the files the server writes and reads
// besides poems, and what a reload says. Each test runs the real program over
// real TCP: --ports-file with the permissions the docs name (checked before
// anything binds, removed at exit, one entry per listener with its index and
// faults); a SIGHUP or --watch change that changes nothing, a poem readable
// again, a new file in a served directory, each leaving one info record; a
// config file's missing poem named with the file, the line and where it was
// looked for.

import assert from "node:assert/strict";
import {
  CUSTOM_SERVER,
  delay,
  fetchBytes,
  makePoems,
  runServer,
  serverCommand,
  startServer,
} from "../helpers.ts";

const POEM = "0123456789".repeat(10);
const unix = Deno.build.os !== "windows";
const linux = Deno.build.os === "linux";

/** Exit 2 with one `error:` line (and its hint), nothing on stdout, no trace. */
function assertBadInput(
  result: { code: number; stdout: string; stderr: string },
  message: RegExp,
): void {
  assert.equal(result.code, 2, `exit code; stderr:\n${result.stderr}`);
  assert.equal(result.stdout, "", "no Serving line");
  assert.match(result.stderr, /^error: [^\n]+\n( {2}[^\n]+\n)?$/, result.stderr);
  assert.match(result.stderr, message);
}

/** The default command with other permissions: `deno run PERMS main.ts`. */
function commandWith(permissions: string[]): string[] {
  const [deno, , ...rest] = serverCommand();
  return [deno, "run", ...permissions, ...rest.filter((arg) => !arg.startsWith("--allow-"))];
}

function count(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern.source, "g"))?.length ?? 0;
}

// --- Point 4: --ports-file ---------------------------------------------------

Deno.test({
  name: "ports file: --allow-write and --allow-read on its directory are enough; removed at exit",
  ignore: CUSTOM_SERVER,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM });
    const out = await Deno.makeTempDir({ prefix: "poetry-ports-" });
    const path = `${out}/ports.json`;
    try {
      // Nothing wider than the docs say: the poems, the net, and PATH's directory.
      const server = await startServer(["--iface", "127.0.0.1", "--ports-file", path, poems.dir], {
        command: commandWith([
          "--allow-net=127.0.0.1",
          `--allow-read=${poems.dir},${out}`,
          `--allow-write=${out}`,
        ]),
      });
      try {
        const entries = JSON.parse(await Deno.readTextFile(path));
        assert.deepEqual(entries, [
          {
            poem: poems.path("p.txt"),
            host: "127.0.0.1",
            port: server.addresses[0].port,
            listener: 0,
            faults: [],
          },
        ]);
      } finally {
        const status = await server.stop();
        assert.equal(status.code, 0, server.stderr());
      }
      // A harness that starts the next run must not read this run's ports.
      assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name), [], "removed at exit");
    } finally {
      await poems.cleanup();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "ports file: a missing permission is exit 2 before anything binds, naming the flag",
  ignore: CUSTOM_SERVER,
  async fn() {
    const poems = await makePoems({ "p.txt": POEM });
    const out = await Deno.makeTempDir({ prefix: "poetry-ports-" });
    const path = `${out}/ports.json`;
    try {
      // What the docs used to say: --allow-write for PATH alone.
      const exact = await runServer(["--iface", "127.0.0.1", "--ports-file", path, poems.dir], {
        command: commandWith(["--allow-net", "--allow-read", `--allow-write=${path}`]),
      });
      assertBadInput(exact, new RegExp(`--ports-file .*ports\\.json: no permission to write`));
      assert.match(exact.stderr, new RegExp(`--allow-write=${out}\\n`));
      assert.doesNotMatch(exact.stderr, /Serving/);
      // Write without read: Deno's rename needs both.
      const noRead = await runServer(["--iface", "127.0.0.1", "--ports-file", path, poems.dir], {
        command: commandWith(["--allow-net", `--allow-read=${poems.dir}`, `--allow-write=${out}`]),
      });
      assertBadInput(noRead, /no permission to read .* run again with --allow-read=/s);
      assert.doesNotMatch(noRead.stderr, /Serving/);
      // As the README installs it (--allow-read --allow-net): no write at all.
      const installed = await runServer(["--iface", "127.0.0.1", "--ports-file", path, poems.dir], {
        command: commandWith(["--allow-net", "--allow-read"]),
      });
      assertBadInput(installed, /no permission to write/);
      assert.deepEqual([...Deno.readDirSync(out)], [], "nothing written");
    } finally {
      await poems.cleanup();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "ports file: two listeners of one poem differ by their index and faults",
  ignore: CUSTOM_SERVER,
  async fn() {
    const dir = await makePoems({
      "p.txt": POEM,
      "poetry.jsonc": JSON.stringify({
        iface: "127.0.0.1",
        listeners: [
          { poem: "p.txt" },
          { poem: "p.txt", faults: ["close-after=10", "reset-after=50,probability=0.5"] },
        ],
      }),
    });
    const path = dir.path("ports.json");
    try {
      const server = await startServer(
        ["--config", dir.path("poetry.jsonc"), "--ports-file", path],
        {
          listeners: 2,
          command: commandWith(["--allow-net", "--allow-read", `--allow-write=${dir.dir}`]),
        },
      );
      try {
        const entries = JSON.parse(await Deno.readTextFile(path));
        assert.deepEqual(
          entries.map((e: Record<string, unknown>) => [e.listener, e.port, e.faults]),
          [
            [0, server.addresses[0].port, []],
            [1, server.addresses[1].port, ["close-after=10", "reset-after=50,probability=0.5"]],
          ],
        );
        assert.equal((await fetchBytes(server.addresses[0])).length, POEM.length);
      } finally {
        await server.stop();
      }
      assert.throws(() => Deno.statSync(path), Deno.errors.NotFound, "removed at exit");
    } finally {
      await dir.cleanup();
    }
  },
});

// --- Point 6: every reload says what it did -----------------------------------

Deno.test({
  name: "reload: a SIGHUP that changes nothing leaves one info record",
  ignore: !unix,
  async fn() {
    const dir = await makePoems({ "a.txt": "a\n", "b.txt": "b\n" });
    const server = await startServer([dir.dir], { listeners: 2 });
    try {
      server.process.kill("SIGHUP");
      await server.waitForStderr(/\[INF\] .*SIGHUP reload: 2 poems, nothing changed\./);
      await Deno.writeTextFile(dir.path("b.txt"), "b, longer\n");
      server.process.kill("SIGHUP");
      await server.waitForStderr(/SIGHUP reload: 2 poems, 1 changed, 0 failed\./);
      assert.match(server.stderr(), /Reloaded .*b\.txt: now 10 bytes/);
    } finally {
      await server.stop();
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "reload: with --workers the record is written once, by the main thread",
  ignore: !linux,
  async fn() {
    const dir = await makePoems({ "a.txt": "a\n" });
    const server = await startServer(["--workers", "3", dir.path("a.txt")]);
    try {
      server.process.kill("SIGHUP");
      await server.waitForStderr(/SIGHUP reload: 1 poem, nothing changed\./);
      await delay(500);
      assert.equal(count(server.stderr(), /SIGHUP reload:/), 1, server.stderr());
    } finally {
      await server.stop();
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "reload: under --config the record says the file was re-read",
  ignore: !unix,
  async fn() {
    const dir = await makePoems({
      "p.txt": POEM,
      "poetry.jsonc": '{ "iface": "127.0.0.1", "listeners": [{ "poem": "p.txt" }] }',
    });
    const server = await startServer(["--config", dir.path("poetry.jsonc")]);
    try {
      server.process.kill("SIGHUP");
      await server.waitForStderr(
        /SIGHUP reload: 1 poem, nothing changed; config re-read, 0 listeners reconfigured\./,
      );
    } finally {
      await server.stop();
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "reload: a poem readable again says it recovered",
  ignore: !unix,
  async fn() {
    const dir = await makePoems({ "p.txt": "the poem\n" });
    const server = await startServer([dir.path("p.txt")]);
    try {
      await Deno.rename(dir.path("p.txt"), dir.path("p.away"));
      server.process.kill("SIGHUP");
      await server.waitForStderr(/SIGHUP reload: 1 poem, 0 changed, 1 failed\./);
      assert.match(server.stderr(), /Could not reload .*p\.txt/);
      await Deno.rename(dir.path("p.away"), dir.path("p.txt"));
      server.process.kill("SIGHUP");
      await server.waitForStderr(/\[INF\] .*Recovered .*p\.txt: readable again, 9 bytes\./);
      await server.waitForLines(/SIGHUP reload: 1 poem, nothing changed\./, 1);
    } finally {
      await server.stop();
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "reload: --watch says what a change did, even when the bytes are the same",
  ignore: !unix,
  async fn() {
    const dir = await makePoems({ "p.txt": "the poem\n" });
    const server = await startServer(["--watch", dir.path("p.txt")]);
    try {
      // The same bytes written again: the file changed, the poem did not.
      await Deno.writeTextFile(dir.path("p.txt"), "the poem\n");
      await server.waitForStderr(
        /\[INF\] .*Re-read .*p\.txt after a change to its file: the same bytes, nothing to reload\./,
      );
      // Gone, then back: the watch sees both.
      await Deno.remove(dir.path("p.txt"));
      await server.waitForStderr(/Could not reload .*p\.txt/);
      await Deno.writeTextFile(dir.path("p.txt"), "the poem, back\n");
      await server.waitForStderr(/Recovered .*p\.txt: readable again, 15 bytes\./);
    } finally {
      await server.stop();
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "reload: --watch tells of a new file in a served directory, not of a temporary one",
  ignore: !unix,
  async fn() {
    const dir = await makePoems({ "a.txt": "a\n" });
    const server = await startServer(["--watch", dir.dir]);
    try {
      // An editor's way: a temporary file renamed over a poem is no new poem.
      await Deno.writeTextFile(dir.path("a.txt.tmp"), "a, edited\n");
      await Deno.rename(dir.path("a.txt.tmp"), dir.path("a.txt"));
      await server.waitForStderr(/Reloaded .*a\.txt: now 10 bytes/);
      await Deno.writeTextFile(dir.path(".hidden"), "not a poem\n");
      await Deno.writeTextFile(dir.path("new.txt"), "new\n");
      await server.waitForStderr(
        /\[INF\] .*new\.txt appeared in .*: a new poem needs a restart\./,
      );
      await Deno.writeTextFile(dir.path("new.txt"), "new, again\n");
      await delay(400);
      const text = server.stderr();
      assert.equal(count(text, /appeared in/), 1, text);
      assert.doesNotMatch(text, /a\.txt\.tmp|\.hidden/);
    } finally {
      await server.stop();
      await dir.cleanup();
    }
  },
});

// --- Point 8: a config file's missing poem ------------------------------------

Deno.test("config: a missing poem names the file, the line, and where it was looked for", async () => {
  const dir = await makePoems({
    "poetry.jsonc": '{\n  "listeners": [\n    { "poem": "p.txt" },\n' +
      '    { "poem": "../poems/a-short-one.txt" }\n  ]\n}\n',
    "p.txt": POEM,
  });
  try {
    const result = await runServer(["--config", dir.path("poetry.jsonc")]);
    const parent = dir.dir.replace(/\/[^/]+$/, "");
    assertBadInput(
      result,
      new RegExp(
        `^error: ${dir.path("poetry.jsonc")}:4: listeners\\[1\\]\\.poem: poem not found: ` +
          `\\.\\./poems/a-short-one\\.txt \\(looked for ${parent}/poems/a-short-one\\.txt\\)\\n` +
          `  a poem's path is relative to the config file's directory, ${dir.dir}\\n$`,
      ),
    );
  } finally {
    await dir.cleanup();
  }
});
