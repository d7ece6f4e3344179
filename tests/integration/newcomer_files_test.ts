// Issue 18, the newcomer's first hour: the files the server writes and reads
// besides poems, and what a reload says. Each test runs the real program over
// real TCP: a SIGHUP or --watch change that changes nothing, a poem readable
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
