// --config naming an endless file (/dev/zero), at start and behind a symlink
// re-pointed before SIGHUP: refused before it is read, memory stays bounded.
// Linux only (reads /proc for the memory, uses /dev/zero).

import assert from "node:assert/strict";
import {
  delay,
  fetchBytes,
  makePoems,
  ROOT,
  rssKiB,
  serverCommand,
  startServer,
} from "../helpers.ts";

const POEM_TEXT = "0123456789".repeat(10);
const linux = Deno.build.os === "linux";
/** Far above a server's own ~100 MiB, far below what reading /dev/zero reaches. */
const RSS_LIMIT_KIB = 400 * 1024;

function filesTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `files: ${name}`, ignore: !linux, fn });
}

/**
 * Runs the server to its exit, killing it if its memory passes
 * {@linkcode RSS_LIMIT_KIB} or it runs 15 s; returns the largest RSS seen.
 */
async function runWatched(args: string[]) {
  const [cmd, ...rest] = [...serverCommand(), ...args];
  const child = new Deno.Command(cmd, {
    args: rest,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const output = child.output();
  let ended = false;
  output.finally(() => ended = true);
  let maxRss = 0;
  for (let i = 0; i < 1500 && !ended; i++) {
    try {
      maxRss = Math.max(maxRss, rssKiB(child.pid));
    } catch {
      break; // exited between the check and the read
    }
    if (maxRss > RSS_LIMIT_KIB) break;
    await delay(10);
  }
  try {
    if (!ended) child.kill("SIGKILL");
  } catch {
    // Exited after the last check, before `output` settled.
  }
  const { code, stdout, stderr } = await output;
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr), maxRss };
}

filesTest("--config /dev/zero is exit 2 with one line, memory bounded", async () => {
  const result = await runWatched(["--config", "/dev/zero"]);
  assert.ok(result.maxRss <= RSS_LIMIT_KIB, `RSS reached ${result.maxRss} KiB`);
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stdout, "");
  assert.match(result.stderr, /^error: --config \/dev\/zero: a device, not a regular file\n/);
  assert.match(result.stderr, /^error: [^\n]+\n( {2}[^\n]+\n)?$/, result.stderr);
});

filesTest(
  "SIGHUP with the config symlink re-pointed to /dev/zero keeps the old config",
  async () => {
    const poems = await makePoems({
      "p.txt": POEM_TEXT,
      "real.jsonc":
        '{ "iface": "127.0.0.1", "listeners": [{ "poem": "p.txt", "faults": ["close-after=10"] }] }',
    });
    const link = poems.path("poetry.jsonc");
    await Deno.symlink(poems.path("real.jsonc"), link);
    const server = await startServer(["--config", link]);
    try {
      assert.equal((await fetchBytes(server.addresses[0])).length, 10);
      const pid = server.process.pid;
      await Deno.remove(link);
      await Deno.symlink("/dev/zero", link);
      server.process.kill("SIGHUP");
      let maxRss = 0;
      for (let i = 0; i < 500 && !/Could not re-read/.test(server.stderr()); i++) {
        maxRss = Math.max(maxRss, rssKiB(pid));
        if (maxRss > RSS_LIMIT_KIB) break;
        await delay(10);
      }
      assert.ok(maxRss <= RSS_LIMIT_KIB, `RSS reached ${maxRss} KiB`);
      await server.waitForStderr(
        /Could not re-read .*poetry\.jsonc, keeping the running settings: --config .*poetry\.jsonc: a device, not a regular file/,
      );
      await delay(50);
      assert.equal(
        (await fetchBytes(server.addresses[0])).length,
        10,
        "the old faults still apply",
      );
      assert.ok(rssKiB(pid) <= RSS_LIMIT_KIB, `RSS ${rssKiB(pid)} KiB after the reload`);
    } finally {
      await server.stop();
      await poems.cleanup();
    }
  },
);
