// The real thing in front: HAProxy on loopback, in TCP mode with send-proxy-v2
// and health checks on /healthz, before two poetry processes, configured by
// examples/haproxy.cfg, the file docs/scaling.md shows, and started by the two
// poetry commands that page shows (the same free ports in place of the fixed
// ones in both, consecutive where the page's are; slow mode and a --deny
// added). Clients connect from distinct 127.0.0.x source addresses so
// the logs can show whose address poetry saw. Linux only; skipped with a
// message where haproxy is not installed (.ci/run installs Debian's).

import assert from "node:assert/strict";
import net from "node:net";
import {
  concat,
  CUSTOM_SERVER,
  delay,
  findProgram,
  freePortRange,
  ROOT,
  type RunningServer,
  serverCommand,
  startServer,
  WAIT_TIMEOUT_MS,
} from "../helpers.ts";
import { allRunnableBlocks, freePortsFor, withPorts } from "../doc_examples.ts";

const linux = Deno.build.os === "linux";
const haproxy = findProgram("haproxy", "/usr/sbin/haproxy", "/usr/local/sbin/haproxy");
if (linux && !haproxy) {
  console.log("haproxy tests skipped: haproxy is not installed (apt-get install haproxy)");
}

/** The configuration docs/scaling.md shows. */
export const HAPROXY_CFG = `${ROOT}/examples/haproxy.cfg`;

/**
 * The poetry commands docs/scaling.md runs before HAProxy, with `ports`, as
 * the command to start and its arguments (`deno` is this Deno; with
 * `POETRY_SERVER`, that command with the same arguments).
 */
function poetryCommands(ports: Map<number, number>): { command: string[]; args: string[] }[] {
  const block = allRunnableBlocks().find((b) =>
    b.file === "docs/scaling.md" && b.section === "HAProxy"
  );
  assert.ok(block, "a runnable block under HAProxy in docs/scaling.md");
  const poetry = block.commands.filter((c) => c.startsWith("deno run ")).map((c) =>
    withPorts(c, ports).replace(/\s*&\s*(#.*)?$/, "").split(/\s+/)
  );
  assert.equal(poetry.length, 2, "two poetry processes");
  return poetry.map((words) => {
    const main = words.indexOf("main.ts");
    return {
      command: CUSTOM_SERVER ? serverCommand() : [Deno.execPath(), ...words.slice(1, main + 1)],
      args: words.slice(main + 1),
    };
  });
}

/** Fetches through `port` from `localAddress`; says which source port the client had. */
function fetchFrom(
  port: number,
  localAddress: string,
): Promise<{ bytes: Uint8Array; client: string }> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    let client = "";
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    socket.setTimeout(20_000, () => socket.destroy(new Error(`no end from ${client}`)));
    socket.on("connect", () => client = `${socket.localAddress}:${socket.localPort}`);
    socket.on("data", (data: Uint8Array) => parts.push(new Uint8Array(data)));
    socket.on("error", reject);
    socket.on("close", () => resolve({ bytes: concat(parts), client }));
  });
}

/** Waits until `done()`, up to `timeoutMs` (records reach stderr in batches, in the background). */
async function waitUntil(done: () => boolean, timeoutMs = WAIT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) await delay(50);
}

/** Peers of the records with this outcome in a poetry process's log. */
function peers(server: RunningServer, outcome: RegExp): string[] {
  const pattern = new RegExp(
    `^\\S+ \\S+ \\S+ \\[INF\\] poetry\\.connection: (\\S+) ${outcome.source}`,
  );
  return server.stderr().split("\n").flatMap((line) => pattern.exec(line)?.[1] ?? []);
}

Deno.test({
  name: "haproxy: send-proxy-v2 to two poetry processes; clients' addresses, --deny, a drain",
  ignore: !linux || !haproxy,
  async fn() {
    // 20 consecutive free ports: 10000-10009 and 9100-9109 of the page.
    const ports = freePortsFor(freePortRange(20));
    const front = ports.get(10000)!;
    const cfg = await Deno.makeTempFile({ suffix: ".cfg" });
    await Deno.writeTextFile(cfg, withPorts(await Deno.readTextFile(HAPROXY_CFG), ports));
    // The page's commands, in slow mode: 50 bytes every 50 ms, half a second
    // a fetch of the ode, so a SIGTERM finds transfers in flight.
    const commands = poetryCommands(ports);
    const extra = ["--num-bytes", "50", "--delay", "0.05", "--deny", "127.0.0.66"];
    const poetry = await Promise.all(
      commands.map(({ command, args }) =>
        startServer([...args.slice(0, -1), ...extra, ...args.slice(-1)], { command })
      ),
    );
    const bytes = await Deno.readFile(`${ROOT}/${commands[0].args.at(-1)}`);
    const balancer = new Deno.Command(haproxy!, {
      args: ["-f", cfg, "-db"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let balancerLog = "";
    const reading = (async () => {
      for await (const text of balancer.stderr.pipeThrough(new TextDecoderStream())) {
        balancerLog += text;
      }
    })();
    balancer.stdout.cancel();
    try {
      // Ready when a fetch goes through and both servers have passed a check.
      const clients: string[] = [];
      for (let tries = 0;; tries++) {
        try {
          const got = await fetchFrom(front, "127.0.0.10");
          clients.push(got.client);
          if (got.bytes.length === bytes.length) break;
        } catch (err) {
          if (tries > 50) throw err;
        }
        await delay(100);
      }
      await delay(1200);

      // 1. 1,000 fetches, 100 at a time, from ten client addresses.
      const started = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: 100 }, async () => {
        while (next < 1000) {
          const i = next++;
          const got = await fetchFrom(front, `127.0.0.${10 + i % 10}`);
          assert.deepEqual(got.bytes, bytes, `fetch ${i} from ${got.client}`);
          clients.push(got.client);
        }
      }));
      const seconds = (performance.now() - started) / 1000;
      const completed = new RegExp(`got ${bytes.length} of ${bytes.length} bytes .*: completed\\.`);
      await waitUntil(() =>
        poetry.reduce((n, p) => n + peers(p, completed).length, 0) >= clients.length
      );
      const served = poetry.map((p) => peers(p, completed));
      console.log(
        `1,000 fetches through HAProxy in ${seconds.toFixed(1)} s: ` +
          `poetry1 served ${served[0].length}, poetry2 ${served[1].length}`,
      );
      // Every record names a client's own address and port, and every client has one.
      assert.deepEqual([...served[0], ...served[1]].sort(), [...clients].sort());
      for (const list of served) assert.ok(list.length >= 300, `spread: ${list.length}`);

      // 2. --deny 127.0.0.66 refuses that client, though HAProxy (127.0.0.1) connects.
      const refused = await Promise.all(
        Array.from({ length: 20 }, () => fetchFrom(front, "127.0.0.66")),
      );
      for (const got of refused) assert.equal(got.bytes.length, 0);
      const deniedCount = () =>
        poetry.reduce((n, p) => n + peers(p, /denied by --allow\/--deny/).length, 0);
      await waitUntil(() => deniedCount() >= refused.length);
      const denied = poetry.flatMap((p) => peers(p, /denied by --allow\/--deny/));
      assert.deepEqual(denied.sort(), refused.map((r) => r.client).sort());

      // 3. SIGTERM to poetry1 with transfers in flight: every one finishes,
      // new clients go to poetry2, and nobody is turned away.
      const before = poetry.map((p) => peers(p, /got /).length);
      const early = Array.from(
        { length: 40 },
        (_, i) => fetchFrom(front, `127.0.0.${20 + i % 10}`),
      );
      await delay(200);
      poetry[0].process.kill("SIGTERM");
      const late: Promise<{ bytes: Uint8Array; client: string }>[] = [];
      for (let i = 0; i < 100; i++) {
        late.push(fetchFrom(front, `127.0.0.${30 + i % 10}`));
        await delay(20);
      }
      const all = await Promise.all([...early, ...late]);
      for (const got of all) {
        assert.deepEqual(
          got.bytes,
          bytes,
          `${got.client} got the whole poem; HAProxy:\n${balancerLog}`,
        );
      }
      const status = await poetry[0].stop();
      assert.equal(status.code, 0);
      const log1 = poetry[0].stderr();
      const inFlight = Number(/draining (\d+) transfers/.exec(log1)?.[1]);
      const after1 = peers(poetry[0], /got /).length - before[0];
      const after2 = peers(poetry[1], /got /).length - before[1];
      console.log(
        `SIGTERM to poetry1 with ${inFlight} of its transfers in flight: it finished ${after1} ` +
          `in all, poetry2 served ${after2}; all ${all.length} clients got the whole poem`,
      );
      assert.ok(inFlight > 0, "transfers were in flight at the SIGTERM");
      assert.match(log1, /Shut down: \d+ completed, 0 client left, 0 timed out, 0 cut short/);
      // poetry1 took nobody after the SIGTERM: it finished what it had.
      assert.equal(after1, inFlight);
      assert.ok(after2 >= 100, `poetry2 served ${after2}, the late clients among them`);
      await delay(200);
      const down = /Server poetry\/poetry1 is DOWN, reason: [^,]*/.exec(balancerLog);
      assert.ok(down, `HAProxy marked poetry1 down:\n${balancerLog}`);
      console.log(`HAProxy: ${down[0]}`);
    } finally {
      for (const p of poetry) await p.stop();
      try {
        balancer.kill("SIGTERM");
      } catch {
        // Exited already.
      }
      await balancer.status;
      await reading;
      await Deno.remove(cfg);
    }
  },
});
