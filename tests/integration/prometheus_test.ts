// A real Prometheus (the Debian package) scrapes poetry's admin endpoint
// every second while clients fetch; its HTTP API must then report the
// count of connections the clients made.

import assert from "node:assert/strict";
import {
  adminUrl,
  delay,
  fetchBytes,
  findProgram,
  freePort,
  makePoems,
  startServer,
} from "../helpers.ts";

const prometheus = findProgram("prometheus");
const CLIENTS = 25;

/** A query's value for each series, keyed by the given label. */
async function query(base: string, promql: string, by: string): Promise<Map<string, number>> {
  const response = await fetch(`${base}api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = await response.json();
  assert.equal(body.status, "success", JSON.stringify(body));
  return new Map(
    body.data.result.map((r: { metric: Record<string, string>; value: [number, string] }) => [
      r.metric[by] ?? "",
      Number(r.value[1]),
    ]),
  );
}

Deno.test({
  name: `a real Prometheus scrapes poetry and counts its connections${
    prometheus ? "" : " (skipped: prometheus is not installed)"
  }`,
  ignore: !prometheus,
  async fn() {
    const poems = await makePoems({
      "scraped.txt": "Scraped every second,\ncounted all the same.\n",
    });
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--admin",
      "127.0.0.1:0",
      poems.path("scraped.txt"),
    ]);
    const storage = await Deno.makeTempDir({ prefix: "poetry-prometheus-" });
    let process: Deno.ChildProcess | undefined;
    try {
      const target = new URL(await adminUrl(server)).host;
      await Deno.writeTextFile(
        `${storage}/prometheus.yml`,
        [
          "global:",
          "  scrape_interval: 1s",
          "  evaluation_interval: 1s",
          "scrape_configs:",
          "  - job_name: poetry",
          "    static_configs:",
          `      - targets: ["${target}"]`,
          "",
        ].join("\n"),
      );
      const port = freePort();
      const base = `http://127.0.0.1:${port}/`;
      process = new Deno.Command(prometheus!, {
        args: [
          `--config.file=${storage}/prometheus.yml`,
          `--storage.tsdb.path=${storage}/data`,
          `--web.listen-address=127.0.0.1:${port}`,
          "--log.level=warn",
        ],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let logs = "";
      const collecting = (async () => {
        for await (const text of process.stderr.pipeThrough(new TextDecoderStream())) logs += text;
      })();
      const deadline = Date.now() + 20_000;
      const until = async <T>(what: string, probe: () => Promise<T | undefined>): Promise<T> => {
        while (Date.now() < deadline) {
          try {
            const value = await probe();
            if (value !== undefined) return value;
          } catch {
            // Not up yet.
          }
          await delay(200);
        }
        throw new Error(`prometheus: ${what} never happened\n${logs}`);
      };
      await until("ready", async () => (await fetch(`${base}-/ready`)).status === 200 || undefined);
      // Target discovery holds the first scrape back for a few seconds; the
      // clients start once scraping has, so scrapes happen while they fetch.
      await until("a first scrape", async () => {
        const up = await query(base, 'up{job="poetry"}', "job");
        return up.get("poetry") === 1 || undefined;
      });
      const started = performance.now();
      // Clients fetch while Prometheus scrapes.
      for (let i = 0; i < CLIENTS; i++) {
        await fetchBytes(server.addresses[0]);
        await delay(40);
      }
      await server.waitForLines(/: completed\./, CLIENTS);
      const byOutcome = await until("a scrape with every connection", async () => {
        const counts = await query(base, 'poetry_connections_total{job="poetry"}', "outcome");
        return counts.get("completed") === CLIENTS ? counts : undefined;
      });
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      assert.equal(byOutcome.get("client left"), 0);
      const durations = await query(base, "poetry_connection_duration_seconds_count", "poem");
      assert.equal(durations.get(poems.path("scraped.txt")), CLIENTS);
      const scrapes = await query(base, 'count_over_time(up{job="poetry"}[1m])', "job");
      console.log(
        `prometheus saw ${byOutcome.get("completed")} completed connections ${seconds} s after ` +
          `the first fetch; ${scrapes.get("poetry")} scrapes so far`,
      );
      process.kill("SIGTERM");
      await process.status;
      await collecting;
      process = undefined;
    } finally {
      if (process) {
        process.kill("SIGKILL");
        await process.status;
      }
      await server.stop();
      await Deno.remove(storage, { recursive: true });
      await poems.cleanup();
    }
  },
});
