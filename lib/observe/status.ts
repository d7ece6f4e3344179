/**
 * The status model: what `/status.json` and the status page show, for one
 * server and for several (workers) together. One idea of the client (the
 * one the PROXY header named, as in the log) and of the pace (each
 * listener's own) everywhere.
 *
 * @module
 */

import { formatAddress } from "../base/address.ts";
import { VERSION } from "../base/version.ts";
import type { PoetryServer } from "../server/server.ts";
import type { PoetryMetrics } from "./metrics.ts";
import type { Pace } from "../core/pace.ts";
import { addSnapshots, type StatsSnapshot } from "./stats.ts";
import { addFaultsApplied, type FaultsApplied } from "../server/summary.ts";

/**
 * Most transfers listed in one `/status.json`: with 10,000 slow clients the
 * page would otherwise fetch megabytes twice a second. The rest are counted.
 */
const MAX_LISTED = 500;

/**
 * One transfer in flight in {@linkcode StatusReport}.
 *
 * @example
 * ```ts
 * import type { TransferStatus } from "./status.ts";
 * const t: TransferStatus = {
 *   peer: "127.0.0.1:50000",
 *   sent: 120,
 *   total: 400,
 *   seconds: 1.2,
 *   faults: ["stall-after=120"],
 * };
 * ```
 */
export interface TransferStatus {
  /** The client, `host:port`. */
  peer: string;
  /** Bytes the kernel has taken. */
  sent: number;
  /** Bytes in this client's version of the poem. */
  total: number;
  /** Seconds since it was accepted. */
  seconds: number;
  /** The faults on purpose it got, as the log shows them (`reset-after=100`); `[]` for none. */
  faults: string[];
}

/**
 * What `GET /status.json` returns.
 *
 * @example
 * ```ts
 * import type { StatusReport } from "./status.ts";
 * const inFlight = (r: StatusReport) => r.listeners.map((l) => l.transfers.length);
 * ```
 */
export interface StatusReport {
  /** poetry's version. */
  version: string;
  /** Whether shutdown has begun. */
  draining: boolean;
  /** Totals since start (the stats record's). */
  totals: StatsSnapshot;
  /** One per listener, in the order of the `Serving` lines. */
  listeners: {
    /** The poem, as named on the command line. */
    poem: string;
    /** Where it listens, `host:port`. */
    address: string;
    /** Bytes in the current version of the poem. */
    size: number;
    /** Slow mode's pace, or `null` in fast mode. */
    pace: Pace | null;
    /** Transfers in flight. */
    active: number;
    /** The oldest transfers in flight, at most 500 over all listeners. */
    transfers: TransferStatus[];
    /** Transfers in flight not listed. */
    unlisted: number;
    /** Its faults on purpose now, as `--fault` takes them (a reload may change them); `[]` for none. */
    faults: string[];
    /** The run's `--seed`, from which its faults draw (as the log's `Faults on` line shows). */
    seed: number;
    /** Its transfers by the faults they got, each of its faults now listed, with 0 too. */
    faultsApplied: FaultsApplied;
  }[];
  /**
   * With `--workers`, each worker's own totals, the main thread first: how
   * evenly the kernel spreads the clients. Absent with one worker.
   */
  workers?: { completed: number; faulted: number; inFlight: number }[];
}

/**
 * The status report for `/status.json`.
 *
 * @example
 * ```ts
 * import { statusReport } from "./status.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * console.log(statusReport(server, metrics).listeners.length);
 * await server.shutdown();
 * ```
 */
export function statusReport(
  server: PoetryServer,
  metrics: PoetryMetrics,
): StatusReport {
  const now = performance.now();
  let room = MAX_LISTED;
  return {
    version: VERSION,
    draining: server.draining,
    totals: metrics.stats.snapshot(server),
    listeners: server.listeners.map((listener, index) => {
      const transfers: TransferStatus[] = [];
      for (const t of listener.transfers()) {
        if (room === 0) break;
        room--;
        const started = metrics.startedAt(t.sender);
        transfers.push({
          peer: formatAddress(t.peer),
          sent: t.sent,
          total: t.total,
          seconds: started === undefined ? 0 : Math.round(now - started) / 1000,
          faults: t.sender.conn.faults?.map((f) => f.label) ?? [],
        });
      }
      return {
        poem: listener.poem.path,
        address: formatAddress(listener.addr),
        size: listener.poem.content.size,
        pace: listener.pace ?? null,
        active: listener.activeCount,
        transfers,
        unlisted: listener.activeCount - transfers.length,
        faults: server.faultSpecs(index),
        seed: server.seed,
        faultsApplied: server.faultsApplied(index),
      };
    }),
  };
}

/**
 * The main thread's status report with its workers' (`--workers`) added:
 * totals added, each listener's transfers merged (the oldest first, at most
 * 500 over all, their faults applied added), and each worker's own totals in `workers`.
 *
 * @example
 * ```ts
 * import { addReports, statusReport } from "./status.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * const own = statusReport(server, metrics);
 * console.log(addReports(own, [own]).workers?.length); // 2
 * await server.shutdown();
 * ```
 */
export function addReports(own: StatusReport, workers: StatusReport[]): StatusReport {
  const all = [own, ...workers];
  let room = MAX_LISTED;
  return {
    ...own,
    totals: addSnapshots(own.totals, workers.map((w) => w.totals)),
    listeners: own.listeners.map((listener, i) => {
      const same = all.map((r) => r.listeners[i]).filter((l) => l !== undefined);
      const active = same.reduce((n, l) => n + l.active, 0);
      const transfers = same.flatMap((l) => l.transfers)
        .sort((a, b) => b.seconds - a.seconds)
        .slice(0, room);
      room -= transfers.length;
      const faultsApplied = addFaultsApplied(same.map((l) => l.faultsApplied));
      return { ...listener, active, transfers, unlisted: active - transfers.length, faultsApplied };
    }),
    workers: all.map(({ totals }) => ({
      completed: totals.completed,
      faulted: totals.faulted,
      inFlight: totals.inFlight,
    })),
  };
}
