// Bad input and start-up failures: one or two lines beginning with `error:`,
// a distinct exit code (2 bad input, 1 run time), never a stack trace.

import assert from "node:assert/strict";
import { CUSTOM_SERVER, makePoems, runServer, startServer } from "../helpers.ts";

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
];

for (const [what, args, message] of usageCases) {
  Deno.test(`bad input, exit 2: ${what}`, async () => {
    assertCleanFailure(await runServer(args), 2, message);
  });
}

Deno.test({
  name: "bad input, exit 2: a file the user may not read",
  // Root reads anything; drop the capabilities that let it, where setpriv exists.
  ignore: Deno.build.os === "windows",
  async fn() {
    const wrapper = Deno.uid() === 0
      ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
      : [];
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
