// The README and docs/ are part of the product: their examples run as written.

import assert from "node:assert/strict";
import { ROOT } from "./helpers.ts";

Deno.test("readme: the 'Use as a library' example runs as written", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = readme.slice(readme.indexOf("## Use as a library"));
  const code = /```ts\n([\s\S]*?)```/.exec(section)![1];
  const example = `${ROOT}/.readme-example-${crypto.randomUUID()}.ts`;
  await Deno.writeTextFile(example, code);
  try {
    const { code: exit, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-read", example],
      cwd: ROOT,
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(exit, 0, new TextDecoder().decode(stderr));
    const samples = [...Deno.readDirSync(`${ROOT}/poems`)].length;
    assert.equal(out.match(/^poems\/.+: \d+ bytes on port \d+$/gm)?.length, samples, out);
    assert.match(out, new RegExp(`^completed ${samples}, cut short 0$`, "m"));
  } finally {
    await Deno.remove(example);
  }
});

Deno.test("docs/scaling.md: the haproxy.cfg shown under 'HAProxy' is examples/haproxy.cfg, the one the HAProxy test runs", async () => {
  const page = await Deno.readTextFile(`${ROOT}/docs/scaling.md`);
  const section = page.slice(page.indexOf("## HAProxy"));
  const shown = /```haproxy\n([\s\S]*?)```/.exec(section)?.[1];
  assert.equal(shown, await Deno.readTextFile(`${ROOT}/examples/haproxy.cfg`));
});

Deno.test("docs/testing-clients.md: the client test under 'For test harnesses' passes as written", async () => {
  const page = await Deno.readTextFile(`${ROOT}/docs/testing-clients.md`);
  const section = page.slice(page.indexOf("## For test harnesses"));
  const code = /```ts\n([\s\S]*?)```/.exec(section)![1];
  const example = `${ROOT}/.readme-client-${crypto.randomUUID()}_test.ts`;
  await Deno.writeTextFile(example, code);
  try {
    const { code: exit, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["test", "--allow-net", "--allow-read", example],
      cwd: ROOT,
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(exit, 0, out + new TextDecoder().decode(stderr));
    assert.match(out, /1 passed/);
  } finally {
    await Deno.remove(example);
  }
});
