/**
 * Running as a service: signals drive graceful shutdown and reload, so an
 * accidental Ctrl-C drains instead of cutting clients off.
 *
 * @module
 */

import { dirname, isAbsolute, join, parse as parsePath, resolve as resolvePath } from "node:path";
import { getLogger } from "@logtape/logtape";
import { flushLogs } from "../base/log.ts";
import type { Poem } from "../core/poem.ts";
import type { PoetryServer, ShutdownSummary } from "../server/server.ts";
import { logStats, ServerStats } from "../observe/stats.ts";
import type { WorkerPool } from "../scale/workers.ts";

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
  /**
   * Signals held since start-up by {@linkcode holdReloadSignals}: released
   * once this service's own handlers are in, each one that came honoured once.
   */
  // Spelt out, not HeldSignals: lib/mod.ts does not export that type yet.
  held?: { release(): Deno.Signal[] } | { release(): Deno.Signal[] }[];
  /**
   * The other workers of `--workers`: the signals reach them too (they drain,
   * reload and count with the main thread), and the summary and stats
   * records add them up.
   */
  workers?: WorkerPool;
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
  return holdSignals(["SIGINT", "SIGTERM"], () => {
    const now = performance.now();
    if (first === undefined) first = now;
    else if (now - first >= SAME_STOP_MS) {
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
 * import { serve } from "../server/server.ts";
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
  const { promise, resolve, reject } = Promise.withResolvers<ShutdownSummary>();
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
      const workers = options.workers?.shutdown(server.drainTimeout);
      server.shutdown(server.drainTimeout, workers).then(resolve, reject);
    } else if (now - firstStop < SAME_STOP_MS) {
      log.debug("Got {signal} {ms} ms after the first: the same Ctrl-C, still draining.", {
        signal,
        ms: Math.round(now - firstStop),
      });
    } else {
      log.warning("Second signal: exiting without waiting for transfers.");
      // The records queued so far (and this one) go out first, unless stderr
      // is stuck: the wait is bounded, since this exit is meant to be now.
      flushLogs(300).finally(() => Deno.exit(1));
    }
  };
  for (const signal of stopSignals) Deno.addSignalListener(signal, () => onStop(signal));
  const reload = () => {
    if (firstStop !== undefined || drained) return;
    (options.reload ?? (() => server.reload()))();
    options.workers?.reload();
  };
  if (!windows) Deno.addSignalListener("SIGHUP", reload);
  // SIGUSR1's default action ends the process: endlessh's users expect it
  // to print totals instead, and so does this. Deno 2.9.2 and later also
  // open the V8 inspector on 127.0.0.1:9229 at SIGUSR1, which nothing can
  // turn off (denoland/deno#35738), so SIGUSR2 writes the same record
  // without that; the README says to prefer it.
  const stats = options.stats ?? new ServerStats();
  const writeStats = async () => {
    if (drained) return;
    const workers = await options.workers?.snapshots();
    if (!drained) logStats(server, stats, workers);
  };
  const statsSignals: Deno.Signal[] = windows ? [] : ["SIGUSR1", "SIGUSR2"];
  for (const signal of statsSignals) Deno.addSignalListener(signal, writeStats);
  const interval = options.statsInterval
    ? setInterval(writeStats, options.statsInterval * 1000)
    : undefined;
  if (options.watch) watchPoems(server, promise, options.workers);
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

// Watches directories, not the poem files: watchFs follows an inode, and an
// editor that saves by renaming a new file over the poem (vim, `sed -i`,
// `mv new poem`) would leave a file watch on the old, unlinked inode, deaf from
// then on. A directory's entries are matched by path. Which entries: every one
// the poem's path goes through that, replaced, changes what the path names.
// The watch starts synchronously, before the Serving lines: a change made as
// soon as they are read must be seen.
function watchPoems(
  server: PoetryServer,
  stopped: Promise<unknown>,
  workers: WorkerPool | undefined,
): void {
  const watch = new PoemWatch(server, workers);
  if (!watch.start()) return;
  stopped.finally(() => watch.close());
}

/**
 * The directory entries that `path` goes through, resolved as the kernel
 * does: each symlink met on the way (a link to the poem, a release directory
 * `cur -> rel1`, a link inside the link's target...), then the file it names.
 * A deploy that re-points any of them, or an edit of the file, changes the
 * poem; nothing else on the path can. Each entry is its real parent directory
 * joined with its name, as a watch of that directory reports it. An entry that
 * is missing (a deploy caught between steps) ends the list: its directory is
 * watched, so its return is seen.
 */
function entriesOf(path: string): string[] {
  const windows = Deno.build.os === "windows";
  const split = (p: string) => p.split(windows ? /[\\/]+/ : "/").filter((name) => name !== "");
  const absolute = resolvePath(path);
  let resolved = parsePath(absolute).root;
  const rest = split(absolute.slice(resolved.length));
  const entries: string[] = [];
  // ELOOP's bound on Linux: a cycle of links must not spin for ever.
  for (let links = 0; rest.length > 0;) {
    const name = rest.shift()!;
    if (name === ".") continue;
    // `resolved` holds no symlink, so its parent is the kernel's `..` too.
    if (name === "..") {
      resolved = dirname(resolved);
      continue;
    }
    const entry = join(resolved, name);
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(entry);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        entries.push(entry);
        return entries;
      }
      // --allow-read=poems forbids a look at /home: take such a directory
      // for a plain one, as the old directory-only watch did.
      if (rest.length > 0) {
        resolved = entry;
        continue;
      }
      throw err;
    }
    if (info.isSymlink && ++links <= 40) {
      entries.push(entry);
      const target = Deno.readLinkSync(entry);
      if (isAbsolute(target)) resolved = parsePath(target).root;
      rest.unshift(...split(isAbsolute(target) ? target.slice(resolved.length) : target));
      continue;
    }
    resolved = entry;
  }
  entries.push(resolved);
  return entries;
}

/** What `watchFs` is given for an entry: its directory, or itself when that may not be read. */
function watchedPathOf(entry: string): string {
  const dir = dirname(entry);
  return Deno.permissions.querySync({ name: "read", path: dir }).state === "granted" ? dir : entry;
}

/**
 * One watcher for all the poems. watchFs cannot add a path to a running
 * watcher, so when a deploy re-points a poem to another directory, a new
 * watcher replaces the old one (opened before the old closes, so nothing
 * falls between them); one per poem would soon exceed
 * fs.inotify.max_user_instances (128 by default).
 */
class PoemWatch {
  readonly #server: PoetryServer;
  readonly #entries = new Map<Poem, string[]>();
  /** Entry path to the poems whose path goes through it. */
  #poemsAt = new Map<string, Set<Poem>>();
  #watcher?: Deno.FsWatcher;
  #watchedKey = "";
  // One timer per poem: a burst of writes to one poem neither delays nor
  // re-reads the others.
  readonly #timers = new Map<Poem, ReturnType<typeof setTimeout>>();
  #closed = false;
  readonly #workers?: WorkerPool;

  constructor(server: PoetryServer, workers?: WorkerPool) {
    this.#server = server;
    this.#workers = workers;
  }

  /** Starts watching; false when nothing can be watched (logged). */
  start(): boolean {
    for (const { poem } of this.#server.listeners) this.#entries.set(poem, this.#resolve(poem));
    return this.#rewatch();
  }

  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    for (const timer of this.#timers.values()) clearTimeout(timer);
  }

  #resolve(poem: Poem, previous?: string[]): string[] {
    try {
      return entriesOf(poem.path);
    } catch (err) {
      // E.g. --allow-read names the file alone: the file itself is all we may watch.
      if (!previous) {
        log.warning(
          "Cannot watch the directory of {poem} ({error}); a save by rename ends its watch.",
          { poem: poem.path, error: err instanceof Error ? err.message : String(err) },
        );
      }
      return previous ?? [resolvePath(poem.path)];
    }
  }

  /** (Re)opens the watcher when the set of paths to watch changed. */
  #rewatch(): boolean {
    const poemsAt = new Map<string, Set<Poem>>();
    const paths = new Set<string>();
    for (const [poem, entries] of this.#entries) {
      for (const entry of entries) {
        if (!poemsAt.has(entry)) poemsAt.set(entry, new Set());
        poemsAt.get(entry)!.add(poem);
        paths.add(watchedPathOf(entry));
      }
    }
    this.#poemsAt = poemsAt;
    const key = [...paths].sort().join("\0");
    if (key === this.#watchedKey) return true;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs([...paths], { recursive: false });
    } catch (err) {
      log.error(
        this.#watcher
          ? "Cannot watch the poems' new directories, still watching the old; SIGHUP still reloads: {error}"
          : "Cannot watch the poems; SIGHUP still reloads: {error}",
        { error: err instanceof Error ? err.message : String(err) },
      );
      return false;
    }
    this.#watcher?.close();
    this.#watcher = watcher;
    this.#watchedKey = key;
    this.#listen(watcher);
    return true;
  }

  async #listen(watcher: Deno.FsWatcher): Promise<void> {
    try {
      for await (const event of watcher) {
        // Reading a file must never count as a change, or each re-read would
        // trigger the next; a write is reported as "modify" anyway.
        if (event.kind === "access") continue;
        for (const path of event.paths) {
          for (const poem of this.#poemsAt.get(resolvePath(path)) ?? []) this.#changed(poem);
        }
      }
    } catch (err) {
      if (watcher !== this.#watcher) return; // replaced: the new one carries on
      log.error("Stopped watching the poems; SIGHUP still reloads: {error}", {
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }

  #changed(poem: Poem): void {
    clearTimeout(this.#timers.get(poem));
    this.#timers.set(
      poem,
      setTimeout(() => {
        this.#timers.delete(poem);
        if (this.#closed) return;
        // A deploy may have re-pointed a link on the way: follow it first, so
        // later edits of the new target are seen too.
        const entries = this.#resolve(poem, this.#entries.get(poem));
        if (entries.join("\0") !== this.#entries.get(poem)!.join("\0")) {
          log.debug("{poem} now resolves to {target}; watching there.", {
            poem: poem.path,
            target: entries.at(-1),
          });
          this.#entries.set(poem, entries);
          this.#rewatch();
        }
        this.#server.reloadPoem(poem);
        this.#workers?.reloadPoem(this.#server.listeners.findIndex((l) => l.poem === poem));
      }, WATCH_SETTLE_MS),
    );
  }
}
