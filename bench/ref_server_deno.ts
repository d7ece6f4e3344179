// Reference for the benchmark: the least a Deno poem server can do, and so
// the runtime's floor. `Deno.listen`, `for await`, write the poem, close.
//
//   deno run --allow-net=127.0.0.1 --allow-read ref_server_deno.ts POEM_FILE [linger]
//   deno run --allow-net=127.0.0.1 --allow-read ref_server_deno.ts POEM_FILE NUM_BYTES DELAY
//
// With `linger`, the close poetry needs for exact bytes is added: shut down
// the sending side, read until the client closes, then close. With a pace,
// a write of NUM_BYTES per DELAY seconds to each client, then close.

const [file, lingerOrBytes, delayText] = Deno.args;
const linger = lingerOrBytes === "linger";
const delayMs = Number(delayText ?? 0) * 1000;
const numBytes = Number(lingerOrBytes);
const discard = new Uint8Array(64 * 1024);
const poem = Deno.readFileSync(file);
// Slow mode with the least work per write Deno allows: one timer for all
// clients, which sit in 1 ms slots of the delay and write when the clock
// passes theirs (a client per interval timer collapsed at 19,000 clients).
const slots: Set<() => void>[] = Array.from({ length: Math.max(1, delayMs) }, () => new Set());
let done = Math.floor(performance.now());
if (delayMs > 0) {
  setInterval(() => {
    const now = Math.floor(performance.now());
    for (let ms = Math.max(done + 1, now - slots.length + 1); ms <= now; ms++) {
      for (const send of slots[ms % slots.length]) send();
    }
    done = now;
  }, 1);
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`Serving ${file} on 127.0.0.1:${listener.addr.port}.`);
// Not `for await`: its iterator ends on the first accept error, and at
// 19,000 clients one EMFILE would end the floor's run.
for (;;) {
  let conn: Deno.Conn;
  try {
    conn = await listener.accept();
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 10));
    continue;
  }
  if (delayMs > 0) paced(conn);
  else {
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
}

function paced(conn: Deno.Conn): void {
  let at = 0;
  let busy = false;
  const slot = slots[Math.floor(performance.now()) % slots.length];
  const end = () => {
    slot.delete(send);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  const send = () => {
    if (busy) return; // the last write has not finished: skip this tick
    busy = true;
    conn.write(poem.subarray(at, at + numBytes)).then((n) => {
      busy = false;
      at += n;
      if (at >= poem.length) end();
    }, end);
  };
  slot.add(send);
  send();
}
