// --config, --ports-file, --fault and --seed on the real program: the sample
// file serves, bad files and specs are exit-2 errors naming the line and the
// field, SIGHUP re-reads faults and paces, the ports file appears whole.

import assert from "node:assert/strict";
import {
  CUSTOM_SERVER,
  delay,
  fetchBytes,
  makePoems,
  ROOT,
  runServer,
  serverCommand,
  startServer,
} from "../helpers.ts";

const POEM = "0123456789".repeat(10);

/** Writes a config file beside a 100-byte poem. */
async function withConfig(text: string) {
  const poems = await makePoems({ "p.txt": POEM, "poetry.jsonc": text });
  return { ...poems, config: poems.path("poetry.jsonc") };
}

Deno.test("config: the sample file serves fast, slow and flaky listeners; --ports-file lists them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "poetry-ports-" });
  const portsFile = `${dir}/ports.json`;
  // The sample's ports are fixed (10000-10002); port 0 would need another
  // file, so run the sample as written only when its ports are free.
  // Writing the ports file needs --allow-write, which the default command
  // does not grant (a compiled binary under POETRY_SERVER may lack it too).
  if (CUSTOM_SERVER) return console.error("skipped: --ports-file needs --allow-write");
  const command = serverCommand().flatMap((arg) => arg === "run" ? [arg, "--allow-write"] : [arg]);
  const server = await startServer(
    ["--config", "examples/poetry.jsonc", "--ports-file", portsFile],
    { listeners: 3, command },
  ).catch((err) => {
    if (/already in use/.test(String(err))) return undefined;
    throw err;
  });
  try {
    if (!server) return console.error("skipped: ports 10000-10002 are taken");
    const entries = JSON.parse(await Deno.readTextFile(portsFile));
    assert.deepEqual(entries, [
      { poem: "poems/a-short-one.txt", host: "127.0.0.1", port: 10000, listener: 0, faults: [] },
      {
        poem: "poems/ode-to-the-socket.txt",
        host: "127.0.0.1",
        port: 10001,
        listener: 1,
        faults: [],
      },
      {
        poem: "poems/the-reactor-at-night.txt",
        host: "127.0.0.1",
        port: 10002,
        listener: 2,
        faults: ["reset-after=100,probability=0.33", "first-byte-delay=0.5", "chunks=1-16"],
      },
    ]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["ports.json"], "no temp left");
    const fast = await fetchBytes(server.addresses[0]);
    assert.equal(fast.length, Deno.statSync(`${ROOT}/poems/a-short-one.txt`).size);
    await server.waitForStderr(/Faults on 127\.0\.0\.1:10002: reset-after=100,probability=0\.33/);
    await server.waitForStderr(/--seed 42/);
  } finally {
    await server?.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: mistakes are exit 2 with the file, line and field, and a hint", async () => {
  const cases: [string, RegExp][] = [
    [
      '{\n  "listeners": [\n    { "poem": "p.txt",\n      "port": 70000 }\n  ]\n}\n',
      /poetry\.jsonc:4: listeners\[0\]\.port must be a whole number from 0 to 65535, got 70000/,
    ],
    [
      '{\n  "listeners": [\n    { "poem": "p.txt", "faults": ["reset-after=soon"] }\n  ]\n}\n',
      /poetry\.jsonc:3: listeners\[0\]\.faults\[0\] 'reset-after=soon': reset-after needs a whole number/,
    ],
    [
      '{\n  "listeners": [\n    { "poem": "p.txt",\n      "colour": "red" }\n  ]\n}\n',
      /poetry\.jsonc:4: listeners\[0\]\.colour: unknown field\n {2}fields here are poem, port/,
    ],
    ['{\n  "listeners": [\n    { "poem": "p.txt" \n  ]\n}\n', /poetry\.jsonc:4: not valid JSON/],
    [
      '{\n  "delay": "slow",\n  "listeners": [{ "poem": "p.txt" }]\n}\n',
      /:2: delay must be a number/,
    ],
    ['{\n  "listeners": [\n    { "port": 1 }\n  ]\n}\n', /:3: listeners\[0\]\.poem is missing/],
    ['{ "listeners": [] }', /:1: listeners is empty/],
    ['{ "listeners": [{ "poem": "nowhere.txt" }] }', /nowhere\.txt/],
  ];
  for (const [text, message] of cases) {
    const poems = await withConfig(text);
    try {
      const { code, stdout, stderr } = await runServer(["--config", poems.config]);
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      assert.match(stderr, message);
      assert.match(stderr, /^error: .*\n {2}\S/);
      assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
    } finally {
      await poems.cleanup();
    }
  }
});

Deno.test("config and command line: bad --fault, --port or POEMs with --config are exit 2", async () => {
  const poems = await withConfig('{ "listeners": [{ "poem": "p.txt" }] }');
  try {
    const cases: [string[], RegExp][] = [
      [
        ["--fault", "explode=1", "poems/"],
        /--fault 'explode=1': unknown fault 'explode'\n {2}faults are/,
      ],
      [["--fault", "chunks=9-1", "poems/"], /chunks needs a range MIN-MAX/],
      [["--seed", "x", "poems/"], /--seed must be a whole number/],
      [["--config", poems.config, "--port", "10000"], /--port does not combine with --config/],
      [["--config", poems.config, "poems/"], /POEM arguments and --config do not mix/],
      [["--config", `${poems.dir}/missing.jsonc`], /missing\.jsonc: no such file/],
    ];
    for (const [args, message] of cases) {
      const { code, stderr } = await runServer(args);
      assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
      assert.match(stderr, message);
    }
  } finally {
    await poems.cleanup();
  }
});

Deno.test("config: SIGHUP re-reads faults and paces; a new listener needs a restart", {
  ignore: Deno.build.os === "windows",
}, async () => {
  const poems = await withConfig(
    '{ "iface": "127.0.0.1", "listeners": [{ "poem": "p.txt", "faults": ["close-after=10"] }] }',
  );
  const server = await startServer(["--config", poems.config]);
  try {
    assert.equal((await fetchBytes(server.addresses[0])).length, 10);
    await Deno.writeTextFile(
      poems.config,
      `{ "iface": "127.0.0.1", "listeners": [
        { "poem": "p.txt", "faults": ["close-after=20"] },
        { "poem": "p.txt" },
      ] }`,
    );
    server.process.kill("SIGHUP");
    await server.waitForStderr(/adding or removing a listener needs a restart/);
    await server.waitForStderr(/Reconfigured; faults on 127\.0\.0\.1:\d+: close-after=20/);
    assert.equal((await fetchBytes(server.addresses[0])).length, 20);
    // A broken file keeps what runs.
    await Deno.writeTextFile(poems.config, "{ nope");
    server.process.kill("SIGHUP");
    await server.waitForStderr(/Could not re-read .*poetry\.jsonc, keeping the running settings/);
    await delay(50);
    assert.equal((await fetchBytes(server.addresses[0])).length, 20);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("--fault on the command line applies to every poem; the log names the faults", async () => {
  const poems = await makePoems({ "a.txt": POEM, "b.txt": POEM });
  const server = await startServer(
    ["--iface", "127.0.0.1", "--fault", "close-after=7", "--seed", "1", poems.dir],
    { listeners: 2 },
  );
  try {
    for (const address of server.addresses) assert.equal((await fetchBytes(address)).length, 7);
    await server.waitForLines(/got 7 of 100 bytes .* faulted\. Faults: close-after=7\./, 2);
    await server.waitForStderr(/Faults on 127\.0\.0\.1:\d+: close-after=7 \(--seed 1\)/);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});
