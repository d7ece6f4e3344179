/**
 * Running as a service: signals drive graceful shutdown and reload, so an
 * accidental Ctrl-C drains instead of cutting clients off.
 *
 * @module
 */

import { basename, dirname, join, resolve as resolvePath } from "node:path";
import { getLogger } from "@logtape/logtape";
import type { Poem } from "./poem.ts";
import type { PoetryServer, ShutdownSummary } from "./server.ts";
import { logStats, ServerStats } from "./stats.ts";

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
  /**
   * The totals for the stats record that SIGUSR1 (Unix) and `statsInterval`
   * write; give the server's observer. Without it the record's bytes sent
   * count only the transfers in flight.
   */
  stats?: ServerStats;
  /** Seconds between stats records; 0 is none. @default {0} */
  statsInterval?: number;
  /** What SIGHUP does (`--config` re-reads its file too). @default {re-reads the poems} */
  reload?: () => Promise<unknown>;
}

/**
 * A stop signal sooner than this after the first is the same Ctrl-C: under
 * `deno task` the terminal sends SIGINT to the whole process group and the
 * task runner forwards its own copy, so one key press arrives twice.
 */
const SAME_STOP_MS = 1000;

/** Editors write a file in several steps; re-read once they are done. */
const WATCH_SETTLE_MS = 100;

/**
 * Serves until SIGINT or SIGTERM (SIGINT or SIGBREAK on Windows), then drains
 * and resolves with the summary. Another stop signal a second or more after
 * the first exits at once, with code 1; one sooner is taken as the same
 * Ctrl-C. SIGHUP re-reads every poem. SIGUSR2 (and SIGUSR1) writes a stats record to the
 * log, and so does every `statsInterval` seconds.
 *
 * @example
 * ```ts
 * import { serve } from "./server.ts";
 * import { runAsService } from "./service.ts";
 * const server = await serve(["poems/"]);
 * const summary = await runAsService(server);
 * console.error(summary.completed);
 * ```
 */
export function runAsService(
  server: PoetryServer,
  options: ServiceOptions = {},
): Promise<ShutdownSummary> {
  const windows = Deno.build.os === "windows";
  const stopSignals: Deno.Signal[] = windows ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"];
  const { promise, resolve } = Promise.withResolvers<ShutdownSummary>();
  let firstStop: number | undefined;
  let drained = false;
  const onStop = (signal: Deno.Signal) => {
    // Drained: the process is on its way out with its summary, and a signal
    // now must neither kill it (exit 143) nor change its exit code.
    if (drained) return;
    const now = performance.now();
    if (firstStop === undefined) {
      firstStop = now;
      log.info("Got {signal}: draining; press Ctrl-C again to stop at once.", { signal });
      server.shutdown().then(resolve);
    } else if (now - firstStop < SAME_STOP_MS) {
      log.debug("Got {signal} {ms} ms after the first: the same Ctrl-C, still draining.", {
        signal,
        ms: Math.round(now - firstStop),
      });
    } else {
      log.warning("Second signal: exiting without waiting for transfers.");
      Deno.exit(1);
    }
  };
  for (const signal of stopSignals) Deno.addSignalListener(signal, () => onStop(signal));
  const reload = () => {
    if (firstStop === undefined && !drained) (options.reload ?? (() => server.reload()))();
  };
  if (!windows) Deno.addSignalListener("SIGHUP", reload);
  // SIGUSR1's default action ends the process: endlessh's users expect it
  // to print totals instead, and so does this. Deno 2.9.2 and later also
  // open the V8 inspector on 127.0.0.1:9229 at SIGUSR1, which nothing can
  // turn off (denoland/deno#35738), so SIGUSR2 writes the same record
  // without that; the README says to prefer it.
  const stats = options.stats ?? new ServerStats();
  const writeStats = () => {
    if (!drained) logStats(server, stats);
  };
  const statsSignals: Deno.Signal[] = windows ? [] : ["SIGUSR1", "SIGUSR2"];
  for (const signal of statsSignals) Deno.addSignalListener(signal, writeStats);
  const interval = options.statsInterval
    ? setInterval(writeStats, options.statsInterval * 1000)
    : undefined;
  if (options.watch) watchPoems(server, promise);
  // Whatever goes wrong inside one transfer must not end the server.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("Unexpected error, server keeps running: {error}", { error: String(event.reason) });
  });
  // The handlers stay installed, doing nothing: removed, a signal's default
  // action would end the process between its summary and its exit.
  return promise.finally(() => {
    drained = true;
    clearInterval(interval);
  });
}

// Watches the directories that hold the poems, not the poem files: watchFs
// follows an inode, and an editor that saves by renaming a new file over the
// poem (vim, `sed -i`, `mv new poem`) would leave a file watch on the old,
// unlinked inode, deaf from then on. A directory's entries are matched by path.
// The watch starts synchronously, before the Serving lines: a change made as
// soon as they are read must be seen.
function watchPoems(server: PoetryServer, stopped: Promise<unknown>): void {
  const poemAt = new Map<string, Poem>();
  const watched = new Set<string>();
  for (const { poem } of server.listeners) {
    try {
      const dir = Deno.realPathSync(dirname(poem.path));
      watched.add(dir);
      poemAt.set(join(dir, basename(poem.path)), poem);
    } catch (err) {
      // E.g. --allow-read names the file alone: the file itself is all we may watch.
      log.warning(
        "Cannot watch the directory of {poem} ({error}); a save by rename ends its watch.",
        {
          poem: poem.path,
          error: err instanceof Error ? err.message : String(err),
        },
      );
      watched.add(resolvePath(poem.path));
      poemAt.set(resolvePath(poem.path), poem);
    }
  }
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs([...watched], { recursive: false });
  } catch (err) {
    log.error("Cannot watch the poems; SIGHUP still reloads: {error}", {
      error: err instanceof Error ? err.message : String(err),
    });
    return;
  }
  stopped.finally(() => watcher.close());
  reloadOnChange(server, watcher, poemAt);
}

async function reloadOnChange(
  server: PoetryServer,
  watcher: Deno.FsWatcher,
  poemAt: Map<string, Poem>,
): Promise<void> {
  // One timer per poem: a burst of writes to one poem neither delays nor
  // re-reads the others.
  const timers = new Map<Poem, ReturnType<typeof setTimeout>>();
  try {
    for await (const event of watcher) {
      // Reading a file must never count as a change, or each re-read would
      // trigger the next; a write is reported as "modify" anyway.
      if (event.kind === "access") continue;
      for (const path of event.paths) {
        const poem = poemAt.get(resolvePath(path));
        if (!poem) continue;
        clearTimeout(timers.get(poem));
        timers.set(
          poem,
          setTimeout(() => {
            timers.delete(poem);
            server.reloadPoem(poem);
          }, WATCH_SETTLE_MS),
        );
      }
    }
  } catch (err) {
    log.error("Stopped watching the poems; SIGHUP still reloads: {error}", {
      error: err instanceof Error ? err.message : String(err),
    });
  } finally {
    for (const timer of timers.values()) clearTimeout(timer);
  }
}
