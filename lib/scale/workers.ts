/**
 * `--workers N`: N - 1 Web Workers beside the main thread, each a poetry
 * server of its own on the same addresses. The main thread binds first
 * (with `SO_REUSEPORT`), then each worker binds the same ports, and the
 * kernel spreads new connections over all of them. They share nothing but
 * the poems' files and the connection caps' counters; the main thread
 * forwards signals to them (drain, reload, stats), adds up what they report
 * (shutdown summary, stats, metrics, status page) and writes their log
 * records, so that each line on stderr is one whole record.
 *
 * Web Workers, not processes: they inherit the process's permissions (a
 * process would need `--allow-run` and its own copy of the command line's
 * Deno flags), and a signal reaches the one process. The open-file limit is
 * the process's, shared by all workers.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { StatusReport } from "../observe/status.ts";
import { PoetryError, StartupError, UsageError } from "../base/errors.ts";
import { type LogOptions, writeForwarded } from "../base/log.ts";
import type { MetricFamily } from "../observe/exposition.ts";
import { roomForFiles } from "./open_files.ts";
import type { OtherDrains, ShutdownSummary } from "../server/summary.ts";
import type { PoetryServer } from "../server/server.ts";
import type { ServeOptions } from "../server/options.ts";
import type { StatsSnapshot } from "../observe/stats.ts";

const log = getLogger(["poetry", "workers"]);

/**
 * What a worker is started with; everything here crosses `postMessage`.
 *
 * @example
 * ```ts
 * import type { WorkerInit } from "./workers.ts";
 * const init: WorkerInit = { poems: ["poems/"], options: {}, ports: [10000], log: {}, metrics: false };
 * ```
 */
export interface WorkerInit {
  /** The POEM arguments; {@linkcode WorkerPool.join} gives the files the main thread serves. */
  poems: string[];
  /** The main thread's options, without its observer. */
  options: ServeOptions;
  /** Each listener's port, as the main thread bound it. */
  ports: number[];
  /** The connection caps' counters ({@linkcode PoetryServer.caps}). */
  caps?: SharedArrayBuffer;
  /** Level and format of the log. */
  log: Omit<LogOptions, "worker">;
  /** Whether to keep the admin endpoint's metrics. */
  metrics: boolean;
  /** `--config`: SIGHUP re-reads the file, combined with the command line's options. */
  config?: { path: string; commandLine: ServeOptions };
}

/**
 * What the main thread asks a worker: to stop accepting (`stop`, with the
 * drain timeout; answers its transfers in flight), its shutdown summary
 * once drained, to re-read its poems (`reload`, or one listener's,
 * `reloadPoem`), its totals, metrics or status report.
 *
 * @example
 * ```ts
 * import type { WorkerRequest } from "./workers.ts";
 * const ask: WorkerRequest = "snapshot";
 * ```
 */
export type WorkerRequest =
  | "stop"
  | "summary"
  | "reload"
  | "reloadPoem"
  | "snapshot"
  | "families"
  | "status";

/**
 * A message from the main thread to a worker.
 *
 * @example
 * ```ts
 * import type { ToWorker } from "./workers.ts";
 * const ask: ToWorker = { type: "request", id: 1, what: "snapshot" };
 * ```
 */
export type ToWorker =
  | { type: "start"; init: WorkerInit }
  | { type: "request"; id: number; what: WorkerRequest; arg?: unknown };

/**
 * A message from a worker to the main thread.
 *
 * @example
 * ```ts
 * import type { FromWorker } from "./workers.ts";
 * const ok: FromWorker = { type: "ready" };
 * ```
 */
export type FromWorker =
  | { type: "log"; bytes: Uint8Array }
  | { type: "booted" }
  | { type: "ready" }
  | { type: "failed"; message: string; hint?: string; exitCode: number }
  | { type: "reply"; id: number; value?: unknown; error?: string };

/**
 * Open files a worker takes as it starts (Linux, Deno 2.9.6, counted in
 * /proc/self/fd before and after each): 6 once loaded (two epolls, an
 * eventfd, a socket, its own stdout and stderr), at times 8 while several
 * load their modules at once. One short of them panics Deno in the new
 * thread, so the count has the margin, not the average.
 */
const FILES_PER_WORKER = 8;

/** Files left over once all have started: clients, the admin endpoint, re-reads. */
const FILES_TO_SPARE = 32;

/**
 * Options for {@linkcode WorkerPool.spawn}.
 *
 * @example
 * ```ts
 * import type { SpawnOptions } from "./workers.ts";
 * const options: SpawnOptions = { listeners: 4 };
 * ```
 */
export interface SpawnOptions {
  /**
   * How many listeners each thread will have, at least (a directory of
   * poems gives more): each is a socket in every thread.
   * @default {1}
   */
  listeners?: number;
}

/**
 * Refuses to go on unless `wanted` more files can be opened now. `workers`
 * is the `--workers` count, for the message.
 * @throws {StartupError} when the open-file limit leaves fewer.
 */
function checkRoomForFiles(wanted: number, workers: number): void {
  // A file that is surely there and readable, and a real descriptor: the
  // workers' code under `deno run` (spawn checks it may be read), the
  // executable when compiled (its embedded files are not opened as files).
  const path = Deno.build.standalone || !import.meta.url.startsWith("file:")
    ? Deno.execPath()
    : new URL("./worker_main.ts", import.meta.url);
  const room = roomForFiles(wanted, path);
  if (room === undefined || room >= wanted) return;
  throw new StartupError(
    `the open-file limit (ulimit -n) is too low for --workers ${workers}: ` +
      `it leaves room for ${room} more open files, and the workers and their listeners need about ${wanted}`,
    `raise it by ${wanted - room} or more (ulimit -n), or use fewer --workers or poems`,
  );
}

/** One worker and its requests awaiting a reply. */
class WorkerThread {
  readonly number: number;
  readonly #worker: Worker;
  readonly #pending = new Map<number, (value: unknown) => void>();
  #nextId = 0;
  #alive = true;
  /** Resolves once its modules are loaded, waiting for {@linkcode WorkerThread.start}. */
  readonly booted: Promise<void>;
  readonly #started = Promise.withResolvers<void>();

  constructor(number: number) {
    this.number = number;
    this.#worker = new Worker(new URL("./worker_main.ts", import.meta.url), { type: "module" });
    const booted = Promise.withResolvers<void>();
    this.booted = booted.promise;
    const { resolve, reject } = this.#started;
    this.#started.promise.catch(() => {});
    this.booted.catch(() => {});
    this.#worker.onmessage = ({ data }: MessageEvent<FromWorker>) => {
      switch (data.type) {
        case "log":
          return writeForwarded(data.bytes);
        case "booted":
          return booted.resolve();
        case "ready":
          return resolve();
        case "failed":
          return reject(new PoetryError(data.message, data.hint, data.exitCode));
        case "reply": {
          const settle = this.#pending.get(data.id);
          this.#pending.delete(data.id);
          if (data.error !== undefined) {
            log.error("Worker {number} could not answer: {error}", {
              number: this.number,
              error: data.error,
            });
          }
          return settle?.(data.error === undefined ? data.value : undefined);
        }
      }
    };
    // A worker that dies (a bug: nothing a client does should get here)
    // leaves the others serving; what it counted is lost from the totals.
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#alive = false;
      log.error("Worker {number} stopped: {error}; the others keep serving.", {
        number: this.number,
        error: event.message,
      });
      const failed = new PoetryError(
        `worker ${this.number} stopped: ${event.message}`,
        undefined,
        1,
      );
      booted.reject(failed);
      reject(failed);
      for (const settle of this.#pending.values()) settle(undefined);
      this.#pending.clear();
    };
  }

  /** Has the booted worker serve; resolves once it listens. */
  start(init: WorkerInit): Promise<void> {
    this.#send({ type: "start", init });
    return this.#started.promise;
  }

  /** Asks the worker; resolves with `undefined` when it cannot answer. */
  ask<T>(what: WorkerRequest, arg?: unknown): Promise<T | undefined> {
    if (!this.#alive) return Promise.resolve(undefined);
    const id = this.#nextId++;
    const { promise, resolve } = Promise.withResolvers<unknown>();
    this.#pending.set(id, resolve);
    this.#send({ type: "request", id, what, arg });
    return promise as Promise<T | undefined>;
  }

  terminate(): void {
    this.#alive = false;
    this.#worker.terminate();
    for (const settle of this.#pending.values()) settle(undefined);
    this.#pending.clear();
  }

  #send(message: ToWorker): void {
    this.#worker.postMessage(message);
  }
}

/**
 * The extra workers of `--workers N`; the main thread is the first.
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { WorkerPool } from "./workers.ts";
 * const options = { iface: "127.0.0.1", reusePort: true };
 * const server = await serve(["poems/"], options);
 * const pool = await WorkerPool.spawn(1);
 * await pool.join(server, { poems: ["poems/"], options, log: {}, metrics: false });
 * await server.shutdown(1, pool.shutdown(1));
 * ```
 */
export class WorkerPool {
  readonly #threads: WorkerThread[];

  private constructor(threads: WorkerThread[]) {
    this.#threads = threads;
  }

  /** How many workers, the main thread not counted. */
  get size(): number {
    return this.#threads.length;
  }

  /**
   * Starts `count` workers and waits until each has loaded its modules;
   * {@linkcode WorkerPool.join} then has them serve. Call it before the main
   * thread binds its listeners, while there are files to spare: a worker that
   * cannot open its own modules (no file descriptors left) takes Deno down
   * with a panic, not an error: so none starts unless the open-file limit
   * holds them all, the listeners of every thread, and some to spare.
   * @throws {PoetryError} when a worker cannot start (all are stopped).
   * @throws {StartupError} when the open-file limit is too low for them.
   */
  static async spawn(count: number, options: SpawnOptions = {}): Promise<WorkerPool> {
    // Under `deno run` a worker's modules are read like any file (the main
    // thread's are not): lib/ and the deno.json that lib/base/version.ts imports.
    // Without the permission Deno fails the worker with its own
    // uncaught-error report. A compiled binary carries them and needs none.
    if (!Deno.build.standalone && import.meta.url.startsWith("file:")) {
      const needed = [new URL("..", import.meta.url), new URL("../../deno.json", import.meta.url)]
        .map((url) => decodeURIComponent(url.pathname).replace(/\/$/, ""));
      const missing = needed.filter((path) =>
        Deno.permissions.querySync({ name: "read", path }).state !== "granted"
      );
      if (missing.length > 0) {
        throw new UsageError(
          `workers need read access to the program's code: ${missing.join(" and ")}`,
          `add ${missing.length > 1 ? "them" : "it"} to --allow-read, e.g. --allow-read=poems,${
            needed.join(",")
          }`,
        );
      }
    }
    const listeners = options.listeners ?? 1;
    checkRoomForFiles(
      count * FILES_PER_WORKER + (count + 1) * listeners + FILES_TO_SPARE,
      count + 1,
    );
    const cores = navigator.hardwareConcurrency;
    if (count + 1 > cores) {
      log.warning(
        "{workers} workers are more than the {cores} cores this process may use: more memory, not more speed.",
        { workers: count + 1, cores },
      );
    }
    // Numbered from 2: the main thread is worker 1.
    const threads = Array.from({ length: count }, (_, i) => new WorkerThread(i + 2));
    const pool = new WorkerPool(threads);
    try {
      await Promise.all(threads.map((t) => t.booted));
    } catch (err) {
      pool.terminate();
      throw err;
    }
    return pool;
  }

  /**
   * Has every worker serve `server`'s listeners, on its addresses and caps,
   * and waits until each listens. Each loads the poem files that `server`'s
   * listeners serve (not the directories again: a directory that changed
   * meanwhile must not give one port two poems).
   * @throws {PoetryError} the first worker's start-up error (all are stopped).
   * @throws {StartupError} when the open-file limit cannot hold every
   * worker's listeners and poems streamed from disk (all are stopped).
   */
  async join(server: PoetryServer, init: Omit<WorkerInit, "ports" | "caps">): Promise<void> {
    // Now the poems are known: each worker binds every listener and holds
    // each streamed poem's file open, as the main thread does.
    const streamed = server.listeners.filter((l) => l.poem.content.bytes === undefined).length;
    try {
      checkRoomForFiles(
        this.size * (server.listeners.length + streamed) + FILES_TO_SPARE,
        this.size + 1,
      );
    } catch (err) {
      this.terminate();
      throw err;
    }
    const configured = init.options.listeners ?? [];
    const positional = server.listeners.length - configured.length;
    const paths = server.listeners.map((l) => l.poem.path);
    const full: WorkerInit = {
      ...init,
      poems: paths.slice(0, positional),
      options: {
        ...init.options,
        observer: undefined,
        listeners: init.options.listeners &&
          configured.map((l, i) => ({ ...l, poem: paths[positional + i] })),
      },
      ports: server.listeners.map((l) => l.addr.port),
      caps: server.caps,
    };
    try {
      await Promise.all(this.#threads.map((t) => t.start(full)));
    } catch (err) {
      this.terminate();
      throw err;
    }
  }

  /** Ends every worker at once, transfers and all. */
  terminate(): void {
    for (const thread of this.#threads) thread.terminate();
  }

  /**
   * Has every worker stop accepting and drain, as the main thread's
   * {@linkcode PoetryServer.shutdown} takes it.
   */
  shutdown(drainTimeout: number): OtherDrains {
    const inFlight = Promise.all(this.#threads.map((t) => t.ask<number>("stop", drainTimeout)))
      .then((counts) => counts.reduce((sum: number, n) => sum + (n ?? 0), 0));
    // Drained, a worker has nothing left to do: its thread ends with its summary.
    const done = inFlight.then(() => this.#all<ShutdownSummary>("summary")).finally(() =>
      this.terminate()
    );
    return { inFlight, done };
  }

  /** Has every worker re-read its poems (and `--config`); resolves when all did. */
  async reload(): Promise<void> {
    this.#reportFailures(await this.#each<number>("reload"));
  }

  /** Has every worker re-read the poem of listener `index`. */
  async reloadPoem(index: number): Promise<void> {
    this.#reportFailures(await this.#each<number>("reloadPoem", index));
  }

  // A worker's poems are its own reads of the files: one that failed keeps
  // serving its old version while the main thread may have the new one.
  #reportFailures(failures: [WorkerThread, number | undefined][]): void {
    for (const [thread, failed] of failures) {
      if (!failed) continue;
      log.warning(
        "Worker {number} could not re-read {failed} poems and keeps their old versions; SIGHUP tries again.",
        { number: thread.number, failed },
      );
    }
  }

  async #each<T>(what: WorkerRequest, arg?: unknown): Promise<[WorkerThread, T | undefined][]> {
    return await Promise.all(
      this.#threads.map(async (t) =>
        [t, await t.ask<T>(what, arg)] as [WorkerThread, T | undefined]
      ),
    );
  }

  /** Each worker's totals. */
  snapshots(): Promise<StatsSnapshot[]> {
    return this.#all<StatsSnapshot>("snapshot");
  }

  /** Each worker's metric families. */
  families(): Promise<MetricFamily[][]> {
    return this.#all<MetricFamily[]>("families");
  }

  /** Each worker's status report. */
  reports(): Promise<StatusReport[]> {
    return this.#all<StatusReport>("status");
  }

  /** The answers of the workers that gave one. */
  async #all<T>(what: WorkerRequest, arg?: unknown): Promise<T[]> {
    const answers = (await this.#each<T>(what, arg)).map(([, answer]) => answer);
    return answers.filter((a): a is Awaited<T> => a !== undefined) as T[];
  }
}
