/**
 * Prometheus metrics for a running server, in the text exposition format
 * (version 0.0.4), for `GET /metrics` on the admin endpoint.
 *
 * Counted on the connection's own path: a duration per finished transfer
 * (a histogram, a dozen comparisons). Everything else (connections by
 * outcome, in flight, bytes, poem sizes, reloads, memory) is read from the
 * listeners and the server when Prometheus scrapes, so it costs nothing per
 * connection.
 *
 * Written here rather than with prom-client (npm, 15.1.3), which does run
 * under Deno: importing it took 140 ms (it pulls in node:cluster and
 * OpenTelemetry), more than poetry's whole start-up, and its counters keep
 * their own state, where ours are the listeners' counts read at scrape time.
 * The format is small; `promtool check metrics` checks ours in the tests.
 *
 * @module
 */

import type { PoemListener, TransferObserver } from "../core/listener.ts";
import { droppedLogRecords } from "../base/log.ts";
import { OUTCOMES, type PoemSender, type SendResult } from "../core/sender.ts";
import type { PoetryServer } from "../server/server.ts";
import { ServerStats } from "./stats.ts";
import { VERSION } from "../base/version.ts";

/**
 * Upper bounds of the connection-duration buckets, in seconds: a fast poem
 * on loopback takes a millisecond, a slow one minutes.
 *
 * @example
 * ```ts
 * import { DURATION_BUCKETS } from "./metrics.ts";
 * console.log(DURATION_BUCKETS.at(-1)); // 600
 * ```
 */
export const DURATION_BUCKETS: readonly number[] = [
  0.001,
  0.005,
  0.01,
  0.05,
  0.1,
  0.5,
  1,
  5,
  10,
  30,
  60,
  300,
  600,
];

/**
 * Counts of observations by bucket, as a Prometheus histogram keeps them.
 *
 * @example
 * ```ts
 * import { Histogram } from "./metrics.ts";
 * const h = new Histogram([0.1, 1]);
 * h.observe(0.5);
 * console.log(h.count, h.sum, h.buckets); // 1 0.5 [0, 1]
 * ```
 */
export class Histogram {
  /** Upper bounds, ascending; `+Inf` is implied. */
  readonly bounds: readonly number[];
  /** Observations in each bucket alone (not cumulative). */
  readonly buckets: number[];
  /** Sum of the observations. */
  sum = 0;
  /** Number of observations. */
  count = 0;

  /** A histogram with these upper bounds. */
  constructor(bounds: readonly number[] = DURATION_BUCKETS) {
    this.bounds = bounds;
    this.buckets = bounds.map(() => 0);
  }

  /** Counts one observation. */
  observe(value: number): void {
    this.sum += value;
    this.count++;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        this.buckets[i]++;
        return;
      }
    }
  }

  /** Adds another histogram with the same bounds into this one. */
  add(other: Histogram): void {
    this.sum += other.sum;
    this.count += other.count;
    for (let i = 0; i < this.buckets.length; i++) this.buckets[i] += other.buckets[i];
  }
}

/**
 * Label names and values of one series.
 *
 * @example
 * ```ts
 * import type { Labels } from "./metrics.ts";
 * const labels: Labels = { poem: "poems/a.txt", outcome: "completed" };
 * ```
 */
export type Labels = Record<string, string>;

/**
 * One metric family to write: a counter or gauge with its samples, or a
 * histogram with its series.
 *
 * @example
 * ```ts
 * import type { MetricFamily } from "./metrics.ts";
 * const up: MetricFamily = { name: "up", help: "Up.", type: "gauge", samples: [{ value: 1 }] };
 * ```
 */
export type MetricFamily =
  | {
    /** Metric name. */
    name: string;
    /** One line of help. */
    help: string;
    /** A counter only goes up; a gauge goes both ways. */
    type: "counter" | "gauge";
    /** One value per label set. */
    samples: { labels?: Labels; value: number }[];
  }
  | {
    /** Metric name; the `_bucket`, `_sum` and `_count` series are derived from it. */
    name: string;
    /** One line of help. */
    help: string;
    /** Observations in buckets. */
    type: "histogram";
    /** One histogram per label set. */
    series: { labels?: Labels; histogram: Histogram }[];
  };

/** The families that count what each worker does; the rest are the process's. */
const PER_WORKER = new Set([
  "poetry_connections_total",
  "poetry_connections_active",
  "poetry_sent_bytes_total",
  "poetry_connection_duration_seconds",
  "poetry_accept_errors_total",
]);

/**
 * The main thread's metric families with its workers' (`--workers`) added,
 * series by series. Families that describe the process (memory, open
 * files, start time, version, poem sizes, reloads, log records dropped) are
 * the main thread's alone: they would count the same thing N times.
 *
 * @example
 * ```ts
 * import { addFamilies, type MetricFamily } from "./metrics.ts";
 * const one: MetricFamily[] = [
 *   { name: "poetry_connections_active", help: "In flight.", type: "gauge", samples: [{ value: 2 }] },
 * ];
 * addFamilies(one, [one]); // poetry_connections_active 4
 * ```
 */
export function addFamilies(own: MetricFamily[], workers: MetricFamily[][]): MetricFamily[] {
  const key = (labels?: Labels) => JSON.stringify(labels ?? {});
  return own.map((family): MetricFamily => {
    if (!PER_WORKER.has(family.name)) return family;
    const theirs = workers.map((w) => w.find((f) => f.name === family.name));
    if (family.type === "histogram") {
      return {
        ...family,
        series: family.series.map(({ labels, histogram }) => {
          const sum = new Histogram(histogram.bounds);
          sum.add(histogram);
          for (const other of theirs) {
            if (other?.type !== "histogram") continue;
            // Across postMessage a Histogram arrives as a plain object with its fields.
            const same = other.series.find((s) => key(s.labels) === key(labels));
            if (same) sum.add(same.histogram);
          }
          return { labels, histogram: sum };
        }),
      };
    }
    return {
      ...family,
      samples: family.samples.map(({ labels, value }) => {
        for (const other of theirs) {
          if (other === undefined || other.type === "histogram") continue;
          value += other.samples.find((s) => key(s.labels) === key(labels))?.value ?? 0;
        }
        return { labels, value };
      }),
    };
  });
}

/**
 * Writes metric families in the Prometheus text exposition format 0.0.4.
 *
 * @example
 * ```ts
 * import { exposition } from "./metrics.ts";
 * exposition([{ name: "up", help: "Up.", type: "gauge", samples: [{ value: 1 }] }]);
 * // "# HELP up Up.\n# TYPE up gauge\nup 1\n"
 * ```
 */
export function exposition(families: MetricFamily[]): string {
  const lines: string[] = [];
  for (const family of families) {
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
    lines.push(`# TYPE ${family.name} ${family.type}`);
    if (family.type !== "histogram") {
      for (const { labels, value } of family.samples) {
        lines.push(`${family.name}${labelText(labels)} ${numberText(value)}`);
      }
      continue;
    }
    for (const { labels, histogram } of family.series) {
      let cumulative = 0;
      for (const [i, bound] of histogram.bounds.entries()) {
        cumulative += histogram.buckets[i];
        const le = { ...labels, le: numberText(bound) };
        lines.push(`${family.name}_bucket${labelText(le)} ${cumulative}`);
      }
      const inf = { ...labels, le: "+Inf" };
      lines.push(`${family.name}_bucket${labelText(inf)} ${histogram.count}`);
      // Rounded to a microsecond's worth: sums of milliseconds in floating point
      // print as 0.036000000000000004.
      const sum = Math.round(histogram.sum * 1e6) / 1e6;
      lines.push(`${family.name}_sum${labelText(labels)} ${numberText(sum)}`);
      lines.push(`${family.name}_count${labelText(labels)} ${histogram.count}`);
    }
  }
  return lines.join("\n") + "\n";
}

/**
 * The content type of {@linkcode exposition}'s text.
 *
 * @example
 * ```ts
 * import { EXPOSITION_CONTENT_TYPE } from "./metrics.ts";
 * new Response("up 1\n", { headers: { "content-type": EXPOSITION_CONTENT_TYPE } });
 * ```
 */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function labelText(labels: Labels | undefined): string {
  if (!labels) return "";
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabel(value)}"`);
  return pairs.length ? `{${pairs.join(",")}}` : "";
}

// The format's escapes: a label value escapes backslash, double quote and
// newline; help text only backslash and newline.
function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

function numberText(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

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
