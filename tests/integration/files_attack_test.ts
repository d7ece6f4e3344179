// The files the server reads and writes besides poems, attacked: --ports-file
// through a planted symlink, --config naming something that is not a file or
// nests without end, at start and at SIGHUP. Linux only (FIFOs, /proc).

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
const linux = Deno.build.os === "linux";

function filesTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `files: ${name}`, ignore: !linux, fn });
}

/** Exit 2 with one `error:` line (and its hint), nothing on stdout, no trace. */
function assertBadInput(
  result: { code: number; stdout: string; stderr: string },
  message: RegExp,
): void {
  assert.equal(result.code, 2, `exit code; stderr:\n${result.stderr}`);
  assert.equal(result.stdout, "");
  assert.match(result.stderr, /^error: [^\n]+\n( {2}[^\n]+\n)?$/, result.stderr);
  assert.match(result.stderr, message);
  assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
}

filesTest(
  "--ports-file writes through no planted symlink; PATH ends a file of mode <= 0644",
  async () => {
    // Writing the ports file needs --allow-write, which the default command
    // does not grant (a compiled binary under POETRY_SERVER may lack it too).
    if (CUSTOM_SERVER) return console.error("skipped: --ports-file needs --allow-write");
    const command = serverCommand().flatMap((arg) =>
      arg === "run" ? [arg, "--allow-write"] : [arg]
    );
    const poems = await makePoems({ "p.txt": POEM, "victim": "precious\n" });
    const victim = poems.path("victim");
    const path = poems.path("ports.json");
    // Names a neighbour could guess, PATH itself among them...
    const planted = [".ports.json.tmp", "ports.json.tmp", ".ports.json.swp", "ports.json~"];
    for (const name of [...planted, "ports.json"]) await Deno.symlink(victim, poems.path(name));
    try {
      // ...and the old name, `.ports.json.<pid>.tmp`, for the pid the server
      // will have: the shell's, which exec keeps. umask 0 shows the file's own mode.
      const server = await startServer([
        "--iface",
        "127.0.0.1",
        "--ports-file",
        path,
        poems.path("p.txt"),
      ], {
        command,
        wrapper: [
          "sh",
          "-c",
          'umask 000; ln -s "$1" "$2/.ports.json.$$.tmp"; shift 2; exec "$@"',
          "sh",
          victim,
          poems.dir,
        ],
      });
      try {
        const { port } = server.addresses[0];
        const pid = server.process.pid;
        assert.equal(await Deno.readTextFile(victim), "precious\n", "the victim is untouched");
        const info = await Deno.lstat(path);
        assert.ok(info.isFile && !info.isSymlink, "PATH is a regular file, not a symlink");
        assert.equal(
          (info.mode! & 0o777 & ~0o644).toString(8),
          "0",
          `mode ${info.mode!.toString(8)}`,
        );
        assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), [
          { poem: poems.path("p.txt"), host: "127.0.0.1", port, listener: 0, faults: [] },
        ]);
        const names = [...Deno.readDirSync(poems.dir)].map((e) => e.name).sort();
        assert.deepEqual(
          names,
          [...planted, `.ports.json.${pid}.tmp`, "p.txt", "ports.json", "victim"].sort(),
          "no temporary file left, and the planted ones left alone",
        );
      } finally {
        await server.stop();
      }
    } finally {
      await poems.cleanup();
    }
  },
);

filesTest("--config naming a FIFO is exit 2 at once, not a hang", async () => {
  const poems = await makePoems({ "p.txt": POEM });
  try {
    const fifo = poems.path("poetry.jsonc");
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(made.success, "mkfifo");
    // Nobody ever writes to it: opening it to read would block for ever.
    const result = await runServer(["--config", fifo]);
    assertBadInput(result, /--config .*poetry\.jsonc: a FIFO, not a regular file/);
  } finally {
    await poems.cleanup();
  }
});

filesTest(
  "--config naming a special file Deno keeps from --allow-read does not ask for it",
  async () => {
    for (const path of ["/proc/self/status", "/dev/stdin"]) {
      const result = await runServer(["--config", path]);
      assertBadInput(result, new RegExp(`^error: --config ${RegExp.escape(path)}: a special file`));
      assert.doesNotMatch(result.stderr, /--allow-read/);
    }
  },
);

filesTest("--config larger than the limit is exit 2, naming the size and the limit", async () => {
  const config = '{ "listeners": [{ "poem": "p.txt" }] }';
  // Valid all the same: only its size is wrong.
  const poems = await makePoems({ "p.txt": POEM, "poetry.jsonc": config.padEnd(2 ** 20 + 1) });
  try {
    const result = await runServer(["--config", poems.path("poetry.jsonc")]);
    assertBadInput(result, /poetry\.jsonc: 1048577 bytes; a config file is at most 1048576/);
  } finally {
    await poems.cleanup();
  }
});

/** `{"listeners": ...}` around `depth` levels of arrays or objects. */
function deep(depth: number, kind: "array" | "object"): string {
  const [open, close] = kind === "array" ? ["[", "]"] : ['{"a":', "}"];
  return `{\n"listeners":\n${open.repeat(depth)}1${close.repeat(depth)}\n}\n`;
}

filesTest("--config nested 5,000 deep is exit 2 naming the file and the line", async () => {
  for (const kind of ["array", "object"] as const) {
    const poems = await makePoems({ "p.txt": POEM, "poetry.jsonc": deep(5000, kind) });
    try {
      const result = await runServer(["--config", poems.path("poetry.jsonc")]);
      assertBadInput(result, /poetry\.jsonc:3: nested deeper than 64 levels/);
    } finally {
      await poems.cleanup();
    }
  }
});

filesTest(
  "SIGHUP with a config nested 5,000 deep keeps the running settings and says where",
  async () => {
    const poems = await makePoems({
      "p.txt": POEM,
      "poetry.jsonc":
        '{ "iface": "127.0.0.1", "listeners": [{ "poem": "p.txt", "faults": ["close-after=10"] }] }',
    });
    const server = await startServer(["--config", poems.path("poetry.jsonc")]);
    try {
      assert.equal((await fetchBytes(server.addresses[0])).length, 10);
      for (const kind of ["array", "object"] as const) {
        await Deno.writeTextFile(poems.path("poetry.jsonc"), deep(5000, kind));
        server.process.kill("SIGHUP");
        await server.waitForLines(
          /poetry\.jsonc:3: nested deeper than 64 levels/,
          kind === "array" ? 1 : 2,
        );
        await delay(50);
        assert.equal(
          (await fetchBytes(server.addresses[0])).length,
          10,
          "the old faults still apply",
        );
      }
      assert.doesNotMatch(server.stderr(), /Maximum call stack/);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
);
