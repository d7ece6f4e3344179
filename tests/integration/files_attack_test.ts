// The files the server reads and writes besides poems, attacked: --ports-file
// through a planted symlink, --config naming something that is not a file or
// nests without end. Linux only.

import assert from "node:assert/strict";
import { CUSTOM_SERVER, makePoems, serverCommand, startServer } from "../helpers.ts";

const POEM = "0123456789".repeat(10);
const linux = Deno.build.os === "linux";

function filesTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `files: ${name}`, ignore: !linux, fn });
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
          { poem: poems.path("p.txt"), host: "127.0.0.1", port },
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
