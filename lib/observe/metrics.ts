/**
 * Prometheus metrics for a running server, in the text exposition format
 * (version 0.0.4), for `GET /metrics` on the admin endpoint.
 *
 * Counted on the connection's own path: a duration per finished transfer
 * (a histogram, a dozen comparisons). Everything else (connections by
 * outcome, faults applied, in flight, bytes, poem sizes, reloads, memory)
 * is read from the listeners and the server when Prometheus scrapes, so it
 * costs nothing per connection. *
 * The format is written by lib/observe/exposition.ts.
 *
 * @module
 */

import type { PoemListener, TransferObserver } from "../core/listener.ts";
import { droppedLogRecords } from "../base/log.ts";
import { OUTCOMES, type PoemSender, type SendResult } from "../core/sender.ts";
import type { PoetryServer } from "../server/server.ts";
import { ServerStats } from "./stats.ts";
import { VERSION } from "../base/version.ts";
import { exposition, Histogram, type MetricFamily } from "./exposition.ts";

/**
 * The server's metrics: give it to {@linkcode serve} as the `observer`, then
 * call {@linkcode PoetryMetrics.exposition} for each scrape. It wraps a
 * {@linkcode ServerStats} (bytes sent, the debug record per client), so one
 * observer does both.
 *
 * @example
 * ```ts
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * console.log(metrics.exposition(server));
 * await server.shutdown();
 * ```
 */
export class PoetryMetrics implements TransferObserver {
  /** The totals this wraps; give the same to the service for its stats record. */
  readonly stats: ServerStats;
  readonly #durations = new Map<PoemListener, Histogram>();
  /**
   * When each transfer in flight started. A Map emptied as transfers end:
   * a WeakMap's set measured 500-750 ns here, a Map's set and delete 60-100.
   */
  readonly #started = new Map<PoemSender, number>();
  /**
   * A clock read at most every {@linkcode PoetryMetrics.keepClock} interval
   * rather than per connection: `performance.now()` measured 100-650 ns a
   * call here, as much as everything else the metrics do per connection.
   */
  #coarseNow?: number;
  /** Whether /proc/self/fd may be read; Deno asks for --allow-all for it. */
  #fdsReadable = Deno.build.os === "linux";

  /** Metrics over `stats` (a new one when absent). */
  constructor(stats: ServerStats = new ServerStats()) {
    this.stats = stats;
  }

  /** Notes when the transfer started, for the status page. */
  transferStarted(listener: PoemListener, sender: PoemSender, peer: Deno.NetAddr): void {
    this.stats.transferStarted(listener, sender, peer);
    this.#started.set(sender, this.#coarseNow ?? performance.now());
  }

  /** Counts the transfer's duration. */
  transferEnded(listener: PoemListener, result: SendResult, sender?: PoemSender): void {
    this.stats.transferEnded(listener, result);
    if (sender) this.#started.delete(sender);
    let durations = this.#durations.get(listener);
    if (!durations) this.#durations.set(listener, durations = new Histogram());
    durations.observe(result.ms / 1000);
  }

  /**
   * When a transfer in flight started (`performance.now()`, to within the
   * {@linkcode PoetryMetrics.keepClock} interval), if it was seen starting.
   */
  startedAt(sender: PoemSender): number | undefined {
    return this.#started.get(sender);
  }

  /**
   * Reads the clock every `intervalMs` (one timer for the process) for the
   * start times, instead of once per connection. Returns the function that
   * stops it; until then, and after, each start reads the clock itself.
   */
  keepClock(intervalMs = 100): () => void {
    this.#coarseNow = performance.now();
    const timer = setInterval(() => this.#coarseNow = performance.now(), intervalMs);
    Deno.unrefTimer(timer);
    return () => {
      clearInterval(timer);
      this.#coarseNow = undefined;
    };
  }

  /** The metrics now, in the text exposition format. */
  exposition(server: PoetryServer): string {
    return exposition(this.families(server));
  }

  /**
   * The metric families now. Series are per poem (the file as named on the
   * command line), never per client: a label per address would grow without
   * bound. A poem served twice has its listeners added together.
   */
  families(server: PoetryServer): MetricFamily[] {
    const poems = new Map<string, PoemListener[]>();
    for (const listener of server.listeners) {
      const same = poems.get(listener.poem.path);
      if (same) same.push(listener);
      else poems.set(listener.poem.path, [listener]);
    }
    const perPoem = (value: (l: PoemListener) => number) =>
      [...poems].map(([poem, listeners]) => ({
        labels: { poem },
        value: listeners.reduce((sum, l) => sum + value(l), 0),
      }));
    const durations = [...poems].map(([poem, listeners]) => {
      const histogram = new Histogram();
      for (const l of listeners) {
        const own = this.#durations.get(l);
        if (own) histogram.add(own);
      }
      return { labels: { poem }, histogram };
    });
    const all = server.listeners;
    const families: MetricFamily[] = [
      {
        name: "poetry_connections_total",
        help: "Connections that ended, by poem and outcome (the log records' words).",
        type: "counter",
        samples: [...poems].flatMap(([poem, listeners]) =>
          [...OUTCOMES, "denied" as const].map((outcome) => ({
            labels: { poem, outcome },
            value: listeners.reduce((sum, l) => sum + l.counts[outcome], 0),
          }))
        ),
      },
      {
        name: "poetry_faults_applied_total",
        help:
          "Connections that got each fault on purpose (--fault), by poem, listener (its index, as in --ports-file) and fault.",
        type: "counter",
        samples: all.flatMap((l, i) =>
          Object.entries(server.faultsApplied(i)).map(([fault, value]) => ({
            labels: { poem: l.poem.path, listener: String(i), fault },
            value,
          }))
        ),
      },
      {
        name: "poetry_connections_active",
        help: "Transfers in flight.",
        type: "gauge",
        samples: perPoem((l) => l.activeCount),
      },
      {
        name: "poetry_sent_bytes_total",
        help: "Bytes handed to the kernel, transfers in flight included.",
        type: "counter",
        samples: perPoem((l) => this.stats.sentBy(l)),
      },
      {
        name: "poetry_connection_duration_seconds",
        help: "Time from accept to close of each finished transfer.",
        type: "histogram",
        series: durations,
      },
      {
        name: "poetry_accept_errors_total",
        help: "Accepts that failed (a client gone before it was accepted, no descriptors, ...).",
        type: "counter",
        samples: [{ value: all.reduce((sum, l) => sum + l.acceptErrors, 0) }],
      },
      {
        name: "poetry_log_records_dropped_total",
        help: "Log records dropped because stderr did not keep up.",
        type: "counter",
        samples: [{ value: droppedLogRecords() }],
      },
      {
        name: "poetry_poem_bytes",
        help: "Size of the current version of each poem.",
        type: "gauge",
        samples: [...poems].map(([poem, [l]]) => ({
          labels: { poem },
          value: l.poem.content.size,
        })),
      },
      {
        name: "poetry_reloads_total",
        help: "Poem re-reads (SIGHUP, --watch), by result.",
        type: "counter",
        samples: Object.entries(server.reloads).map(([result, value]) => ({
          labels: { result },
          value,
        })),
      },
      {
        name: "poetry_build_info",
        help: "The running version; always 1.",
        type: "gauge",
        samples: [{ labels: { version: VERSION }, value: 1 }],
      },
      {
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        type: "gauge",
        samples: [{ value: Deno.memoryUsage().rss }],
      },
      {
        name: "process_start_time_seconds",
        help: "Start time of the process since the Unix epoch in seconds.",
        type: "gauge",
        samples: [{ value: Math.round(performance.timeOrigin) / 1000 }],
      },
    ];
    const fds = this.#openFds();
    if (fds !== undefined) {
      families.push({
        name: "process_open_fds",
        help: "Number of open file descriptors.",
        type: "gauge",
        samples: [{ value: fds }],
      });
    }
    return families;
  }

  // Linux only. Deno lets a process list its own /proc/self/fd only with
  // --allow-all; without it the metric is left out rather than faked.
  #openFds(): number | undefined {
    if (!this.#fdsReadable) return undefined;
    try {
      let count = 0;
      for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
      return count - 1; // the descriptor that reads the directory
    } catch {
      this.#fdsReadable = false;
      return undefined;
    }
  }
}
