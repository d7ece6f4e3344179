// The admin endpoint of the real program over real HTTP: /metrics checked by
// promtool (the Prometheus package's own parser), /healthz through a drain,
// /status.json and the page, bad --admin values.

import assert from "node:assert/strict";
import {
  adminUrl,
  fetchBytes,
  findProgram,
  httpGet,
  makePoems,
  readTimed,
  runServer,
  sampleValue,
  startServer,
} from "../helpers.ts";

const POEM = "Count me, scrape me,\ngraph me by the hour.\n";
const SIZE = new TextEncoder().encode(POEM).length;
const promtool = findProgram("promtool");

Deno.test("admin: /metrics counts connections, bytes and durations per poem; promtool accepts it", async () => {
  const poems = await makePoems({ "counted.txt": POEM, "other.txt": "x\n" });
  const counted = poems.path("counted.txt");
  const server = await startServer(
    ["--iface", "127.0.0.1", "--admin", "127.0.0.1:0", counted, poems.path("other.txt")],
    { listeners: 2 },
  );
  try {
    const base = await adminUrl(server);
    for (let i = 0; i < 3; i++) assert.equal((await fetchBytes(server.addresses[0])).length, SIZE);
    await server.waitForLines(/got \d+ of \d+ bytes .*: completed\./, 3);
    const { status, body, type } = await httpGet(`${base}metrics`);
    assert.equal(status, 200);
    assert.equal(type, "text/plain; version=0.0.4; charset=utf-8");
    const poem = `poem="${counted}"`;
    const value = (series: string) => sampleValue(body, series);
    assert.equal(value(`poetry_connections_total{${poem},outcome="completed"}`), 3, body);
    assert.equal(value(`poetry_connections_total{${poem},outcome="client left"}`), 0);
    assert.equal(value(`poetry_connections_active{${poem}}`), 0);
    assert.equal(value(`poetry_sent_bytes_total{${poem}}`), 3 * SIZE);
    assert.equal(value(`poetry_connection_duration_seconds_count{${poem}}`), 3);
    assert.equal(value(`poetry_connection_duration_seconds_bucket{${poem},le="+Inf"}`), 3);
    assert.equal(value(`poetry_poem_bytes{${poem}}`), SIZE);
    assert.equal(value(`poetry_accept_errors_total`), 0);
    assert.equal(value(`poetry_log_records_dropped_total`), 0);
    assert.equal(value(`poetry_reloads_total{result="changed"}`), 0);
    assert.match(body, /^poetry_build_info\{version="\d+\.\d+\.\d+"\} 1$/m);
    assert.ok(value("process_resident_memory_bytes")! > 1e6, body);
    // No client addresses anywhere: only poems, outcomes, results, versions.
    assert.doesNotMatch(body, /peer=|127\.0\.0\.1:\d/);
    if (promtool) {
      const check = new Deno.Command(promtool, {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = check.stdin.getWriter();
      await writer.write(new TextEncoder().encode(body));
      await writer.close();
      const out = await check.output();
      const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `promtool check metrics:\n${said}\n${body}`);
    } else {
      console.log("promtool not installed: the format check is skipped");
    }
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("admin: a reload is counted, and process_open_fds is there with --allow-all", async () => {
  const poems = await makePoems({ "p.txt": POEM });
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--admin",
    "127.0.0.1:0",
    poems.path("p.txt"),
  ], {
    command: [Deno.execPath(), "run", "--allow-all", "main.ts"],
  });
  try {
    const base = await adminUrl(server);
    await Deno.writeTextFile(poems.path("p.txt"), POEM + "more\n");
    server.process.kill("SIGHUP");
    await server.waitForStderr(/Reloaded/);
    const { body } = await httpGet(`${base}metrics`);
    assert.equal(sampleValue(body, `poetry_reloads_total{result="changed"}`), 1, body);
    assert.equal(sampleValue(body, `poetry_poem_bytes{poem="${poems.path("p.txt")}"}`), SIZE + 5);
    const fds = sampleValue(body, "process_open_fds");
    if (Deno.build.os === "linux") assert.ok(fds! >= 3 && fds! < 100, body);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("admin: /healthz is ok while serving and 503 while draining; /status.json lists transfers", async () => {
  const poems = await makePoems({ "slow.txt": "x".repeat(400) });
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--admin",
    "127.0.0.1:0",
    "--num-bytes",
    "10",
    "--delay",
    "0.1",
    poems.path("slow.txt"),
  ]);
  try {
    const base = await adminUrl(server);
    assert.deepEqual(
      [await httpGet(`${base}healthz`)].map((r) => [r.status, r.body]),
      [[200, "ok\n"]],
    );
    const reading = readTimed(server.addresses[0]);
    await server.waitForStderr(/./); // the Admin line is already there; give the client a moment
    let status;
    for (let i = 0; i < 50; i++) {
      status = JSON.parse((await httpGet(`${base}status.json`)).body);
      if (status.listeners[0].transfers.length === 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const listener = status.listeners[0];
    assert.equal(listener.poem, poems.path("slow.txt"));
    assert.equal(listener.address, `127.0.0.1:${server.addresses[0].port}`);
    assert.deepEqual(listener.pace, { numBytes: 10, delay: 0.1 });
    assert.equal(listener.transfers.length, 1);
    assert.equal(listener.transfers[0].total, 400);
    assert.ok(listener.transfers[0].sent < 400);
    assert.equal(status.draining, false);
    assert.equal(status.totals.inFlight, 1);
    server.process.kill("SIGTERM");
    await server.waitForStderr(/draining/);
    const during = await httpGet(`${base}healthz`);
    assert.deepEqual([during.status, during.body], [503, "draining\n"]);
    const { bytes } = await reading;
    assert.equal(bytes.length, 400);
    // A stop signal a second after the first, before the drain is done,
    // would mean "stop at once" (exit 1): wait for the summary first.
    await server.waitForStderr(/Shut down:/);
    assert.equal((await server.stop()).code, 0);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("admin: the page, 404 for other paths, 405 for other methods", async () => {
  const poems = await makePoems({ "p.txt": POEM });
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--admin",
    "127.0.0.1:0",
    poems.path("p.txt"),
  ]);
  try {
    const base = await adminUrl(server);
    const page = await httpGet(base);
    assert.equal(page.status, 200);
    assert.equal(page.type, "text/html; charset=utf-8");
    assert.match(page.body, /<title>poetry<\/title>/);
    assert.doesNotMatch(page.body, /(src|href)="https?:/, "no external assets");
    assert.equal((await httpGet(`${base}nope`)).status, 404);
    const post = await fetch(`${base}metrics`, { method: "POST" });
    await post.body?.cancel();
    assert.equal(post.status, 405);
  } finally {
    await server.stop();
    await poems.cleanup();
  }
});

Deno.test("admin: a bad --admin or --stats-interval is one line and a hint, exit 2; a taken port exits 1", async () => {
  for (
    const [args, message] of [
      [
        ["--admin", "9100"],
        /^error: --admin needs HOST:PORT, got '9100'\n {2}use e\.g\. --admin 127\.0\.0\.1:9100\n$/,
      ],
      [["--admin", "127.0.0.1:70000"], /^error: --admin needs HOST:PORT/],
      [["--admin", ":9100"], /^error: --admin needs HOST:PORT/],
      [["--stats-interval", "-1"], /^error: --stats-interval must be a number of seconds/],
      [["--stats-interval", "soon"], /^error: --stats-interval must be a number of seconds/],
    ] as const
  ) {
    const result = await runServer([...args, "poems/"]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.equal(result.stderr.trim().split("\n").length, 2, result.stderr);
  }
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const result = await runServer([
      "--iface",
      "127.0.0.1",
      "--admin",
      `127.0.0.1:${port}`,
      "poems/",
    ]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(
        `error: cannot serve the admin endpoint: 127\\.0\\.0\\.1:${port} is already in use`,
      ),
    );
  } finally {
    taken.close();
  }
});

Deno.test("admin: --allow-net must cover the admin address, and the hint says how", async () => {
  const result = await runServer(
    ["--iface", "127.0.0.1", "--admin", "localhost:0", "poems/"],
    { command: [Deno.execPath(), "run", "--allow-read=poems", "--allow-net=127.0.0.1", "main.ts"] },
  );
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /no permission to listen on localhost:0 for the admin endpoint\n/);
  assert.match(result.stderr, /--allow-net=127\.0\.0\.1,localhost/);
});
