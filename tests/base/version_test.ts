import assert from "node:assert/strict";
import { VERSION } from "../../lib/base/version.ts";
import { ROOT } from "../helpers.ts";

Deno.test("version: --version, deno.json and a release tag agree", async () => {
  const meta = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  assert.equal(VERSION, meta.version);
  assert.match(VERSION, /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, "semantic version");
  // In the release workflow the tag being built must name this version.
  const tag = Deno.env.get("GITHUB_REF_TYPE") === "tag"
    ? Deno.env.get("GITHUB_REF_NAME")
    : undefined;
  if (tag) assert.equal(tag, `v${VERSION}`);
});
