/**
 * Running as a service: signals drive graceful shutdown and reload, so an
 * accidental Ctrl-C drains instead of cutting clients off.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { PoetryServer, ShutdownSummary } from "./server.ts";

const log = getLogger(["poetry", "service"]);

/**
 * What {@linkcode runAsService} listens for besides signals.
 *
 * @example
 * ```ts
 * import type { ServiceOptions } from "./service.ts";
 * const options: ServiceOptions = { watch: true };
 * ```
 */
export interface ServiceOptions {
  /** Re-read a poem when its file changes. @default {false} */
  watch?: boolean;
}

/**
 * Serves until SIGINT or SIGTERM (SIGINT or SIGBREAK on Windows), then drains
 * and resolves with the summary; a second signal exits at once, with code 1.
 * SIGHUP re-reads every poem.
 *
 * @example
 * ```ts
 * import { serve } from "./server.ts";
 * import { runAsService } from "./service.ts";
 * const server = await serve(["poems/"]);
 * const summary = await runAsService(server);
 * console.error(summary.served);
 * ```
 */
export function runAsService(
  server: PoetryServer,
  options: ServiceOptions = {},
): Promise<ShutdownSummary> {
  const windows = Deno.build.os === "windows";
  const stopSignals: Deno.Signal[] = windows ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"];
  const { promise, resolve } = Promise.withResolvers<ShutdownSummary>();
  let stopping = false;
  const onStop = () => {
    if (stopping) {
      log.warning("Second signal: exiting without waiting for transfers.");
      Deno.exit(1);
    }
    stopping = true;
    server.shutdown().then(resolve);
  };
  for (const signal of stopSignals) Deno.addSignalListener(signal, onStop);
  const reload = () => {
    if (!stopping) server.reload();
  };
  if (!windows) Deno.addSignalListener("SIGHUP", reload);
  if (options.watch) watchPoems(server, reload, promise);
  // Whatever goes wrong inside one transfer must not end the server.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("Unexpected error, server keeps running: {error}", { error: String(event.reason) });
  });
  return promise.finally(() => {
    for (const signal of stopSignals) Deno.removeSignalListener(signal, onStop);
    if (!windows) Deno.removeSignalListener("SIGHUP", reload);
  });
}

async function watchPoems(server: PoetryServer, reload: () => void, stopped: Promise<unknown>) {
  const watcher = Deno.watchFs(server.listeners.map((l) => l.poem.path), { recursive: false });
  stopped.finally(() => watcher.close());
  let timer: ReturnType<typeof setTimeout> | undefined;
  for await (const _event of watcher) {
    // Editors write a file in several steps; reload once they are done.
    clearTimeout(timer);
    timer = setTimeout(reload, 100);
  }
  clearTimeout(timer);
}
