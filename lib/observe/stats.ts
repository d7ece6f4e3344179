/**
 * Totals since start, for a running server's log: bytes sent (the one total
 * the listeners do not keep), and the stats record that SIGUSR2 and
 * `--stats-interval` write. Also the debug record for each accepted client.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import {
  COUNTED,
  emptyCounts,
  type PoemListener,
  type TransferObserver,
} from "../core/listener.ts";
import { connectionTrace, droppedLogRecords } from "../base/log.ts";
import type { PoemSender, SendResult } from "../core/sender.ts";
import {
  addFaultsApplied,
  type FaultsApplied,
  faultsText,
  outcomesText,
} from "../server/summary.ts";

const log = getLogger(["poetry", "stats"]);
const connectionLog = getLogger(["poetry", "connection"]);

/**
 * A server's totals at one moment, as the stats record and `/status.json` give them.
 *
 * @example
 * ```ts
 * import type { StatsSnapshot } from "./stats.ts";
 * const show = (s: StatsSnapshot) => `${s.completed} completed, ${s.sentBytes} bytes`;
 * ```
 */
export interface StatsSnapshot {
  /** Transfers that ended, by outcome, and clients denied. */
  completed: number;
  /** See {@linkcode StatsSnapshot.completed}. */
  faulted: number;
  /** See {@linkcode StatsSnapshot.completed}. */
  "client left": number;
  /** See {@linkcode StatsSnapshot.completed}. */
  "timed out": number;
  /** See {@linkcode StatsSnapshot.completed}. */
  "cut short": number;
  /** See {@linkcode StatsSnapshot.completed}. */
  error: number;
  /** Clients closed without a byte by `--allow`/`--deny`. */
  denied: number;
  /** Transfers that got each fault on purpose, by fault name; empty without faults. */
  faultsApplied: FaultsApplied;
  /** Bytes handed to the kernel, transfers in flight included. */
  sentBytes: number;
  /** Transfers in flight. */
  inFlight: number;
  /** Accepts that failed. */
  acceptErrors: number;
  /** Log records dropped because stderr did not keep up. */
  droppedLogRecords: number;
  /** Seconds since the stats began (the server's start, for the command). */
  uptimeSeconds: number;
}

/**
 * Counts what the listeners do not: bytes sent by finished transfers, per
 * listener. Give it to {@linkcode serve} as the `observer`; it costs one map
 * update per connection. With `--log-level debug` it logs each accepted client.
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { ServerStats } from "./stats.ts";
 * const stats = new ServerStats();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: stats });
 * console.log(stats.snapshot(server).sentBytes); // 0
 * await server.shutdown();
 * ```
 */
export class ServerStats implements TransferObserver {
  /** When counting began, from `performance.now()`. */
  readonly since: number = performance.now();
  readonly #sent = new Map<PoemListener, number>();

  /** Logs the accepted client at debug level. */
  transferStarted(listener: PoemListener, _sender: PoemSender, peer: Deno.NetAddr): void {
    // A plain flag, not LogTape's level check: this runs once per connection.
    if (!connectionTrace.on) return;
    connectionLog.debug("{peer} accepted on {address} for {poem}.", {
      peer: formatAddress(peer),
      address: formatAddress(listener.addr),
      poem: listener.poem.path,
    });
  }

  /** Adds the transfer's bytes to its listener's total. */
  transferEnded(listener: PoemListener, result: SendResult): void {
    this.#sent.set(listener, (this.#sent.get(listener) ?? 0) + result.sent);
  }

  /**
   * Bytes a listener has handed to the kernel: finished transfers and those
   * in flight. It only grows, since a transfer moves from in flight to
   * finished with the same count.
   */
  sentBy(listener: PoemListener): number {
    let sent = this.#sent.get(listener) ?? 0;
    for (const transfer of listener.transfers()) sent += transfer.sent;
    return sent;
  }

  /**
   * The totals of a server's listeners now; the faults each has now come
   * from `server.faultsApplied` where it has one (a `PoetryServer` does).
   */
  snapshot(server: {
    readonly listeners: readonly PoemListener[];
    faultsApplied?(index: number): FaultsApplied;
  }): StatsSnapshot {
    const snapshot: StatsSnapshot = {
      ...emptyCounts(),
      faultsApplied: addFaultsApplied(
        server.listeners.map((l, i) =>
          server.faultsApplied?.(i) ?? Object.fromEntries(l.faultsApplied)
        ),
      ),
      sentBytes: 0,
      inFlight: 0,
      acceptErrors: 0,
      droppedLogRecords: droppedLogRecords(),
      uptimeSeconds: Math.round((performance.now() - this.since) / 1000),
    };
    for (const listener of server.listeners) {
      for (const key of COUNTED) snapshot[key] += listener.counts[key];
      snapshot.sentBytes += this.sentBy(listener);
      snapshot.inFlight += listener.activeCount;
      snapshot.acceptErrors += listener.acceptErrors;
    }
    return snapshot;
  }
}

/**
 * The main thread's totals with its workers' (`--workers`) added. Dropped
 * log records and uptime are the main thread's: it writes every worker's
 * records and started first.
 *
 * @example
 * ```ts
 * import { addSnapshots, ServerStats } from "./stats.ts";
 * import { serve } from "../server/server.ts";
 * const stats = new ServerStats();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: stats });
 * const own = stats.snapshot(server);
 * console.log(addSnapshots(own, [own]).inFlight); // 0
 * await server.shutdown();
 * ```
 */
export function addSnapshots(own: StatsSnapshot, workers: StatsSnapshot[]): StatsSnapshot {
  const total = { ...own };
  for (const worker of workers) {
    for (const key of ADDED) total[key] += worker[key];
  }
  total.faultsApplied = addFaultsApplied([own, ...workers].map((s) => s.faultsApplied));
  return total;
}

const ADDED = [...COUNTED, "sentBytes", "inFlight", "acceptErrors"] as const;

/**
 * Writes one stats record to the log: totals since start, in the words of
 * the per-connection records. SIGUSR2 and `--stats-interval` call it.
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { logStats, ServerStats } from "./stats.ts";
 * const stats = new ServerStats();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: stats });
 * logStats(stats.snapshot(server));
 * await server.shutdown();
 * ```
 */
export function logStats(snapshot: StatsSnapshot): void {
  const faults = faultsText(snapshot.faultsApplied);
  const outcomes = outcomesText(snapshot, snapshot.faultsApplied);
  log.info(
    "Stats: {outcomes}; {sentBytes} bytes sent; {inFlight} in flight; " +
      "{acceptErrors} accept errors; {droppedLogRecords} log records dropped; up {uptimeSeconds} s.",
    { outcomes: faults ? `${outcomes}; ${faults}` : outcomes, ...snapshot },
  );
}
