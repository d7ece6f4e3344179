/**
 * What runs inside each extra worker of `--workers N`: a poetry server of
 * its own, on the addresses the main thread bound (`SO_REUSEPORT`), loading
 * the poems itself. It answers {@linkcode WorkerPool}'s requests; its log
 * records go to the main thread, which writes them.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { getLogger } from "@logtape/logtape";
import { statusReport } from "../observe/status.ts";
import { reloadConfig } from "../service/config.ts";
import { PoetryError } from "../base/errors.ts";
import { flushLogs, setupLogging } from "../base/log.ts";
import { PoetryMetrics } from "../observe/metrics.ts";
import { type PoetryServer, serve } from "../server/server.ts";
import { ServerStats } from "../observe/stats.ts";
import type { FromWorker, ToWorker, WorkerInit } from "./workers.ts";

const log = getLogger(["poetry", "worker"]);

/** How long the last records may take to reach the main thread at shutdown. */
const LOG_FLUSH_MS = 1000;

let server: PoetryServer | undefined;
let stats: ServerStats | undefined;
let metrics: PoetryMetrics | undefined;
let init: WorkerInit | undefined;
let stopping: Promise<unknown> | undefined;

const post = (message: FromWorker, transfer: Transferable[] = []) =>
  self.postMessage(message, transfer);

// Whatever goes wrong inside one transfer must not end the worker (the main
// thread's runAsService does the same for its own).
self.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  log.error("Unexpected error, worker keeps running: {error}", { error: String(event.reason) });
});
// And an exception thrown in a callback: unhandled, Deno would print its
// own report with a stack trace to stderr (around the log) and end the
// worker, taking the slots it holds in the shared caps with it.
self.addEventListener("error", (event) => {
  event.preventDefault();
  log.error("Unexpected error, worker keeps running: {error}", { error: String(event.error) });
});

self.onmessage = async ({ data }: MessageEvent<ToWorker>) => {
  if (data.type === "start") return await start(data.init);
  const { id, what } = data;
  try {
    post({ type: "reply", id, value: await answer(what, data.arg) });
  } catch (err) {
    post({ type: "reply", id, error: err instanceof Error ? err.message : String(err) });
  }
};

// Loaded: the main thread may bind its listeners now (see WorkerPool.spawn).
post({ type: "booted" });

async function start(given: WorkerInit): Promise<void> {
  init = given;
  setupLogging({
    ...given.log,
    // Each batch is a fresh buffer of its own (the sink encodes one per
    // write), so it is handed over, not copied.
    worker: { post: (bytes) => post({ type: "log", bytes }, [bytes.buffer as ArrayBuffer]) },
  });
  stats = new ServerStats();
  metrics = given.metrics ? new PoetryMetrics(stats) : undefined;
  try {
    server = await serve(given.poems, {
      ...given.options,
      ports: given.ports,
      caps: given.caps,
      reusePort: true,
      observer: metrics ?? stats,
    });
    post({ type: "ready" });
  } catch (err) {
    await flushLogs(LOG_FLUSH_MS);
    post({
      type: "failed",
      message: err instanceof Error ? err.message : String(err),
      hint: err instanceof PoetryError ? err.hint : undefined,
      exitCode: err instanceof PoetryError ? err.exitCode : 1,
    });
  }
}

async function answer(what: string, arg: unknown): Promise<unknown> {
  const running = server!;
  switch (what) {
    case "stop": {
      // The count first, for the main thread's "draining N" record; the
      // summary comes with "summary".
      const inFlight = running.listeners.reduce((n, l) => n + l.activeCount, 0);
      stopping = running.shutdown(arg as number);
      return inFlight;
    }
    case "summary": {
      const summary = await (stopping ?? running.shutdown());
      // Every record of this worker reaches the main thread before its summary.
      await flushLogs(LOG_FLUSH_MS);
      return summary;
    }
    case "reload": {
      // The outcome goes back: the main thread speaks for the workers, and
      // says so when one could not read what it could.
      const before = running.reloads.failed;
      if (init?.config) await reloadConfig(running, init.config.path, init.config.commandLine);
      else await running.reload();
      return running.reloads.failed - before;
    }
    case "reloadPoem":
      return (await running.reloadPoem(running.listeners[arg as number].poem)) === "failed" ? 1 : 0;
    case "snapshot":
      return stats!.snapshot(running);
    case "families":
      return metrics?.families(running) ?? [];
    case "status":
      return metrics ? statusReport(running, metrics) : undefined;
    default:
      throw new Error(`unknown request ${what}`);
  }
}
