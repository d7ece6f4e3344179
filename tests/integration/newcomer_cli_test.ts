// Issue 18, the newcomer's first hour, on the command lines: SIGUSR1 and
// Deno's V8 inspector, `deno task bench --help`, options that would do
// nothing, typos, the second Ctrl-C, start-up errors under --log-format json.
// The real programs as subprocesses, over real TCP on loopback.

import assert from "node:assert/strict";
import { makePoems, ROOT } from "../helpers.ts";

const POEM = "Roses are red,\nsockets are blue.\n";
const poems = await makePoems({ "p.txt": POEM });

/** Runs `deno ARGS` in the repository and collects its output. */
async function runDeno(
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const process = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timeout = setTimeout(() => process.kill("SIGKILL"), timeoutMs);
  const { code, stdout, stderr } = await process.output();
  clearTimeout(timeout);
  const decoder = new TextDecoder();
  // `deno task` announces the command it runs on stderr: not ours.
  const own = decoder.decode(stderr).split("\n").filter((line) => !/^Task \S+ /.test(line));
  return { code, stdout: decoder.decode(stdout), stderr: own.join("\n") };
}

/** One line `error: ...`, then at most one indented hint; no stack trace; exit 2. */
function assertUsageError(
  result: { code: number; stdout: string; stderr: string },
  message: RegExp,
  hint?: RegExp,
): void {
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(result.code, 2, `exit code; stderr:\n${result.stderr}`);
  assert.ok(lines.length <= 2, `at most two lines, got:\n${result.stderr}`);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], message);
  if (hint) assert.match(lines[1] ?? "", hint);
  if (lines[1] !== undefined) assert.match(lines[1], /^ {2}\S/);
  assert.doesNotMatch(result.stderr, /^\s+at /m, "no stack trace");
}

Deno.test("deno task bench --help prints the usage and exits 0; a bad option is one line, exit 2", async () => {
  const help = await runDeno(["task", "bench", "--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^usage: deno task bench \[options\]/);
  assert.match(help.stdout, /--repeat N/);
  assert.equal(help.stderr.trim(), "");

  assertUsageError(
    await runDeno(["task", "bench", "--bogus"]),
    /^error: unknown option '--bogus'$/,
    /run deno task bench --help/,
  );
  assertUsageError(await runDeno(["task", "bench", "--repeat", "0"]), /--repeat must be .*'0'/);
  assertUsageError(await runDeno(["task", "bench", "extra"]), /unexpected argument 'extra'/);
});

Deno.test("cleanup: fixtures", async () => {
  await poems.cleanup();
});
