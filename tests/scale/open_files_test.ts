import assert from "node:assert/strict";
import { roomForFiles } from "../../lib/scale/open_files.ts";

// Under a low limit: tests/faults/startup_attack_test.ts, with the real program.
Deno.test("roomForFiles: all of them when the limit allows", () => {
  const path = new URL(import.meta.url);
  assert.equal(roomForFiles(20, path), 20);
  assert.equal(roomForFiles(0, path), 0);
});

Deno.test("roomForFiles: undefined when the file cannot be opened at all", () => {
  assert.equal(roomForFiles(5, "/no/such/file/for/poetry"), undefined);
});
