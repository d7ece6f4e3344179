// Issue 18, the newcomer's first hour, on the command lines: SIGUSR1 and
// Deno's V8 inspector, `deno task bench --help`, options that would do
// nothing, typos, the second Ctrl-C, start-up errors under --log-format json.
// The real programs as subprocesses, over real TCP on loopback.

import assert from "node:assert/strict";
import {
  CUSTOM_SERVER,
  delay,
  fetchBytes,
  makePoems,
  ROOT,
  runServer,
  startServer,
  WAIT_TIMEOUT_MS,
} from "../helpers.ts";

const posix = Deno.build.os !== "windows";
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

/** Whether something accepts connections on 127.0.0.1:`port` now. */
async function listening(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** What the V8 inspector's HTTP side answers to `GET /json/list`, if anything. */
async function inspectorList(port: number): Promise<string | undefined> {
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(
      new TextEncoder().encode(
        `GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const buffer = new Uint8Array(64 * 1024);
    let text = "";
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const n = await Promise.race([conn.read(buffer), delay(500).then(() => null)]);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return text;
  } catch {
    return undefined;
  } finally {
    try {
      conn?.close();
    } catch {
      // Closed by the peer already.
    }
  }
}

const INSPECTOR_PORT = 9229;

Deno.test({
  name: "SIGUSR1: the V8 inspector Deno opens on 127.0.0.1:9229 is shut, and a warning says so",
  ignore: !posix,
  async fn() {
    // 9229 is machine-wide: a debugger or another test's process may hold it.
    if (await listening(INSPECTOR_PORT)) {
      console.log(`  skipped: something already listens on 127.0.0.1:${INSPECTOR_PORT}`);
      return;
    }
    // `deno task start`'s permissions: nothing here may need more.
    const server = await startServer(["--iface", "127.0.0.1", poems.path("p.txt")], {
      command: CUSTOM_SERVER ? undefined : [
        Deno.execPath(),
        "run",
        "--allow-net=127.0.0.1",
        `--allow-read=${poems.dir}`,
        "main.ts",
      ],
    });
    try {
      // Deno starts listening for SIGUSR1 500 ms after the worker starts, on a
      // timer that a busy machine runs late (seen: more than a second after
      // `Serving`), and a SIGUSR1 before that opens nothing. So send one,
      // wait until the service has answered it (its warning comes after its
      // last close), and send another until Deno's banner shows the hole
      // was opened. A compiled binary never prints it: one signal there.
      // Deno prints the banner from the inspector's own thread, which may
      // see the close before the registration and then prints nothing
      // (more often under load): another reason to try again.
      const warning = /Got SIGUSR1.*127\.0\.0\.1:9229.*closed it, if open\. Send SIGUSR2/;
      const banner = /Debugger listening on ws:\/\/127\.0\.0\.1:9229\//;
      const deadline = Date.now() + 60_000;
      for (let sent = 1;; sent++) {
        server.process.kill("SIGUSR1");
        await server.waitForLines(warning, sent);
        if (CUSTOM_SERVER || banner.test(server.stderr())) break;
        assert.ok(Date.now() < deadline, `no inspector banner after ${sent} SIGUSR1s`);
        await delay(200);
      }
      assert.match(server.stderr(), /Stats: 0 completed/);
      // Every SIGUSR1 has been answered: no inspector may answer now, nor
      // open later (as it would if Deno's handler ran after the last close).
      for (let i = 0; i < 10; i++) {
        const answer = await inspectorList(INSPECTOR_PORT);
        assert.equal(answer, undefined, `the inspector answered:\n${answer}`);
        await delay(100);
      }
      // And the server goes on serving.
      assert.equal(new TextDecoder().decode(await fetchBytes(server.addresses[0])), POEM);
      assert.equal((await server.stop()).code, 0);
    } finally {
      await server.stop();
    }
  },
});

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

Deno.test("--num-bytes without --delay is bad input, not a silent fast mode", async () => {
  assertUsageError(
    await runServer(["--num-bytes", "30", poems.path("p.txt")]),
    /^error: --num-bytes 30 needs --delay/,
    /add --delay SECONDS/,
  );
  // With a delay it is slow mode, as ever; --delay 0 says fast mode outright.
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--delay",
    "0",
    "--num-bytes",
    "30",
    poems.path("p.txt"),
  ]);
  try {
    assert.equal(new TextDecoder().decode(await fetchBytes(server.addresses[0])), POEM);
  } finally {
    await server.stop();
  }
});

Deno.test("a --config listener with num-bytes and no delay anywhere is bad input naming the file", async () => {
  const dir = await makePoems({
    "p.txt": POEM,
    "c.jsonc": `{ "listeners": [{ "poem": "p.txt", "port": 0, "num-bytes": 30 }] }`,
  });
  try {
    assertUsageError(
      await runServer(["--iface", "127.0.0.1", "--config", dir.path("c.jsonc")]),
      /c\.jsonc: listeners\[0\] \(.*p\.txt\) has num-bytes but no delay/,
      /add "delay"/,
    );
  } finally {
    await dir.cleanup();
  }
});

Deno.test("an unknown option that is a typo of a known one gets 'did you mean'", async () => {
  assertUsageError(
    await runServer(["--prot", "10000", poems.path("p.txt")]),
    /^error: unknown option --prot$/,
    /^ {2}did you mean --port\? \(run with --help to see the options\)$/,
  );
  assertUsageError(
    await runServer(["--max-conections", "5", poems.path("p.txt")]),
    /unknown option --max-conections/,
    /did you mean --max-connections\?/,
  );
  // Nothing close: no guess.
  const far = await runServer(["--colour", poems.path("p.txt")]);
  assertUsageError(far, /unknown option --colour/, /^ {2}run with --help to see the options$/);
});

Deno.test("deno task get: --verbos says what is wrong and what was meant; --help exits 0", async () => {
  for (const args of [["--verbos"], ["--verbos", "10000"]]) {
    assertUsageError(
      await runDeno(["task", "get", ...args]),
      /^error: unknown option --verbos$/,
      /did you mean --verbose\?/,
    );
  }
  assertUsageError(
    await runDeno(["task", "get"]),
    /^error: no server given$/,
    /deno task get 10000/,
  );
  const help = await runDeno(["task", "get", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: deno task get/);
});

Deno.test("start-up errors under --log-format json are one JSON record, with the same exit codes", async () => {
  for (
    const [args, code, message] of [
      [["--log-format", "json", "--port", "70000", poems.path("p.txt")], 2, /--port must be/],
      [["--port", "70000", "--log-format=json", poems.path("p.txt")], 2, /--port must be/],
      [["--log-format", "json", "--prot", "1", poems.path("p.txt")], 2, /unknown option --prot/],
      [["--log-format", "json", "no-such-poem.txt"], 2, /poem not found/],
    ] as [string[], number, RegExp][]
  ) {
    const result = await runServer(args);
    assert.equal(result.code, code, result.stderr);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `one line, got:\n${result.stderr}`);
    const record = JSON.parse(lines[0]);
    assert.equal(record.level, "ERROR");
    assert.equal(record.logger, "poetry");
    assert.match(record.message, /^error: /);
    assert.match(record.message, message);
    assert.equal(record.exitCode, code);
    assert.ok(!Number.isNaN(Date.parse(record["@timestamp"])));
  }
  // A run-time failure: the port is taken.
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const taken = (holder.addr as Deno.NetAddr).port;
    const result = await runServer([
      "--log-format",
      "json",
      "--iface",
      "127.0.0.1",
      "--port",
      String(taken),
      poems.path("p.txt"),
    ]);
    assert.equal(result.code, 1, result.stderr);
    const records = result.stderr.trimEnd().split("\n").map((line) => JSON.parse(line));
    const last = records.at(-1);
    assert.equal(last.level, "ERROR");
    assert.match(last.message, /^error: .*in use/);
    assert.equal(last.exitCode, 1);
  } finally {
    holder.close();
  }
  // Text stays text.
  assertUsageError(await runServer(["--port", "70000", poems.path("p.txt")]), /--port must be/);
});

/**
 * `deno task start` as a terminal runs it: in a process group of its own
 * (`setsid`), so that a Ctrl-C, sent to the whole group, reaches the task
 * runner and the server both, and the runner forwards its copy.
 */
async function startTaskInGroup(dir: string, serverArgs: string[]) {
  const task = [
    Deno.execPath(),
    "run",
    "--allow-net=127.0.0.1",
    "--allow-read",
    `${ROOT.replace(/\/$/, "")}/main.ts`,
  ]
    .concat(serverArgs).map((arg) => `'${arg}'`).join(" ");
  await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ tasks: { start: task } }));
  const process = new Deno.Command("setsid", {
    args: [Deno.execPath(), "task", "start"],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const kill = setTimeout(() => process.kill("SIGKILL"), 30_000);
  let stderr = "";
  const stderrDone = (async () => {
    for await (const text of process.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
  })();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!/Serving .* on .*\.\n/.test(stdout)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the task exited before serving:\n${stderr}`);
    stdout += value;
  }
  const port = Number(/:(\d+)\.\n/.exec(stdout)![1]);
  return {
    port,
    stderr: () => stderr,
    /** A Ctrl-C: SIGINT to the whole process group. */
    ctrlC: () => Deno.kill(-process.pid, "SIGINT"),
    async status() {
      const status = await process.status;
      clearTimeout(kill);
      await stderrDone;
      reader.releaseLock();
      await process.stdout.cancel().catch(() => {});
      return status;
    },
  };
}

const hasSetsid = posix &&
  await new Deno.Command("setsid", { args: ["--version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);

Deno.test({
  name: "deno task start: one Ctrl-C drains and exits 0; a second one logs 'Second signal' once",
  ignore: !hasSetsid,
  async fn() {
    const dir = await makePoems({ "p.txt": POEM });
    try {
      const slow = ["--iface", "127.0.0.1", "--num-bytes", "1", "--delay", "0.5", "p.txt"];
      // One Ctrl-C while a client reads: the drain waits for it, then exit 0.
      const once = await startTaskInGroup(dir.dir, [...slow, "--drain-timeout", "1"]);
      const client = await Deno.connect({ hostname: "127.0.0.1", port: once.port });
      await client.read(new Uint8Array(1));
      once.ctrlC();
      assert.equal((await once.status()).code, 0, once.stderr());
      assert.match(once.stderr(), /Shut down:/);
      client.close();

      // A second Ctrl-C, well after the first: its two copies, one exit.
      const twice = await startTaskInGroup(dir.dir, slow);
      const reader = await Deno.connect({ hostname: "127.0.0.1", port: twice.port });
      await reader.read(new Uint8Array(1));
      twice.ctrlC();
      const deadline = Date.now() + WAIT_TIMEOUT_MS;
      while (!/draining/.test(twice.stderr()) && Date.now() < deadline) await delay(20);
      await delay(1300);
      twice.ctrlC();
      assert.equal((await twice.status()).code, 1, twice.stderr());
      const lines = twice.stderr().split("\n").filter((line) => /Second signal/.test(line));
      assert.equal(lines.length, 1, twice.stderr());
      reader.close();
    } finally {
      await dir.cleanup();
    }
  },
});

Deno.test("cleanup: fixtures", async () => {
  await poems.cleanup();
});
