import assert from "node:assert/strict";
import { findPoemFiles, loadPoems, Poem } from "../lib/poem.ts";
import { UsageError } from "../lib/errors.ts";
import { makePoems } from "./helpers.ts";

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

Deno.test("poem: missing paths and empty directories are usage errors", async () => {
  const poems = await makePoems({});
  try {
    await assert.rejects(() => Poem.load(poems.path("nope")), /poem not found/);
    await assert.rejects(() => findPoemFiles([poems.dir]), /no poems in directory/);
  } finally {
    await poems.cleanup();
  }
});
