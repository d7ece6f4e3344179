import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { configureSync, type LogRecord, resetSync } from "@logtape/logtape";
import { explainReadError, findPoemFiles } from "../../lib/core/poem_files.ts";
import {
  BLOCK_SIZE,
  loadPoems,
  MIN_BLOCK_SIZE,
  Poem,
  type PoemReader,
  STREAM_BUDGET,
  streamBlockSize,
} from "../../lib/core/poem.ts";
import { UsageError } from "../../lib/base/errors.ts";
import { makePoems, seededBytes, STREAMED_SIZE } from "../helpers.ts";

/** Runs `fn` with the `poetry.poem` warnings collected as plain text. */
async function collectWarnings(fn: () => Promise<unknown>): Promise<string[]> {
  const warnings: string[] = [];
  const sink = (record: LogRecord) => warnings.push(record.message.map(String).join(""));
  configureSync({
    sinks: { sink },
    loggers: [
      { category: ["poetry", "poem"], lowestLevel: "warning", sinks: ["sink"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  try {
    await fn();
  } finally {
    resetSync();
  }
  return warnings;
}

/**
 * A directory of poems with entries that cannot be served beside them: a
 * dangling symlink, a name that is not UTF-8, a FIFO, a socket, a subdirectory.
 */
async function makeBadEntries(good: Record<string, string>) {
  const poems = await makePoems(good);
  await Deno.symlink(poems.path("gone.txt"), poems.path("dangling.txt"));
  // Deno takes paths as strings, so only a shell can make a byte 0xff name.
  const made = await new Deno.Command("sh", {
    args: ["-c", 'printf bad > "$1/$(printf "\\377").txt" && mkfifo "$1/fifo"', "sh", poems.dir],
  }).output();
  assert.ok(made.success, new TextDecoder().decode(made.stderr));
  const socket = Deno.listen({ transport: "unix", path: poems.path("socket") });
  await Deno.mkdir(poems.path("sub"));
  return {
    ...poems,
    async cleanup() {
      socket.close();
      await poems.cleanup();
    },
  };
}

const unixOnly = Deno.build.os === "windows";

Deno.test("poem: a directory expands to its regular files, sorted, dotfiles skipped", async () => {
  const poems = await makePoems({ "b.txt": "b", "a.txt": "a", ".x": "x", "B.txt": "B" });
  await Deno.mkdir(poems.path("sub"));
  try {
    const found = await findPoemFiles([poems.dir, poems.path("a.txt")]);
    assert.deepEqual(found, ["B.txt", "a.txt", "b.txt", "a.txt"].map(poems.path));
  } finally {
    await poems.cleanup();
  }
});

Deno.test("poem: every connection shares the same bytes; reload swaps them for later ones", async () => {
  const poems = await makePoems({ "p.txt": "old" });
  try {
    const [poem] = await loadPoems([poems.path("p.txt")]);
    const first = poem.content;
    assert.equal(poem.content.bytes, first.bytes, "the same array, not a copy");
    await Deno.writeTextFile(poems.path("p.txt"), "new!");
    assert.equal(await poem.reload(), true);
    assert.equal(new TextDecoder().decode(poem.content.bytes), "new!");
    assert.equal(new TextDecoder().decode(first.bytes), "old", "an earlier version is untouched");
    assert.equal(await poem.reload(), false, "unchanged file");
    await Deno.remove(poems.path("p.txt"));
    await assert.rejects(() => poem.reload(), UsageError);
    assert.equal(
      new TextDecoder().decode(poem.content.bytes),
      "new!",
      "kept after a failed reload",
    );
  } finally {
    await poems.cleanup();
  }
});

Deno.test("poem: a streamed poem's readers share a budget: 1 MiB blocks for a few, less for many", () => {
  assert.equal(streamBlockSize(1), BLOCK_SIZE);
  assert.equal(streamBlockSize(STREAM_BUDGET / BLOCK_SIZE), BLOCK_SIZE);
  const share = streamBlockSize(19);
  assert.ok(share < BLOCK_SIZE && share * 19 <= STREAM_BUDGET, `${share} bytes each for 19`);
  assert.equal(share % MIN_BLOCK_SIZE, 0);
  assert.equal(streamBlockSize(1000), MIN_BLOCK_SIZE);
  assert.equal(streamBlockSize(100_000), MIN_BLOCK_SIZE, "never below the smallest block");
});

Deno.test("poem: a streamed poem read by readers that come and go is exact, block by block", async () => {
  const expected = seededBytes(STREAMED_SIZE, 31);
  const poems = await makePoems({ "huge.bin": expected });
  const readers: { reader: PoemReader; at: number }[] = [];
  try {
    const { content } = await Poem.load(poems.path("huge.bin"));
    assert.equal(content.bytes, undefined, "streamed, not held");
    const check = async (r: { reader: PoemReader; at: number }, size: number, max = BLOCK_SIZE) => {
      const block = await r.reader.next(max);
      assert.equal(block.length, Math.min(size, max, expected.length - r.at), `a block at ${r.at}`);
      assert.ok(view(block).equals(expected.subarray(r.at, r.at + block.length)), `at ${r.at}`);
      r.at += block.length;
      return block;
    };
    for (let i = 0; i < 19; i++) readers.push({ reader: content.open(), at: 0 });
    // Two rounds, every reader in turn: each block is its share of the budget,
    // and one reader's block is not overwritten by another's read.
    for (let round = 0; round < 2; round++) {
      for (const r of readers) await check(r, streamBlockSize(19));
    }
    const [first, second] = readers;
    const kept = await check(first, streamBlockSize(19));
    const copy = kept.slice();
    await check(second, streamBlockSize(19));
    assert.ok(view(kept).equals(copy), "a block stays valid until its reader's next call");
    // Most leave: the rest read 1 MiB blocks again, from where they were.
    for (const r of readers.splice(2)) r.reader.close();
    await check(first, BLOCK_SIZE);
    while (second.at < expected.length) await check(second, BLOCK_SIZE);
    assert.equal((await second.reader.next(BLOCK_SIZE)).length, 0, "empty at the end");
    // A reader asked for less than a block gets exactly that much.
    assert.equal((await check(first, BLOCK_SIZE, 1000)).length, 1000);
    await check(first, BLOCK_SIZE);
  } finally {
    for (const r of readers) r.reader.close();
    await poems.cleanup();
  }
});

Deno.test("poem: missing paths and empty directories are usage errors", async () => {
  const poems = await makePoems({});
  try {
    await assert.rejects(() => Poem.load(poems.path("nope")), /poem not found/);
    await assert.rejects(() => findPoemFiles([poems.dir]), /no poems in directory/);
  } finally {
    await poems.cleanup();
  }
});

Deno.test({
  name: "poem: a directory skips what cannot be served, with a warning naming each entry",
  ignore: unixOnly,
  async fn() {
    // U+FFFD spelt in valid UTF-8 is a fine name; only undecodable bytes are not.
    const poems = await makeBadEntries({ "good.txt": "good\n", "\ufffd.txt": "odd name\n" });
    try {
      let found: string[] = [];
      const warnings = await collectWarnings(async () => {
        found = await findPoemFiles([poems.dir]);
      });
      assert.deepEqual(found, [poems.path("good.txt"), poems.path("\ufffd.txt")]);
      const expected: [string, RegExp][] = [
        ["dangling.txt", /dangling symlink/],
        ["\ufffd.txt", /not valid UTF-8/],
        ["fifo", /a FIFO/],
        ["socket", /a socket/],
      ];
      assert.equal(warnings.length, expected.length, warnings.join("\n"));
      for (const [name, reason] of expected) {
        const warning = warnings.find((w) => w.startsWith(`Skipping ${poems.path(name)}: `));
        assert.ok(warning, `no warning for ${name} in:\n${warnings.join("\n")}`);
        assert.match(warning, reason);
      }
      const loaded = await loadPoems([poems.dir]);
      assert.deepEqual(loaded.map((p) => p.path), found);
      assert.equal(new TextDecoder().decode(loaded[0].content.bytes), "good\n");
    } finally {
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "poem: a directory with nothing servable left is a usage error",
  ignore: unixOnly,
  async fn() {
    const poems = await makeBadEntries({});
    try {
      await assert.rejects(() => findPoemFiles([poems.dir]), (err: unknown) => {
        assert.ok(err instanceof UsageError);
        assert.match(err.message, /no poems in directory/);
        assert.match(err.hint ?? "", /4 entries .*skipped/);
        return true;
      });
      await assert.rejects(() => loadPoems([poems.dir]), /no poems in directory/);
    } finally {
      await poems.cleanup();
    }
  },
});

Deno.test({
  name: "poem: a bad poem named directly still fails at once, and a FIFO is never opened",
  ignore: unixOnly,
  async fn() {
    const poems = await makeBadEntries({ "good.txt": "good\n" });
    try {
      for (
        const [name, message] of [["dangling.txt", /poem not found/], ["fifo", /regular file/]]
      ) {
        await assert.rejects(
          () => loadPoems([poems.path("good.txt"), poems.path(name as string)]),
          message as RegExp,
        );
      }
    } finally {
      await poems.cleanup();
    }
  },
});

Deno.test("poem: a file Deno keeps from --allow-read is called special, not a missing flag", () => {
  // Deno 2 guards /proc/self, /dev/stdin and the like behind --allow-all.
  const special = explainReadError(
    "/proc/self/status",
    new Deno.errors.NotCapable(
      'Requires all access to "/proc/self/status", run again with the --allow-all flag',
    ),
  );
  assert.equal(special.message, "/proc/self/status is a special file; poetry serves regular files");
  assert.doesNotMatch(special.hint ?? "", /--allow/);
  const flag = explainReadError(
    "poems/a.txt",
    new Deno.errors.NotCapable(
      'Requires read access to "poems/a.txt", run again with the --allow-read flag',
    ),
  );
  assert.match(flag.hint ?? "", /--allow-read/);
});

// node:buffer's equals compares natively, on a view of the same memory.
function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
