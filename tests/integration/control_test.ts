// The control endpoint driven as a client's test suite drives Toxiproxy:
// with the npm package toxiproxy-node-client (4.1.0), unchanged, against
// the real program over real TCP on loopback. Each toxic is checked by
// what a client of the poem then gets, byte for byte.

import assert from "node:assert/strict";
import net from "node:net";
import { type ICreateToxicBody, Toxiproxy } from "toxiproxy-node-client";
import { VERSION } from "../../lib/base/version.ts";
import {
  controlUrl,
  delay,
  fetchBytes,
  makePoems,
  pythonWith,
  readTimed,
  type RunningServer,
  runPythonClient,
  seededBytes,
  startServer,
} from "../helpers.ts";

const POEM = seededBytes(200_000, 21);
const poems = await makePoems({ "poem.bin": POEM });
const twistedPython = await pythonWith("twisted");

async function withControl(
  extra: string[],
  fn: (url: string, poemPort: number, server: RunningServer) => Promise<void>,
): Promise<void> {
  const server = await startServer([
    "--iface",
    "127.0.0.1",
    "--control",
    "127.0.0.1:0",
    ...extra,
    poems.path("poem.bin"),
  ]);
  try {
    await fn(await controlUrl(server), server.addresses[0].port, server);
  } finally {
    await server.stop();
  }
}

/** A toxic body as the client's types want it: every field, Toxiproxy's defaults. */
function toxic<T>(type: ICreateToxicBody<T>["type"], attributes: T, toxicity = 1) {
  return { name: `${type}_downstream`, type, stream: "downstream" as const, toxicity, attributes };
}

const addressOf = (listen: string) => {
  const [hostname, port] = listen.split(":");
  return { hostname, port: Number(port) };
};

/** Connects with node:net and reads to the end; the error's code when the connection fails. */
function nodeFetch(port: number): Promise<{ bytes: number; code?: string }> {
  return new Promise((resolve) => {
    let bytes = 0;
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.on("data", (chunk: Uint8Array) => bytes += chunk.length);
    socket.on("end", () => resolve({ bytes }));
    socket.on("error", (err: Error & { code?: string }) => resolve({ bytes, code: err.code }));
  });
}

Deno.test("control: toxiproxy-node-client lists, creates, adds and removes toxics, disables, resets", async () => {
  await withControl(["--seed", "42"], async (url, poemPort) => {
    const toxiproxy = new Toxiproxy(url);
    assert.equal(await toxiproxy.getVersion(), `{"version": "${VERSION}"}\n`);
    const all = await toxiproxy.getAll();
    assert.deepEqual(Object.keys(all), [`poem_${poemPort}`]);
    assert.equal(all[`poem_${poemPort}`].listen, `127.0.0.1:${poemPort}`);
    assert.equal(all[`poem_${poemPort}`].upstream, poems.path("poem.bin"));

    // The upstream is the address poetry serves the poem on, as a Toxiproxy
    // suite names its real service.
    const proxy = await toxiproxy.createProxy({
      name: "poem",
      listen: "127.0.0.1:0",
      upstream: `localhost:${poemPort}`,
    });
    const address = addressOf(proxy.listen);
    assert.notEqual(address.port, 0);
    assert.deepEqual(await fetchBytes(address), POEM);

    // limit_data: exactly that many bytes, then a clean end.
    const limit = await proxy.addToxic(toxic("limit_data", { bytes: 1000 }));
    assert.equal(limit.name, "limit_data_downstream");
    assert.deepEqual(await fetchBytes(address), POEM.slice(0, 1000));
    await limit.remove();
    assert.deepEqual(await fetchBytes(address), POEM);

    // reset_peer: a real RST, as node:net reports it.
    const reset = await proxy.addToxic(toxic("reset_peer", { timeout: 0 }));
    assert.equal((await nodeFetch(address.port)).code, "ECONNRESET");
    await reset.remove();

    // latency: the first byte that much later than without it.
    const latency = await proxy.addToxic(toxic("latency", { latency: 600, jitter: 0 }));
    const late = await readTimed(address);
    assert.deepEqual(late.bytes, POEM);
    assert.ok(late.arrivals[0] >= 590, `first byte after ${late.arrivals[0]} ms`);
    await latency.remove();
    const early = await readTimed(address);
    assert.ok(early.arrivals[0] < 500, `first byte after ${early.arrivals[0]} ms without latency`);

    // bandwidth: 100 KB/s (Toxiproxy's KB is 1000 bytes), within 10 %.
    const bandwidth = await proxy.addToxic(toxic("bandwidth", { rate: 100 }));
    const slow = await readTimed(address);
    assert.deepEqual(slow.bytes, POEM);
    const rate = POEM.length / (slow.ms / 1000);
    assert.ok(Math.abs(rate - 100_000) <= 10_000, `measured ${Math.round(rate)} bytes/s`);
    await bandwidth.remove();

    // disable: refused; the other listener goes on serving.
    const disabled = await proxy.update({ ...proxy.toJson(), enabled: false });
    assert.equal(disabled.enabled, false);
    assert.equal((await nodeFetch(address.port)).code, "ECONNREFUSED");
    assert.deepEqual(await fetchBytes({ hostname: "127.0.0.1", port: poemPort }), POEM);

    // reset: every toxic gone, every proxy enabled, on the same address.
    await proxy.addToxic(toxic("limit_data", { bytes: 10 }));
    await toxiproxy.reset();
    const again = await toxiproxy.get("poem");
    assert.equal(again.enabled, true);
    assert.equal(again.listen, proxy.listen);
    assert.deepEqual(await fetchBytes(address), POEM);

    await again.remove();
    assert.deepEqual(Object.keys(await toxiproxy.getAll()), [`poem_${poemPort}`]);
    assert.equal((await nodeFetch(address.port)).code, "ECONNREFUSED");
  });
});

Deno.test("control: a toxicity below 1 is drawn from --seed: the same calls give the same clients the same cuts", async () => {
  const run = async () => {
    const lengths: number[] = [];
    await withControl(["--seed", "7"], async (url, poemPort) => {
      const proxy = await new Toxiproxy(url).get(`poem_${poemPort}`);
      await proxy.addToxic(toxic("limit_data", { bytes: 100 }, 0.5));
      const address = { hostname: "127.0.0.1", port: poemPort };
      for (let i = 0; i < 12; i++) lengths.push((await fetchBytes(address)).length);
    });
    return lengths;
  };
  const first = await run();
  assert.deepEqual(await run(), first);
  assert.ok(first.includes(100) && first.includes(POEM.length), first.join(" "));
});

Deno.test("control: errors in Toxiproxy's shape and status, one log record each, nothing else changes", async () => {
  await withControl([], async (url, poemPort, server) => {
    const call = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${url}${path}`, {
        method,
        body: body === undefined
          ? undefined
          : typeof body === "string"
          ? body
          : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    };
    const error =
      (status: number, message: string | RegExp) =>
      (r: { status: number; body: { error: string; status: number } }) => {
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.equal(r.body.status, status);
        assert.match(
          r.body.error,
          typeof message === "string" ? new RegExp(`^${message}$`) : message,
        );
        return true;
      };
    const poem = `poem_${poemPort}`;
    error(404, "proxy not found")(await call("GET", "/proxies/nobody"));
    error(404, "proxy not found")(
      await call("POST", "/proxies/nobody/toxics", { type: "latency" }),
    );
    error(409, "proxy already exists")(
      await call("POST", "/proxies", { name: poem, upstream: "poem.bin" }),
    );
    error(400, "missing required field: name")(await call("POST", "/proxies", { upstream: "x" }));
    error(400, "missing required field: upstream")(await call("POST", "/proxies", { name: "x" }));
    error(400, /^bad request body: /)(await call("POST", "/proxies", "{not json"));
    error(400, "bad request body: EOF")(await call("POST", "/proxies"));
    // Never a file of the caller's choosing.
    error(400, /^upstream '\/etc\/passwd' is not one of this server's poems/)(
      await call("POST", "/proxies", { name: "x", upstream: "/etc/passwd" }),
    );
    error(400, /^listen on 192\.0\.2\.1 is not allowed/)(
      await call("POST", "/proxies", { name: "x", listen: "192.0.2.1:0", upstream: "poem.bin" }),
    );
    error(409, /already in use/)(
      await call("POST", "/proxies", {
        name: "x",
        listen: `127.0.0.1:${poemPort}`,
        upstream: "poem.bin",
      }),
    );
    error(400, /^upstream toxics are not supported/)(
      await call("POST", `/proxies/${poem}/toxics`, { type: "latency", stream: "upstream" }),
    );
    error(400, "stream was invalid, can be either upstream or downstream")(
      await call("POST", `/proxies/${poem}/toxics`, { type: "latency", stream: "sideways" }),
    );
    error(400, /^invalid toxic type: 'down'/)(
      await call("POST", `/proxies/${poem}/toxics`, { type: "down" }),
    );
    error(400, /^unknown attribute 'latncy' for latency/)(
      await call("POST", `/proxies/${poem}/toxics`, {
        type: "latency",
        attributes: { latncy: 10 },
      }),
    );
    error(400, /^bad request body: toxicity/)(
      await call("POST", `/proxies/${poem}/toxics`, { type: "latency", toxicity: 2 }),
    );
    error(404, "toxic not found")(await call("GET", `/proxies/${poem}/toxics/nothing`));
    error(405, /^method PUT not allowed/)(await call("PUT", "/proxies"));
    error(404, "not found")(await call("GET", "/metrics"));
    // Refused requests changed nothing.
    const listed = await call("GET", "/proxies");
    assert.deepEqual(Object.keys(listed.body), [poem]);
    assert.deepEqual(listed.body[poem].toxics, []);
    const records = /poetry\.control: Control: 127\.0\.0\.1:\d+ \S+ \S+: \d{3} /;
    await server.waitForLines(records, 18);
    assert.equal(server.stderr().split("\n").filter((line) => records.test(line)).length, 18);

    // Default names, 409 on a second, PATCH and POST both update, 204 on delete.
    const created = await call("POST", `/proxies/${poem}/toxics`, { type: "slow_close" });
    assert.equal(created.status, 200);
    assert.deepEqual(created.body, {
      name: "slow_close_downstream",
      type: "slow_close",
      stream: "downstream",
      toxicity: 1,
      attributes: { delay: 0 },
    });
    error(409, "toxic already exists")(
      await call("POST", `/proxies/${poem}/toxics`, { type: "slow_close" }),
    );
    const patched = await call("PATCH", `/proxies/${poem}/toxics/slow_close_downstream`, {
      attributes: { delay: 50 },
    });
    assert.equal(patched.body.attributes.delay, 50);
    const posted = await call("POST", `/proxies/${poem}/toxics/slow_close_downstream`, {
      toxicity: 0.25,
    });
    assert.deepEqual([posted.body.attributes.delay, posted.body.toxicity], [50, 0.25]);
    assert.equal(
      (await call("DELETE", `/proxies/${poem}/toxics/slow_close_downstream`)).status,
      204,
    );

    // populate: 201 and every proxy; the same one again is kept, not restarted.
    const body = [{ name: "p1", listen: "127.0.0.1:0", upstream: "poem.bin" }];
    const populated = await call("POST", "/populate", body);
    assert.equal(populated.status, 201);
    assert.equal(populated.body.proxies[0].name, "p1");
    const listen = populated.body.proxies[0].listen;
    const again = await call("POST", "/populate", [{ ...body[0], listen }]);
    assert.equal(again.body.proxies[0].listen, listen);
    const bad = await call("POST", "/populate", [{ name: "p2" }]);
    error(400, "missing required field: upstream at proxy 1")(bad);
    assert.equal((await call("POST", "/reset")).status, 204);
  });
});

Deno.test("control: a change applies to the next clients; a transfer in flight keeps its faults and outlives a disable and a delete", async () => {
  let stderr = "";
  await withControl([], async (url, poemPort, server) => {
    const toxiproxy = new Toxiproxy(url);
    const proxy = await toxiproxy.createProxy({
      name: "slow",
      listen: "127.0.0.1:0",
      upstream: `127.0.0.1:${poemPort}`,
    });
    const address = addressOf(proxy.listen);
    // 100 KB/s: the 200 KB poem takes some 2 s.
    const bandwidth = await proxy.addToxic(toxic("bandwidth", { rate: 100 }));
    const inFlight = readTimed(address);
    // Under way, then the toxic removed, the proxy disabled and deleted.
    await delay(300);
    await bandwidth.remove();
    await proxy.update({ ...proxy.toJson(), enabled: false });
    await proxy.remove();
    const { bytes, ms } = await inFlight;
    assert.deepEqual(bytes, POEM);
    assert.ok(ms >= 1500, `the transfer in flight kept its bandwidth: ${Math.round(ms)} ms`);
    assert.equal((await nodeFetch(address.port)).code, "ECONNREFUSED");
    // The next client of the poem's own listener never had the toxic.
    const clean = await readTimed({ hostname: "127.0.0.1", port: poemPort });
    assert.ok(clean.ms < 1500, `${Math.round(clean.ms)} ms`);
    await server.stop();
    stderr = server.stderr();
  });
  // The removed listener's transfer is in the shutdown's summary.
  assert.match(stderr, /Shut down: 2 completed/);
});

Deno.test("control: under --config, a listener's name is its proxy's; SIGHUP re-reads poems, keeps the toxics; /reset goes back to the file's faults", async () => {
  const dir = await makePoems({ "a.txt": "0123456789".repeat(10) });
  const config = (faults: string[]) =>
    JSON.stringify({
      iface: "127.0.0.1",
      listeners: [{ poem: "a.txt", name: "ten" }, { poem: "a.txt", faults }],
    });
  await Deno.writeTextFile(dir.path("c.json"), config(["close-after=5"]));
  const server = await startServer(
    ["--config", dir.path("c.json"), "--control", "127.0.0.1:0"],
    { listeners: 2 },
  );
  try {
    await server.waitForStderr(/SIGHUP re-reads the poems but not .*c\.json's listener settings/);
    const [named, faulty] = server.addresses;
    const toxiproxy = new Toxiproxy(await controlUrl(server));
    assert.deepEqual(Object.keys(await toxiproxy.getAll()), ["a_" + faulty.port, "ten"]);
    const ten = await toxiproxy.get("ten");
    await ten.addToxic(toxic("limit_data", { bytes: 10 }));
    const other = await toxiproxy.get(`a_${faulty.port}`);
    // The file's fault stays under the toxics (the shortest cut wins).
    await other.addToxic(toxic("latency", { latency: 1, jitter: 0 }));
    assert.equal((await fetchBytes(named)).length, 10);
    assert.equal((await fetchBytes(faulty)).length, 5);
    await Deno.writeTextFile(dir.path("c.json"), config(["close-after=3"]));
    server.process.kill("SIGHUP");
    await server.waitForStderr(/SIGHUP reload: /);
    assert.equal((await fetchBytes(named)).length, 10);
    assert.equal((await fetchBytes(faulty)).length, 5);
    await toxiproxy.reset();
    assert.equal((await fetchBytes(named)).length, 100);
    assert.equal((await fetchBytes(faulty)).length, 5);
    assert.deepEqual((await toxiproxy.get(`a_${faulty.port}`)).toJson().enabled, true);
  } finally {
    await server.stop();
    await dir.cleanup();
  }
});

Deno.test({
  name: "control: the tutorial's Twisted client meets a reset_peer added at run time: its errback",
  ignore: !twistedPython,
  async fn() {
    await withControl([], async (url, poemPort) => {
      const target = `127.0.0.1:${poemPort}`;
      const get = async () => (await runPythonClient(twistedPython!, "get_poetry.py", [target]))[0];
      assert.deepEqual(await get(), { result: "poem", bytes: POEM.length });
      const proxy = await new Toxiproxy(url).get(`poem_${poemPort}`);
      // Slowed to 100 KB/s, reset 300 ms in: mid-poem. (A reset at once may
      // reach Twisted before connectionMade: a ConnectError instead.)
      const bandwidth = await proxy.addToxic(toxic("bandwidth", { rate: 100 }));
      const reset = await proxy.addToxic(toxic("reset_peer", { timeout: 300 }));
      const failed = await get();
      assert.equal(failed.result, "errback");
      assert.equal(failed.failure, "ConnectionLost");
      assert.ok((failed.bytes as number) < POEM.length, `${failed.bytes} bytes before the reset`);
      await reset.remove();
      await bandwidth.remove();
      assert.deepEqual(await get(), { result: "poem", bytes: POEM.length });
    });
  },
});

Deno.test("control: cleanup", () => poems.cleanup());
