// Nothing writes to stderr except through the log (issue 16, point 5): an
// exception thrown in a callback or a promise nobody awaits is one log
// record, not Deno's report with a stack trace, and the server goes on.

import assert from "node:assert/strict";
import { fetchBytes, makePoems, ROOT } from "../helpers.ts";

Deno.test("service: an exception thrown in a callback is one log record; serving goes on", async () => {
  const poems = await makePoems({ "p.txt": "still here\n" });
  const script = `${poems.path("")}/throwing.ts`;
  await Deno.writeTextFile(
    script,
    `import { serve } from "${ROOT}/lib/server/server.ts";
import { runAsService } from "${ROOT}/lib/service/service.ts";
import { setupLogging } from "${ROOT}/lib/base/log.ts";
setupLogging({ format: "json" });
const server = await serve([${JSON.stringify(poems.path("p.txt"))}], { iface: "127.0.0.1" });
const stopped = runAsService(server);
setTimeout(() => { throw new Error("thrown in a timer"); }, 10);
Promise.reject(new Error("rejected, never awaited"));
console.log(server.listeners[0].addr.port);
await stopped;
`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--config", `${ROOT}/deno.json`, script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const bytes = await fetchBytes({ hostname: "127.0.0.1", port });
  child.kill("SIGTERM");
  await reader.cancel();
  const stderr = await new Response(child.stderr).bytes();
  const { code } = await child.status;
  assert.equal(new TextDecoder().decode(bytes), "still here\n");
  assert.equal(code, 0);
  const lines = new TextDecoder().decode(stderr).trim().split("\n");
  const records = lines.map((line) => JSON.parse(line));
  const unexpected = records.filter((r) => /Unexpected error/.test(r.message));
  assert.equal(unexpected.length, 2, lines.join("\n"));
  assert.match(unexpected.map((r) => r.message).join("\n"), /thrown in a timer/);
});
