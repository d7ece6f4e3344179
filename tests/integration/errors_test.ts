// Bad input and start-up failures: one or two lines beginning with `error:`,
// a distinct exit code (2 bad input, 1 run time), never a stack trace.

import assert from "node:assert/strict";
import { CUSTOM_SERVER, fetchBytes, makePoems, runServer, startServer } from "../helpers.ts";

/** Asserts a clean failure: exit code, `error:` first line, no trace, no stdout. */
export function assertCleanFailure(
  result: { code: number; stdout: string; stderr: string },
  code: number,
  message: RegExp,
): void {
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(result.code, code, `exit code; stderr:\n${result.stderr}`);
  assert.ok(lines.length <= 2, `at most two lines, got:\n${result.stderr}`);
  assert.match(lines[0], /^error: /);
  assert.match(result.stderr, message);
  assert.doesNotMatch(result.stderr, /^\s+at /m, "no stack trace");
  assert.equal(result.stdout, "");
}

const poems = await makePoems({ "ok.txt": "fine\n", "secret.txt": "hidden\n" });
await Deno.mkdir(poems.path("empty"));
if (Deno.build.os !== "windows") {
  await new Deno.Command("mkfifo", { args: [poems.path("fifo")] }).output();
}
// Windows has no file modes to take away (that test is skipped there).
if (Deno.build.os !== "windows") await Deno.chmod(poems.path("secret.txt"), 0o000);

const usageCases: [string, string[], RegExp][] = [
  ["no POEM given", [], /no poem given/],
  ["a missing file", ["no-such-poem.txt"], /poem not found: no-such-poem\.txt/],
  ["a directory with no files", [poems.path("empty")], /no poems in directory/],
  [
    "a port out of range",
    ["--port", "70000", poems.path("ok.txt")],
    /--port must be .* got '70000'/,
  ],
  ["a negative port", ["--port", "-1", poems.path("ok.txt")], /--port must be .* got '-1'/],
  [
    "a port that is not a number",
    ["--port", "abc", poems.path("ok.txt")],
    /--port must be .* got 'abc'/,
  ],
  ["a negative delay", ["--delay", "-0.5", poems.path("ok.txt")], /--delay must be .* got '-0.5'/],
  [
    "a delay that is not a number",
    ["--delay", "soon", poems.path("ok.txt")],
    /--delay must be .* got 'soon'/,
  ],
  [
    "num-bytes below 1",
    ["--num-bytes", "0", poems.path("ok.txt")],
    /--num-bytes must be .* got '0'/,
  ],
  ["an unknown option", ["--colour", poems.path("ok.txt")], /unknown option --colour/],
  ["an option missing its value", [poems.path("ok.txt"), "--port"], /--port needs a value/],
  ["a bad log level", ["--log-level", "loud", poems.path("ok.txt")], /--log-level must be one of/],
  [
    "a bad CIDR block",
    ["--allow", "10.0.0.0/99", poems.path("ok.txt")],
    /--allow needs an address or CIDR/,
  ],
  [
    "an IPv6 zone id, which node's isIP takes but BlockList does not",
    ["--allow", "fe80::1%lo", poems.path("ok.txt")],
    /--allow needs an address or CIDR block, got 'fe80::1%lo'\n {2}zone ids like %lo are not supported/,
  ],
];

for (const [what, args, message] of usageCases) {
  Deno.test(`bad input, exit 2: ${what}`, async () => {
    assertCleanFailure(await runServer(args), 2, message);
  });
}

// Root reads anything; drop the capabilities that let it, where setpriv exists.
const wrapper = Deno.build.os !== "windows" && Deno.uid() === 0
  ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
  : [];

Deno.test({
  name: "bad input, exit 2: a file the user may not read",
  ignore: Deno.build.os === "windows",
  async fn() {
    const result = await runServer([poems.path("secret.txt")], { wrapper });
    assertCleanFailure(result, 2, /cannot read .*secret\.txt: permission denied/);
  },
});

Deno.test({
  name: "bad input, exit 2: read permission not granted names the flag to add",
  ignore: CUSTOM_SERVER, // a compiled binary carries its permissions
  async fn() {
    const command = [Deno.execPath(), "run", "--allow-net", "main.ts"];
    const result = await runServer([poems.path("ok.txt")], { command });
    assertCleanFailure(result, 2, /--allow-read/);
  },
});

Deno.test({
  name: "bad input, exit 2: a poem that is not a regular file says so, not --allow-read",
  ignore: Deno.build.os === "windows",
  async fn() {
    // /proc/self/* is a NotCapable under --allow-read in Deno 2, not a missing flag.
    const special = Deno.build.os === "linux" ? ["/proc/self/status"] : [];
    for (const path of [...special, "/dev/zero", poems.path("fifo")]) {
      const result = await runServer([path]);
      assertCleanFailure(result, 2, /is a special file|is not a regular file/);
      assert.match(result.stderr, new RegExp(`^error: ${RegExp.escape(path)} `), result.stderr);
      assert.doesNotMatch(result.stderr, /--allow-read/);
    }
  },
});

Deno.test({
  name: "a directory with bad entries serves the good poem and warns about each bad one",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const mixed = await makeBadEntries({ "good.txt": "a good poem\n" });
    try {
      const server = await startServer(["--iface", "127.0.0.1", mixed.dir], { wrapper });
      try {
        assert.equal(server.lines.length, 1, server.lines.join("\n"));
        assert.match(server.lines[0], /good\.txt/);
        const bytes = await fetchBytes(server.addresses[0]);
        assert.deepEqual(bytes, new TextEncoder().encode("a good poem\n"));
        // The records go to stderr in batches, written in the background: the
        // last ones may still be on their way when the Serving line is read.
        for (const name of mixed.badNames) {
          await server.waitForStderr(
            new RegExp(`WRN.*Skipping ${RegExp.escape(mixed.path(name))}: `),
          );
        }
        assert.match(server.stderr(), /Skipping .*proc\.txt: .*is a special file/);
      } finally {
        await server.stop();
      }
    } finally {
      await mixed.cleanup();
    }
  },
});

Deno.test({
  name: "bad input, exit 2: a directory whose every entry is bad",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const bad = await makeBadEntries({});
    try {
      const result = await runServer([bad.dir], { wrapper });
      assert.equal(result.code, 2, result.stderr);
      // The warnings go through the log sink, the error through console.error:
      // only the error line and its hint are required to be adjacent.
      const lines = result.stderr.trimEnd().split("\n");
      const at = lines.findIndex((line) => line.startsWith("error: "));
      assert.equal(lines[at], `error: no poems in directory ${bad.dir}`, result.stderr);
      assert.match(lines[at + 1], /^ {2}5 entries were skipped/);
      const warnings = lines.filter((_, i) => i !== at && i !== at + 1);
      assert.equal(warnings.length, bad.badNames.length, result.stderr);
      for (const name of bad.badNames) {
        const prefix = new RegExp(
          `\\[WRN\\] poetry\\.poem: Skipping ${RegExp.escape(bad.path(name))}: `,
        );
        assert.ok(warnings.some((w) => prefix.test(w)), `${name} not named in:\n${result.stderr}`);
      }
      assert.doesNotMatch(result.stderr, /^\s+at /m, "no stack trace");
      assert.equal(result.stdout, "");
    } finally {
      await bad.cleanup();
    }
  },
});

/**
 * A directory of poems beside entries that cannot be served: a dangling
 * symlink, a name that is not UTF-8, a FIFO, a file nobody may read, and a
 * symlink to a file Deno keeps from --allow-read.
 */
async function makeBadEntries(good: Record<string, string>) {
  const dir = await makePoems({ ...good, "secret.txt": "hidden\n" });
  await Deno.chmod(dir.path("secret.txt"), 0o000);
  await Deno.symlink(dir.path("gone.txt"), dir.path("dangling.txt"));
  await Deno.symlink("/proc/self/status", dir.path("proc.txt"));
  // Deno takes paths as strings, so only a shell can make a byte 0xff name.
  const made = await new Deno.Command("sh", {
    args: ["-c", 'printf bad > "$1/$(printf "\\377").txt" && mkfifo "$1/fifo"', "sh", dir.dir],
  }).output();
  assert.ok(made.success, new TextDecoder().decode(made.stderr));
  const badNames = ["dangling.txt", "\ufffd.txt", "fifo", "secret.txt", "proc.txt"];
  return { ...dir, badNames };
}

Deno.test("run-time failure, exit 1: the port is in use", async () => {
  const server = await startServer(["--iface", "127.0.0.1", poems.path("ok.txt")]);
  try {
    const port = String(server.addresses[0].port);
    const result = await runServer(["--iface", "127.0.0.1", "--port", port, poems.path("ok.txt")]);
    assertCleanFailure(result, 1, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
  } finally {
    await server.stop();
  }
});

Deno.test("run-time failure, exit 1: an --iface that does not resolve", async () => {
  const result = await runServer(["--iface", "no-such-host.invalid", poems.path("ok.txt")]);
  assertCleanFailure(result, 1, /cannot resolve --iface no-such-host\.invalid/);
});

Deno.test("run-time failure, exit 1: an --iface that is not this machine's", async () => {
  // 192.0.2.1 is TEST-NET-1, never assigned: binding fails locally, nothing is sent.
  const result = await runServer(["--iface", "192.0.2.1", poems.path("ok.txt")]);
  assertCleanFailure(result, 1, /not an address of this machine/);
});

Deno.test("cleanup: fixtures", async () => {
  await poems.cleanup();
});
