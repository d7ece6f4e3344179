// The teaching example (examples/fastpoetry.ts) and its Twisted twin
// (examples/fastpoetry.py) run as programs and serve exact bytes over real
// TCP on loopback, to clients one after another and many at once.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  fetchBytes,
  makePoems,
  pythonWith,
  ROOT,
  runServer,
  seededBytes,
  startServer,
} from "../helpers.ts";

const DENO_EXAMPLE = [
  Deno.execPath(),
  "run",
  "--allow-net",
  "--allow-read",
  "examples/fastpoetry.ts",
];
const SAMPLE = "poems/ode-to-the-socket.txt";
// Larger than the socket buffers, so writes wait for the client; and not
// UTF-8, so a server that read the poem as text would be caught.
const BINARY = seededBytes(1024 * 1024);
const CLIENTS_AT_ONCE = 20;
/** Only a hang reaches it: 20 clients of 1 MiB take seconds on a busy machine. */
const DEADLINE_MS = 30_000;

const twistedPython = await pythonWith("twisted");
if (!twistedPython) {
  console.log(
    "examples_test: skipping examples/fastpoetry.py: python3 cannot import twisted " +
      "(apt-get install python3-twisted)",
  );
}

/** Fails if `promise` takes longer than `DEADLINE_MS`. */
async function withDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no answer in ${DEADLINE_MS} ms`)),
      DEADLINE_MS,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function assertSameBytes(got: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(got.length, expected.length, `${what}: length`);
  assert.ok(Buffer.from(got).equals(expected), `${what}: bytes differ`);
}

/**
 * Starts `command` with the tutorial's options, checks its Serving line, and
 * fetches the poem 3 times one after another, then from many clients at once.
 */
async function checkServes(command: string[], poemPath: string): Promise<void> {
  const expected = await Deno.readFile(poemPath.startsWith("/") ? poemPath : `${ROOT}/${poemPath}`);
  const server = await startServer(["--port", "0", "--iface", "127.0.0.1", poemPath], {
    command,
  });
  try {
    const [address] = server.addresses;
    assert.equal(server.lines[0], `Serving ${poemPath} on 127.0.0.1:${address.port}.`);
    for (let i = 0; i < 3; i++) {
      const got = await withDeadline(fetchBytes(address), `${poemPath}, fetch ${i + 1}`);
      assertSameBytes(got, expected, `${poemPath}, fetch ${i + 1}`);
    }
    const all = await withDeadline(
      Promise.all(Array.from({ length: CLIENTS_AT_ONCE }, () => fetchBytes(address))),
      `${CLIENTS_AT_ONCE} fetches at once`,
    );
    all.forEach((got, i) => assertSameBytes(got, expected, `${poemPath}, client ${i + 1} at once`));
  } finally {
    await server.stop();
  }
  assert.equal(server.stderr(), "", "nothing on stderr");
}

Deno.test("examples: fastpoetry.ts serves exact bytes, one client after another and many at once", async () => {
  const poems = await makePoems({ "poem.bin": BINARY });
  try {
    await checkServes(DENO_EXAMPLE, SAMPLE);
    await checkServes(DENO_EXAMPLE, poems.path("poem.bin"));
  } finally {
    await poems.cleanup();
  }
});

Deno.test("examples: fastpoetry.ts with a missing poem file is one line on stderr and exit 2", async () => {
  const { code, stdout, stderr } = await runServer(["--port", "0", "poems/no-such-poem.txt"], {
    command: DENO_EXAMPLE,
  });
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.match(stderr, /^error: .*no-such-poem\.txt.*\n$/);
});

Deno.test({
  name: "examples: fastpoetry.py, the Twisted twin, serves the same exact bytes",
  ignore: !twistedPython,
  async fn() {
    const poems = await makePoems({ "poem.bin": BINARY });
    try {
      const command = [twistedPython!, "examples/fastpoetry.py"];
      await checkServes(command, SAMPLE);
      await checkServes(command, poems.path("poem.bin"));
    } finally {
      await poems.cleanup();
    }
  },
});
