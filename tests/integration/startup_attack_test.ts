// What the program prints at start-up about what it was given: file names
// in the Serving lines, the log and the error line, and --fault's
// probability. The real program, as a subprocess.

import assert from "node:assert/strict";
import { makePoems, runServer, startServer } from "../helpers.ts";

/**
 * The inverse of lib/base/log_format.ts's escapeControl: `\\`, `\n`, `\r`, `\t`,
 * `\xNN`, `\uNNNN`. Throws on any other backslash, so an escape that is not
 * one of these (a bare backslash) fails the test.
 */
function unescape(text: string): string {
  return text.replace(/\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4}|.|$)/g, (_, e: string) => {
    if (e === "\\") return "\\";
    if (e === "n") return "\n";
    if (e === "r") return "\r";
    if (e === "t") return "\t";
    if (/^[xu]/.test(e) && e.length > 1) return String.fromCharCode(parseInt(e.slice(1), 16));
    throw new Error(`not an escape: \\${e} in ${JSON.stringify(text)}`);
  });
}

/** Exit 2, one `error:` line and one hint, nothing on stdout, no trace. */
function assertBadInput(
  result: { code: number; stdout: string; stderr: string },
  message: RegExp,
): void {
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(result.code, 2, result.stderr);
  assert.equal(lines.length, 2, result.stderr);
  assert.match(lines[0], /^error: /);
  assert.match(lines[1], /^ {2}\S/);
  assert.match(lines[0], message);
  assert.equal(result.stdout, "");
}

// Found, fixed: the Serving line escaped a newline in a file name as `\n`
// but left a backslash as it was, so `a<newline>b.txt` and `a\nb.txt` (a
// backslash and an n) printed the same line, and the log records the same
// `Serving a\nb.txt (...)`.
Deno.test("two poems, a newline and a backslash-n in their names: two Serving lines, each decodable", async () => {
  if (Deno.build.os === "windows") return; // no newline in a Windows file name
  const poems = await makePoems({ "a\nb.txt": "newline\n", "a\\nb.txt": "backslash\n" });
  const server = await startServer(["--iface", "127.0.0.1", poems.dir], { listeners: 2 });
  try {
    const names = server.lines.map((line) => /^Serving (.+) on \S+\.$/.exec(line)![1]);
    assert.notEqual(names[0], names[1], server.lines.join("\n"));
    assert.deepEqual(
      names.map(unescape).sort(),
      [poems.path("a\nb.txt"), poems.path("a\\nb.txt")].sort(),
    );
    const records = await server.waitForLines(/ Serving .* on /, 2);
    const logged = [...records.matchAll(/\] poetry\.server: Serving (.+) \(\d+ bytes\) on /g)]
      .map((m) => m[1]);
    assert.equal(logged.length, 2, records);
    assert.deepEqual(logged.map(unescape).sort(), names.map(unescape).sort());
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

// Found, fixed: the error line printed the file name as it was, so a name
// with a newline gave a third line on stderr.
Deno.test("a missing poem with a newline in its name: one error line, escaped", async () => {
  const result = await runServer(["no-such\nerror: forged.txt"]);
  assertBadInput(result, /^error: poem not found: no-such\\nerror: forged\.txt$/);
});

// Found, fixed: probability took only plain decimals (`^\d+\.?\d*$`), so
// 1e-300 (a number from 0 to 1, as JSON writes it) was refused, and -0 too.
for (
  const [text, logged] of [
    ["1e-300", "close-after=3,probability=1e-300"],
    ["0.5e0", "close-after=3,probability=0.5"],
    ["1E0", "close-after=3 "],
    ["-0", "close-after=3,probability=0 "],
    ["0", "close-after=3,probability=0 "],
    [".25", "close-after=3,probability=0.25"],
  ]
) {
  Deno.test(`--fault probability=${text} is accepted`, async () => {
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--fault",
      `close-after=3,probability=${text}`,
      "--seed",
      "1",
      "poems/a-short-one.txt",
    ]);
    try {
      const stderr = await server.waitForStderr(/Faults on /);
      assert.ok(stderr.includes(`: ${logged}`), stderr);
    } finally {
      await server.stop();
    }
  });
}

for (const text of ["1.5", "0x1", "Infinity", "NaN", "", "1e400", "-0.5", "1e"]) {
  Deno.test(`--fault probability=${JSON.stringify(text)} is refused: one line, exit 2`, async () => {
    assertBadInput(
      await runServer(["--fault", `close-after=3,probability=${text}`, "poems/a-short-one.txt"]),
      /probability must be a number from 0 to 1, got '.*'/,
    );
  });
}
