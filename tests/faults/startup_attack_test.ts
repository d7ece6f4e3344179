// Start-up under a low open-file limit with `--workers`: the real program
// under `ulimit -n`, as a subprocess. Linux only (SO_REUSEPORT, ulimit).
//
// Found, fixed: `ulimit -n 30` with `--workers 4` (and 256 with 48) made
// Deno panic in a worker's thread ("Deno has panicked ... tokio_util.rs:66
// ... Too many open files ... stack backtrace", exit 1), sometimes with
// "Uncaught (in worker)"; a few files more and the main thread's read of the
// poem failed with a misleading "cannot read poems/...: Too many open files"
// and exit 2. Now the limit is checked before any thread starts: one error
// line, one hint, exit 1.

import assert from "node:assert/strict";
import { makePoems, ROOT, serverCommand } from "../helpers.ts";

const linux = Deno.build.os === "linux";

/** A start-up test (Linux only). */
function startupTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `startup attack: ${name}`, ignore: !linux, fn });
}

/** A whole text-format record: one per line. */
const RECORD = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \+00 \[(DBG|INF|WRN|ERR)\] poetry[.\w]*: /;

/**
 * Starts the server under `ulimit -n limit`; once it prints its first
 * `Serving` line (or exits), stops it with SIGTERM. Returns whether it
 * served, its exit code and its stderr.
 */
async function runUnderLimit(
  limit: number,
  args: string[],
): Promise<{ served: boolean; code: number; stderr: string }> {
  const [cmd, ...rest] = [
    "bash",
    "-c",
    `ulimit -n ${limit}; exec "$0" "$@"`,
    ...serverCommand(),
    ...args,
  ];
  const process = new Deno.Command(cmd, {
    args: rest,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // 48 workers take several seconds to start on a busy 2-core machine.
  const killer = setTimeout(() => process.kill("SIGKILL"), 60_000);
  let stderr = "";
  const stderrDone = (async () => {
    for await (const text of process.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
  })();
  let stdout = "";
  let served = false;
  for await (const text of process.stdout.pipeThrough(new TextDecoderStream())) {
    stdout += text;
    if (!served && /^Serving /m.test(stdout)) {
      served = true;
      process.kill("SIGTERM");
    }
  }
  const { code } = await process.status;
  clearTimeout(killer);
  await stderrDone;
  return { served, code, stderr };
}

/** No Deno panic, no uncaught error, no trace, no colours: records and `error:` lines only. */
function assertNoCrash(stderr: string, context: string): void {
  assert.doesNotMatch(stderr, /panicked|Uncaught|stack backtrace|^\s+at /m, context);
  assert.ok(!stderr.includes("\u001b["), `ANSI colour codes on stderr (${context})`);
  const other = stderr.split("\n").filter((line) =>
    line !== "" && !RECORD.test(line) && !/^(error: | {2})/.test(line)
  );
  assert.deepEqual(other, [], context);
}

/**
 * Exactly one `error:` line and one hint about the open-file limit, exit 1;
 * log records before them only when `records` (a refusal once the poems
 * are known, after the main thread logged its listeners).
 */
function assertRefused(
  result: { served: boolean; code: number; stderr: string },
  records = false,
): void {
  const { served, code, stderr } = result;
  assert.equal(served, false, stderr);
  assert.equal(code, 1, stderr);
  assertNoCrash(stderr, stderr);
  const lines = stderr.trimEnd().split("\n").filter((line) => !records || !RECORD.test(line));
  assert.equal(lines.length, 2, stderr);
  assert.match(lines[0], /^error: the open-file limit \(ulimit -n\) is too low for --workers \d+/);
  assert.match(lines[1], /^ {2}raise it .*ulimit -n.*or .*fewer --workers/);
}

startupTest("ulimit -n 30 with --workers 4: one error line and a hint, exit 1", async () => {
  assertRefused(
    await runUnderLimit(30, ["--iface", "127.0.0.1", "--workers", "4", "poems/a-short-one.txt"]),
  );
});

startupTest("ulimit -n 256 with --workers 48: one error line and a hint, exit 1", async () => {
  assertRefused(
    await runUnderLimit(256, ["--iface", "127.0.0.1", "--workers", "48", "poems/"]),
  );
});

// The threshold allows for what a worker costs while it starts, so just above
// it nothing panics either: every limit from well below to well above ends in
// the refusal or in serving, and the refusals all come below the first start.
// A directory counts as one poem before it is read, so some limits pass the
// first check and are refused once the poems are known (a second check,
// before the workers bind).
startupTest("every limit around the threshold refuses cleanly or serves", async () => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 3; i++) files[`p${i}.txt`] = `poem ${i}\n`;
  const poems = await makePoems(files);
  try {
    const outcomes: string[] = [];
    for (let limit = 40; limit <= 120; limit += 4) {
      const result = await runUnderLimit(limit, [
        "--iface",
        "127.0.0.1",
        "--workers",
        "4",
        poems.dir,
      ]);
      const context = `ulimit -n ${limit}:\n${result.stderr}`;
      assertNoCrash(result.stderr, context);
      if (result.served) {
        assert.equal(result.code, 0, context);
      } else {
        assertRefused(result, true);
      }
      outcomes.push(result.served ? "S" : "R");
    }
    // Refusals, then starts: never a start below a refusal.
    assert.match(outcomes.join(""), /^R+S+$/, outcomes.join(""));
  } finally {
    await poems.cleanup();
  }
});
