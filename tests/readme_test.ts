// The README and docs/ are part of the product: their examples run as written.

import assert from "node:assert/strict";
import { controlUrl, ROOT, startServer } from "./helpers.ts";

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

Deno.test("readme: the Toxiproxy client test under 'Faults at run time' passes as written against the command above it", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = readme.slice(readme.indexOf("### Faults at run time"));
  const command = /```sh\npoetry (.*)\n```/.exec(section)![1].split(" ");
  const code = /```ts\n([\s\S]*?)```/.exec(section)![1];
  const shown = "http://127.0.0.1:8474";
  assert.deepEqual(command.slice(2, 4), ["--control", "127.0.0.1:8474"]);
  assert.equal(code.split(shown).length, 2, `the block names ${shown} once`);
  // The command as shown, on a free port for the control endpoint.
  const server = await startServer(
    command.map((arg) => arg === "127.0.0.1:8474" ? "127.0.0.1:0" : arg),
  );
  const example = `${ROOT}/.readme-control-${crypto.randomUUID()}_test.ts`;
  try {
    await Deno.writeTextFile(example, code.replace(shown, await controlUrl(server)));
    const { code: exit, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["test", "--allow-net", example],
      cwd: ROOT,
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(exit, 0, out + new TextDecoder().decode(stderr));
    assert.match(out, /1 passed/);
    // The test removed its proxy: only the poem's own listener is left.
    const proxies = await (await fetch(`${await controlUrl(server)}/proxies`)).json();
    assert.deepEqual(Object.values(proxies).map((p) => (p as { upstream: string }).upstream), [
      "poems/ode-to-the-socket.txt",
    ]);
  } finally {
    await Deno.remove(example).catch(() => {});
    await server.stop();
  }
});
