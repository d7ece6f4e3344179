// Reference for the benchmark: the least a Deno poem server can do, and so
// the runtime's floor. `Deno.listen`, `for await`, write the poem, close.
//
//   deno run --allow-net=127.0.0.1 --allow-read ref_server_deno.ts POEM_FILE [linger]
//
// With `linger`, the close poetry needs for exact bytes is added: shut down
// the sending side, read until the client closes, then close.

const [file, linger] = Deno.args;
const discard = new Uint8Array(64 * 1024);
const poem = Deno.readFileSync(file);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`Serving ${file} on 127.0.0.1:${listener.addr.port}.`);
for await (const conn of listener) {
  (async () => {
    try {
      // A write may take part of the poem; the loop is what correctness costs.
      for (let at = 0; at < poem.length;) at += await conn.write(poem.subarray(at));
      if (linger) {
        await conn.closeWrite();
        while (await conn.read(discard) !== null) {
          // Input is dropped.
        }
      }
    } catch {
      // The client left.
    } finally {
      conn.close();
    }
  })();
}
