/**
 * What a shutdown did, for one server and for several (workers) together;
 * what a reload did.
 *
 * @module
 */

import { COUNTED, emptyCounts, type TransferCounts } from "../core/listener.ts";

/**
 * What a shutdown did.
 *
 * @example
 * ```ts
 * import { serve } from "./server.ts";
 * import { type ShutdownSummary } from "./summary.ts";
 * const server = await serve(["poems/"], { iface: "127.0.0.1" });
 * const summary: ShutdownSummary = await server.shutdown();
 * console.log(summary.completed, summary["client left"], summary["cut short"]);
 * ```
 */
export interface ShutdownSummary extends TransferCounts {
  /** Accepts that failed, over all listeners. */
  acceptErrors: number;
  /** Connections closed for a missing, malformed or slow PROXY header. */
  badProxyHeaders: number;
  /** Whether the drain timeout ran out with transfers still going. */
  timedOut: boolean;
}

/**
 * Servers that drain alongside one (its workers), as
 * {@linkcode PoetryServer.shutdown} takes them.
 *
 * @example
 * ```ts
 * import type { OtherDrains } from "./summary.ts";
 * const none: OtherDrains = { inFlight: Promise.resolve(0), done: Promise.resolve([]) };
 * ```
 */
export interface OtherDrains {
  /** Their transfers in flight once they stopped accepting. */
  inFlight: Promise<number>;
  /** Their summaries, once drained. */
  done: Promise<ShutdownSummary[]>;
}

/**
 * The summaries of several servers (workers) as one: counts added, timed
 * out if any did.
 *
 * @example
 * ```ts
 * import { addSummaries, type ShutdownSummary } from "./summary.ts";
 * const one: ShutdownSummary = {
 *   completed: 2, "client left": 0, "timed out": 0, "cut short": 0, error: 0, denied: 0,
 *   acceptErrors: 0, badProxyHeaders: 0, timedOut: false,
 * };
 * addSummaries([one, one]).completed; // 4
 * ```
 */
export function addSummaries(summaries: ShutdownSummary[]): ShutdownSummary {
  const total: ShutdownSummary = {
    ...emptyCounts(),
    acceptErrors: 0,
    badProxyHeaders: 0,
    timedOut: false,
  };
  for (const summary of summaries) {
    for (const key of COUNTED) total[key] += summary[key];
    total.acceptErrors += summary.acceptErrors;
    total.badProxyHeaders += summary.badProxyHeaders;
    total.timedOut ||= summary.timedOut;
  }
  return total;
}

/**
 * What a reload did, for the one record that says so.
 *
 * @example
 * ```ts
 * import type { ReloadResult } from "./summary.ts";
 * const result: ReloadResult = { poems: 4, changed: 1, failed: 0 };
 * ```
 */
export interface ReloadResult {
  /** Poems re-read. */
  poems: number;
  /** How many of them changed (a poem readable again counts, too). */
  changed: number;
  /** How many could not be read: each keeps its old version. */
  failed: number;
  /**
   * With `--config`: how many listeners took new settings, or `false` when
   * the file could not be re-read (the running settings stay).
   */
  reconfigured?: number | false;
}
