/**
 * A server and its workers (`--workers`) as one, as Twisted's `MultiService`
 * starts and stops its children as one: main, the admin endpoint and the
 * service see one server, and the group adds the workers up. With no
 * workers it is the server alone, so every caller takes the same path.
 *
 * @module
 */

import type { Poem } from "../core/poem.ts";
import type { Observed } from "../observe/admin.ts";
import { addFamilies } from "../observe/exposition.ts";
import type { PoetryMetrics } from "../observe/metrics.ts";
import { addSnapshots, type ServerStats, type StatsSnapshot } from "../observe/stats.ts";
import { addReports, type StatusReport, statusReport } from "../observe/status.ts";
import type { PoetryServer } from "../server/server.ts";
import type { ReloadResult, ShutdownSummary } from "../server/summary.ts";
import type { Service } from "../service/service.ts";
import type { WorkerPool } from "./workers.ts";

/**
 * What a {@linkcode ServerGroup} counts with, and what its SIGHUP does.
 *
 * @example
 * ```ts
 * import type { GroupOptions } from "./group.ts";
 * import { ServerStats } from "../observe/stats.ts";
 * const options: GroupOptions = { stats: new ServerStats() };
 * ```
 */
export interface GroupOptions {
  /** The main server's observer's totals, for the stats record. */
  stats: ServerStats;
  /** The main server's metrics, when an admin endpoint reports on the group. */
  metrics?: PoetryMetrics;
  /** What a reload does on the main thread (`--config` re-reads its file). @default {re-reads its poems} */
  reload?: () => Promise<ReloadResult>;
}

/**
 * The main thread's server and the other workers, as one; see the module doc.
 *
 * @example
 * ```ts
 * import { ServerGroup } from "./group.ts";
 * import { ServerStats } from "../observe/stats.ts";
 * import { serve } from "../server/server.ts";
 * const stats = new ServerStats();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: stats });
 * const group = new ServerGroup(server, undefined, { stats });
 * console.log((await group.snapshot()).inFlight); // 0
 * await group.shutdown(0);
 * ```
 */
export class ServerGroup implements Service, Observed {
  /** The main thread's server. */
  readonly server: PoetryServer;
  readonly #pool?: WorkerPool;
  readonly #options: GroupOptions;

  /** `server` with the workers of `pool` (none when undefined). */
  constructor(server: PoetryServer, pool: WorkerPool | undefined, options: GroupOptions) {
    this.server = server;
    this.#pool = pool;
    this.#options = options;
  }

  /** The main thread's listeners: the workers' serve the same addresses. */
  get listeners(): PoetryServer["listeners"] {
    return this.server.listeners;
  }

  /** Whether shutdown has begun. */
  get draining(): boolean {
    return this.server.draining;
  }

  /** Seconds a drain lets transfers finish. */
  get drainTimeout(): number {
    return this.server.drainTimeout;
  }

  /** Drains every thread; the summary adds them up. */
  shutdown(drainTimeout: number = this.drainTimeout): Promise<ShutdownSummary> {
    return this.server.shutdown(drainTimeout, this.#pool?.shutdown(drainTimeout));
  }

  /** Ends the workers at once (a start-up that failed). */
  terminate(): void {
    this.#pool?.terminate();
  }

  /**
   * Every thread re-reads its poems (and `--config`).
   * @returns what the main thread's re-read did (a worker that could not
   * read what it could is logged on its own).
   */
  async reload(): Promise<ReloadResult> {
    const own = this.#options.reload ?? (() => this.server.reload());
    const [result] = await Promise.all([own(), this.#pool?.reload()]);
    return result;
  }

  /** The POEM arguments that named a directory. */
  get directories(): readonly string[] {
    return this.server.directories;
  }

  /** Every thread re-reads one poem. */
  async reloadPoem(poem: Poem): Promise<void> {
    const index = this.server.listeners.findIndex((l) => l.poem === poem);
    await Promise.all([this.server.reloadPoem(poem), this.#pool?.reloadPoem(index)]);
  }

  /** The totals of every thread. */
  async snapshot(): Promise<StatsSnapshot> {
    const own = this.#options.stats.snapshot(this.server);
    return this.#pool ? addSnapshots(own, await this.#pool.snapshots()) : own;
  }

  /** The metric families of every thread, added up. */
  async families(): Promise<ReturnType<PoetryMetrics["families"]>> {
    const own = this.#metrics.families(this.server);
    return this.#pool ? addFamilies(own, await this.#pool.families()) : own;
  }

  /** The status report of every thread, merged. */
  async report(): Promise<StatusReport> {
    const own = statusReport(this.server, this.#metrics);
    return this.#pool ? addReports(own, await this.#pool.reports()) : own;
  }

  get #metrics(): PoetryMetrics {
    if (!this.#options.metrics) throw new Error("the group was made without metrics");
    return this.#options.metrics;
  }
}
