/**
 * Running as a service: signals drive graceful shutdown and reload, so an
 * accidental Ctrl-C drains instead of cutting clients off.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { flushLogs } from "../base/log.ts";
import type { Poem } from "../core/poem.ts";
import type { PoemListener } from "../core/listener.ts";
import type { ReloadResult, ShutdownSummary } from "../server/summary.ts";
import { logStats, ServerStats, type StatsSnapshot } from "../observe/stats.ts";
import { watchPoems } from "./watch.ts";

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
   * The totals for the stats record that SIGUSR2 (Unix) and `statsInterval`
   * write; give the server's observer. Without it the record's bytes sent
   * count only the transfers in flight.
   */
  stats?: ServerStats;
  /** Seconds between stats records; 0 is none. @default {0} */
  statsInterval?: number;
  /**
   * Signals held since start-up by {@linkcode holdReloadSignals}: released
   * once this service's own handlers are in, each one that came honoured once.
   */
  // Spelt out, not HeldSignals: lib/mod.ts does not export that type yet.
  held?: { release(): Deno.Signal[] } | { release(): Deno.Signal[] }[];
}

/**
 * What {@linkcode runAsService} drives: a server (lib/server/server.ts), or a
 * group of them that looks like one (`--workers`; lib/scale/group.ts), as
 * Twisted's `MultiService` starts and stops its children as one.
 *
 * @example
 * ```ts
 * import type { Service } from "./service.ts";
 * import { serve } from "../server/server.ts";
 * const service: Service = await serve(["poems/"], { iface: "127.0.0.1" });
 * await service.shutdown(0);
 * ```
 */
export interface Service {
  /** The listeners, whose poems `--watch` follows. */
  readonly listeners: readonly PoemListener[];
  /** Seconds a drain lets transfers finish. */
  readonly drainTimeout: number;
  /** Stops accepting, drains, and resolves with the summary. */
  shutdown(drainTimeout?: number): Promise<ShutdownSummary>;
  /**
   * Re-reads every poem (and whatever else SIGHUP re-reads: `--config`).
   * @returns what it did, for the record SIGHUP writes: poems re-read,
   * changed and failed, and with `--config` the listeners reconfigured
   * (`false`: the file could not be re-read).
   */
  // Spelt out, not ReloadResult: lib/mod.ts does not export that type.
  reload(): Promise<
    { poems: number; changed: number; failed: number; reconfigured?: number | false }
  >;
  /** Re-reads one poem (`--watch`). */
  reloadPoem(poem: Poem): Promise<unknown>;
  /** The POEM arguments that named a directory (`--watch` tells of a file new in one). */
  readonly directories?: readonly string[];
  /**
   * The totals for a stats record. Without it, {@linkcode ServiceOptions.stats}
   * counts this service's listeners.
   */
  snapshot?(): Promise<StatsSnapshot>;
}

/**
 * SIGHUP, SIGUSR1 and SIGUSR2 that arrive while the server starts, kept from
 * ending the process; see {@linkcode holdReloadSignals}.
 */
export interface HeldSignals {
  /** Stops holding. @returns the signals that came meanwhile, each once. */
  release(): Deno.Signal[];
}

/**
 * Until a handler is in, SIGHUP, SIGUSR1 and SIGUSR2 end the process (exit
 * 129, 138, 140): a supervisor or logrotate that sends SIGHUP while the poems
 * are still loading would kill the server. Call this first thing and give the
 * result to {@linkcode runAsService}, which reloads once (or writes one stats
 * record) for what came meanwhile. Does nothing on Windows.
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { holdReloadSignals, runAsService } from "./service.ts";
 * const held = holdReloadSignals();
 * const server = await serve(["poems/"]);
 * await runAsService(server, { held });
 * ```
 */
export function holdReloadSignals(): HeldSignals {
  return holdSignals(["SIGHUP", "SIGUSR1", "SIGUSR2"]);
}

/**
 * Holds SIGINT and SIGTERM from now until {@linkcode runAsService} is in,
 * which then drains as for a stop that came after: for the moment between
 * the first listener serving and the service's handlers (`--workers`
 * starting), when the default action would kill transfers in flight. A
 * second one a second or more after the first exits at once (code 1), as
 * it does once serving. Does nothing on Windows.
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { holdStopSignals, runAsService } from "./service.ts";
 * const held = holdStopSignals();
 * const server = await serve(["poems/"]);
 * await runAsService(server, { held: [held] });
 * ```
 */
export function holdStopSignals(): HeldSignals {
  // As once serving: another stop a second or more after the first is
  // "stop at once", not one more to hold.
  let first: number | undefined;
  let exiting = false;
  return holdSignals(["SIGINT", "SIGTERM"], () => {
    const now = performance.now();
    if (first === undefined) first = now;
    else if (now - first >= SAME_STOP_MS && !exiting) {
      // The second Ctrl-C arrives twice too (see SAME_STOP_MS): say it once.
      exiting = true;
      log.warning("Second signal while starting: exiting without waiting.");
      flushLogs(300).finally(() => Deno.exit(1));
    }
  });
}

function holdSignals(signals: Deno.Signal[], onEach?: () => void): HeldSignals {
  if (Deno.build.os === "windows") return { release: () => [] };
  const seen = new Set<Deno.Signal>();
  const holds = signals.map((signal) => {
    const hold = () => {
      seen.add(signal);
      onEach?.();
    };
    Deno.addSignalListener(signal, hold);
    return [signal, hold] as const;
  });
  return {
    release() {
      for (const [signal, hold] of holds.splice(0)) Deno.removeSignalListener(signal, hold);
      return [...seen];
    },
  };
}

/**
 * Since Deno 2.9.2 (denoland/deno#35738), `deno run` answers SIGUSR1 as Node
 * does: it opens the V8 inspector on 127.0.0.1:9229, without authentication,
 * so any local user could connect and run code as the server. Nothing turns
 * that handler off, but `node:inspector`'s `close()` (no permission needed)
 * stops the inspector server and resets its connections. Deno's handler and
 * ours wake on the same signal in either order, so close now and then again,
 * more and more sparsely, until Deno's has surely run: the inspector stays
 * open a few milliseconds (tens on a busy machine: Deno's handler runs at
 * most two event-loop turns after ours, and these closes span ten). A
 * compiled binary installs no such handler (close() is then a no-op).
 * docs/observing.md says this for operators, with the measurements.
 */
async function shutInspector(): Promise<void> {
  const inspector = nodeInspector();
  inspector.close();
  for (const ms of INSPECTOR_CLOSE_AFTER_MS) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    inspector.close();
  }
  log.warning(
    "Got SIGUSR1, on which Deno opens its V8 inspector on 127.0.0.1:9229 for any local user " +
      "to run code as this server: closed it, if open. Send SIGUSR2 for the stats record instead.",
  );
}

/**
 * `node:inspector`, loaded at the first SIGUSR1 rather than with the program:
 * it adds Node modules to every start-up (issue 19; docs/benchmark.md,
 * "Start-up"). Loading it first delays the first close() by about a
 * millisecond, within the repeated closes' window.
 */
function nodeInspector(): typeof import("node:inspector") {
  return inspectorModule ??= process.getBuiltinModule(
    "node:inspector",
  ) as typeof import("node:inspector");
}
let inspectorModule: typeof import("node:inspector") | undefined;

/** The pauses between {@linkcode shutInspector}'s closes: 256 ms in all. */
const INSPECTOR_CLOSE_AFTER_MS = [0, 1, 1, 2, 4, 8, 16, 32, 64, 128];

/**
 * A stop signal sooner than this after the first is the same Ctrl-C: under
 * `deno task` the terminal sends SIGINT to the whole process group and the
 * task runner forwards its own copy, so one key press arrives twice.
 */
const SAME_STOP_MS = 1000;

/**
 * Serves until SIGINT or SIGTERM (SIGINT or SIGBREAK on Windows), then drains
 * and resolves with the summary. Another stop signal a second or more after
 * the first exits at once, with code 1; one sooner is taken as the same
 * Ctrl-C. SIGHUP re-reads every poem. SIGUSR2 writes a stats record to the
 * log, and so does every `statsInterval` seconds; SIGUSR1 does too, and
 * closes the V8 inspector that Deno opens on it.
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { runAsService } from "./service.ts";
 * const server = await serve(["poems/"]);
 * const summary = await runAsService(server);
 * console.error(summary.completed);
 * ```
 */
export function runAsService(
  server: Service,
  options: ServiceOptions = {},
): Promise<ShutdownSummary> {
  const windows = Deno.build.os === "windows";
  const stopSignals: Deno.Signal[] = windows ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"];
  const { promise, resolve, reject } = Promise.withResolvers<ShutdownSummary>();
  let firstStop: number | undefined;
  let drained = false;
  let exiting = false;
  const onStop = (signal: Deno.Signal) => {
    // Drained: the process is on its way out with its summary, and a signal
    // now must neither kill it (exit 143) nor change its exit code. Exiting:
    // the second Ctrl-C's own copy (see SAME_STOP_MS) has nothing to add.
    if (drained || exiting) return;
    const now = performance.now();
    if (firstStop === undefined) {
      firstStop = now;
      log.info("Got {signal}: draining; press Ctrl-C again to stop at once.", { signal });
      server.shutdown(server.drainTimeout).then(resolve, reject);
    } else if (now - firstStop < SAME_STOP_MS) {
      log.debug("Got {signal} {ms} ms after the first: the same Ctrl-C, still draining.", {
        signal,
        ms: Math.round(now - firstStop),
      });
    } else {
      exiting = true;
      log.warning("Second signal: exiting without waiting for transfers.");
      // The records queued so far (and this one) go out first, unless stderr
      // is stuck: the wait is bounded, since this exit is meant to be now.
      flushLogs(300).finally(() => Deno.exit(1));
    }
  };
  for (const signal of stopSignals) Deno.addSignalListener(signal, () => onStop(signal));
  // One reload at a time, and one more for all the SIGHUPs that came during
  // it (as Poem.reload coalesces): each writes one record of what it did, so
  // a `systemctl reload` that changed nothing still leaves a trace.
  let reloading = false;
  let again = false;
  const reload = async () => {
    if (firstStop !== undefined || drained) return;
    if (reloading) return void (again = true);
    reloading = true;
    try {
      do {
        again = false;
        const result = await server.reload();
        if (!drained) {
          log.info("SIGHUP reload: {summary}.", { summary: describeReload(result), ...result });
        }
      } while (again && firstStop === undefined && !drained);
    } catch (err) {
      log.error("Reload failed: {error}", {
        error: err instanceof Error ? err.message : String(err),
      });
    } finally {
      reloading = false;
    }
  };
  if (!windows) Deno.addSignalListener("SIGHUP", reload);
  // SIGUSR2 writes a stats record. So does SIGUSR1, whose default action
  // would end the process (endlessh's users expect totals from it), but on
  // it Deno 2.9.2+ also opens the V8 inspector; see shutInspector.
  const stats = options.stats ?? new ServerStats();
  const writeStats = async () => {
    if (drained) return;
    const snapshot = server.snapshot ? await server.snapshot() : stats.snapshot(server);
    if (!drained) logStats(snapshot);
  };
  if (!windows) {
    Deno.addSignalListener("SIGUSR2", writeStats);
    Deno.addSignalListener("SIGUSR1", () => {
      shutInspector();
      writeStats();
    });
  }
  const interval = options.statsInterval
    ? setInterval(writeStats, options.statsInterval * 1000)
    : undefined;
  if (options.watch) watchPoems(server, promise);
  // Released only now that the handlers above are in: a signal with no
  // listener at all would take its default, fatal action.
  const holds = options.held === undefined ? [] : [options.held].flat();
  for (const signal of holds.flatMap((held) => held.release())) {
    if (signal === "SIGINT" || signal === "SIGTERM") {
      onStop(signal);
      continue;
    }
    log.info("Got {signal} while starting: {action} now.", {
      signal,
      action: signal === "SIGHUP" ? "reloading" : "writing the stats",
    });
    if (signal === "SIGHUP") reload();
    else writeStats();
    if (signal === "SIGUSR1") shutInspector();
  }
  // Whatever goes wrong inside one transfer must not end the server.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("Unexpected error, server keeps running: {error}", { error: String(event.reason) });
  });
  // And an exception thrown in a callback: unhandled, Deno would print its
  // own report with a stack trace to stderr, around the log, and exit.
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    log.error("Unexpected error, server keeps running: {error}", { error: String(event.error) });
  });
  // The handlers stay installed, doing nothing: removed, a signal's default
  // action would end the process between its summary and its exit.
  return promise.finally(() => {
    drained = true;
    clearInterval(interval);
  });
}

/** "4 poems, 1 changed, 0 failed", or "..., nothing changed"; and the config file's part. */
function describeReload({ poems, changed, failed, reconfigured }: ReloadResult): string {
  const counted = `${poems} poem${poems === 1 ? "" : "s"}, ` +
    (changed === 0 && failed === 0 ? "nothing changed" : `${changed} changed, ${failed} failed`);
  if (reconfigured === undefined) return counted;
  if (reconfigured === false) return `${counted}; the config file could not be re-read`;
  return `${counted}; config re-read, ${reconfigured} listener${
    reconfigured === 1 ? "" : "s"
  } reconfigured`;
}
