// The status page in a real headless Chromium (the Debian package), driven
// over the DevTools protocol: while slow transfers run, the rendered DOM
// must list each of them with its progress and its faults (issue 20), and
// each listener with its faults; a screenshot is saved as an
// artifact (.artifacts/status-page.png, or $POETRY_ARTIFACTS).

import assert from "node:assert/strict";
import { adminUrl, delay, findProgram, readTimed, ROOT, startServer } from "../helpers.ts";

const chromium = findProgram("chromium", "chromium-browser", "google-chrome");
/** Sample poems, and how many slow clients each gets. */
const POEMS = { "poems/the-reactor-at-night.txt": 3, "poems/ode-to-the-socket.txt": 2 };
const CLIENTS = Object.values(POEMS).reduce((a, b) => a + b);

/** The least of the DevTools protocol: commands over the browser's websocket. */
class DevTools {
  #socket: WebSocket;
  #next = 1;
  #waiting = new Map<number, PromiseWithResolvers<Record<string, unknown>>>();

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      const waiter = this.#waiting.get(message.id);
      if (!waiter) return;
      this.#waiting.delete(message.id);
      if (message.error) waiter.reject(new Error(JSON.stringify(message.error)));
      else waiter.resolve(message.result);
    };
  }

  static async connect(url: string): Promise<DevTools> {
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    return new DevTools(socket);
  }

  // deno-lint-ignore no-explicit-any
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<any> {
    const id = this.#next++;
    const waiter = Promise.withResolvers<Record<string, unknown>>();
    this.#waiting.set(id, waiter);
    this.#socket.send(JSON.stringify({ id, method, params, sessionId }));
    return waiter.promise;
  }

  close(): void {
    this.#socket.close();
  }
}

/** Reads the browser's stderr until it says where its DevTools websocket is. */
async function devToolsUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => reader.cancel(), 20_000);
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`chromium exited or said nothing useful:\n${text}`);
      text += value;
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (match) {
        // Keep reading so the browser never blocks on a full pipe.
        (async () => {
          while (!(await reader.read()).done) { /* discard */ }
        })().catch(() => {});
        return match[1];
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: `the status page in headless Chromium lists the slow transfers in flight${
    chromium ? "" : " (skipped: chromium is not installed)"
  }`,
  ignore: !chromium,
  async fn() {
    const sizes = Object.keys(POEMS).map((path) => Deno.statSync(`${ROOT}/${path}`).size);
    const server = await startServer([
      "--iface",
      "127.0.0.1",
      "--admin",
      "127.0.0.1:0",
      "--num-bytes",
      "2",
      "--delay",
      "0.05",
      "--drain-timeout",
      "0",
      // --seed 3 stalls the second client of the first poem and the first
      // of the second (in accept order): two transfers with a fault.
      "--fault",
      "stall-after=40,probability=0.5",
      "--seed",
      "3",
      ...Object.keys(POEMS),
    ], { listeners: 2 });
    const profile = await Deno.makeTempDir({ prefix: "poetry-chromium-" });
    let browser: Deno.ChildProcess | undefined;
    let devtools: DevTools | undefined;
    const readers = Object.values(POEMS).flatMap((count, i) =>
      Array.from({ length: count }, () => readTimed(server.addresses[i]))
    );
    try {
      const page = await adminUrl(server);
      browser = new Deno.Command(chromium!, {
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          `--user-data-dir=${profile}`,
          "--remote-debugging-address=127.0.0.1",
          "--remote-debugging-port=0",
          "--window-size=1100,700",
          "about:blank",
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      devtools = await DevTools.connect(await devToolsUrl(browser.stderr));
      const { targetId } = await devtools.send("Target.createTarget", { url: page });
      const { sessionId } = await devtools.send("Target.attachToTarget", {
        targetId,
        flatten: true,
      });
      await devtools.send("Emulation.setDeviceMetricsOverride", {
        width: 1100,
        height: 560,
        deviceScaleFactor: 1,
        mobile: false,
      }, sessionId);
      type Row = { peer: string; sent: number; total: number; text: string; faults: string };
      let rows: Row[] = [];
      let listeners: string[] = [];
      let totals: Record<string, string> = {};
      let state = "";
      let rate = "";
      const deadline = Date.now() + 30_000; // only a page that never draws them reaches it
      // Wait until the page has drawn every client, partway through.
      while (Date.now() < deadline) {
        const { result } = await devtools.send("Runtime.evaluate", {
          expression: `JSON.stringify({
            state: document.getElementById("state")?.textContent,
            rate: document.querySelector('[data-total="send rate"] b')?.textContent,
            listeners: [...document.querySelectorAll(".listener .socket")].map((e) => e.textContent),
            totals: Object.fromEntries([...document.querySelectorAll("#totals [data-total]")]
              .map((e) => [e.dataset.total, e.querySelector("b").textContent])),
            rows: [...document.querySelectorAll(".transfer")].map((r) => ({
              peer: r.dataset.peer, sent: +r.dataset.sent, total: +r.dataset.total,
              text: r.textContent, faults: r.dataset.faults,
            })),
          })`,
          returnByValue: true,
        }, sessionId);
        ({ rows, listeners, state, rate, totals } = JSON.parse(result.value));
        // Rates need two polls.
        if (rows.length === CLIENTS && rows.every((r) => r.sent > 10) && rate !== "-") break;
        await delay(100);
      }
      assert.equal(rows.length, CLIENTS, `${state}: ${JSON.stringify(rows)}`);
      // Five clients at 2 bytes per 0.05 s: 200 B/s, give or take a poll.
      assert.match(rate, /^\d+ B\/s$/, rate);
      for (const [i, path] of Object.keys(POEMS).entries()) {
        assert.match(listeners[i], new RegExp(path.replaceAll(".", "\\.")));
        assert.match(listeners[i], /slow: 2 bytes every 0\.05 s/);
        const port = server.addresses[i].port;
        assert.match(listeners[i], new RegExp(`listening on 127\\.0\\.0\\.1:${port}`));
        assert.match(listeners[i], new RegExp(`${POEMS[path as keyof typeof POEMS]} in flight`));
        // Each listener's faults, its seed, and how many of its clients got them.
        assert.match(listeners[i], /faults: stall-after=40,probability=0\.5 \(--seed 3\)/);
        assert.match(listeners[i], /applied: 1 stall-after/);
      }
      for (const row of rows) {
        assert.match(row.peer, /^127\.0\.0\.1:\d+$/);
        assert.ok(sizes.includes(row.total), JSON.stringify(row));
        assert.ok(row.sent > 0 && row.sent < row.total, JSON.stringify(row));
        assert.match(row.text, new RegExp(`${row.peer}\\d+ of \\d+ B, \\d+\\.\\d s`));
      }
      // Each client's own faults: the two stalled at 40 bytes say so, the others have none.
      const stalled = rows.filter((r) => r.faults === "stall-after=40");
      assert.equal(stalled.length, 2, JSON.stringify(rows));
      for (const row of stalled) {
        assert.equal(row.sent, 40, JSON.stringify(row));
        assert.match(row.text, /faults: stall-after=40$/);
      }
      assert.ok(rows.filter((r) => r.faults === "").every((r) => !/faults/.test(r.text)));
      // The totals, in the log's words: faulted is there, with the faults applied.
      assert.equal(totals["faulted"], "0", JSON.stringify(totals));
      assert.equal(totals["stall-after applied"], "2", JSON.stringify(totals));
      const shot = await devtools.send("Page.captureScreenshot", { format: "png" }, sessionId);
      const dir = Deno.env.get("POETRY_ARTIFACTS") ?? `${ROOT}/.artifacts`;
      await Deno.mkdir(dir, { recursive: true });
      const png = Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0));
      await Deno.writeFile(`${dir}/status-page.png`, png);
      console.log(
        `chromium drew ${rows.length} transfers at ${rate} (${
          rows.map((r) => r.sent).join(", ")
        } bytes); ` +
          `screenshot: ${dir}/status-page.png, ${png.length} bytes`,
      );
    } finally {
      devtools?.close();
      if (browser) {
        browser.kill("SIGKILL");
        await browser.status;
      }
      await server.stop(); // --drain-timeout 0 cuts the clients short
      await Promise.allSettled(readers);
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    }
  },
});
