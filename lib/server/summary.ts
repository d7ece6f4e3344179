/**
 * What a shutdown did, for one server and for several (workers) together;
 * what a reload did.
 *
 * @module
 */

import { COUNTED, emptyCounts, type TransferCounts } from "../core/listener.ts";

/**
 * Transfers that got each fault on purpose, by fault name (`--fault`); a
 * fault a listener has that no transfer got yet is there with 0.
 *
 * @example
 * ```ts
 * import type { FaultsApplied } from "./summary.ts";
 * const applied: FaultsApplied = { "close-after": 2, "reset-after": 3 };
 * ```
 */
export type FaultsApplied = Record<string, number>;

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
  /** Transfers that got each fault on purpose, over all listeners. */
  faultsApplied: FaultsApplied;
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
 *   completed: 2, faulted: 0, "client left": 0, "timed out": 0, "cut short": 0, error: 0,
 *   denied: 0, acceptErrors: 0, badProxyHeaders: 0, timedOut: false, faultsApplied: {},
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
    faultsApplied: addFaultsApplied(summaries.map((s) => s.faultsApplied)),
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
 * Fault counts of several listeners or workers added, fault by fault, in
 * the order the first of them lists them.
 *
 * @example
 * ```ts
 * import { addFaultsApplied } from "./summary.ts";
 * addFaultsApplied([{ "close-after": 1 }, { "close-after": 2, refuse: 1 }]);
 * // { "close-after": 3, refuse: 1 }
 * ```
 */
export function addFaultsApplied(all: FaultsApplied[]): FaultsApplied {
  const total: FaultsApplied = {};
  for (const applied of all) {
    for (const [name, n] of Object.entries(applied)) total[name] = (total[name] ?? 0) + n;
  }
  return total;
}

/**
 * Transfers by outcome, in the words of the per-connection records, as the
 * shutdown summary and the stats record write them: `3 completed, 0 client
 * left, ...`. `faulted` and the faults applied are written only where there
 * are faults (a listener has some, or had: `applied` lists them), as
 * `bad PROXY header` only with `--proxy-protocol`.
 *
 * @example
 * ```ts
 * import { emptyCounts } from "../core/listener.ts";
 * import { outcomesText } from "./summary.ts";
 * const counts = { ...emptyCounts(), faulted: 2 };
 * outcomesText(counts, {}); // "0 completed, 2 faulted, 0 client left, ..., 0 denied"
 * outcomesText(emptyCounts(), {}); // "0 completed, 0 client left, ..., 0 denied"
 * ```
 */
export function outcomesText(counts: TransferCounts, applied: FaultsApplied): string {
  const faults = counts.faulted > 0 || Object.keys(applied).length > 0;
  return COUNTED.filter((key) => faults || key !== "faulted")
    .map((key) => `${counts[key]} ${key}`).join(", ");
}

/**
 * The faults applied, as the shutdown summary and the stats record write
 * them after the outcomes: `faults applied: 2 close-after, 3 reset-after`;
 * empty without faults.
 *
 * @example
 * ```ts
 * import { faultsText } from "./summary.ts";
 * faultsText({ "close-after": 2, "reset-after": 3 }); // "faults applied: 2 close-after, 3 reset-after"
 * ```
 */
export function faultsText(applied: FaultsApplied): string {
  const entries = Object.entries(applied);
  if (entries.length === 0) return "";
  return `faults applied: ${entries.map(([name, n]) => `${n} ${name}`).join(", ")}`;
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
