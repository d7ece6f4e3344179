/**
 * The Prometheus text exposition format (version 0.0.4): metric families,
 * histograms, and the text `GET /metrics` answers with; and how the
 * families of several workers add up.
 *
 * Written here rather than with prom-client (npm, 15.1.3), which does run
 * under Deno: importing it took 140 ms (it pulls in node:cluster and
 * OpenTelemetry), more than poetry's whole start-up. The format is small;
 * `promtool check metrics` checks ours in the tests.
 *
 * @module
 */

/**
 * Upper bounds of the connection-duration buckets, in seconds: a fast poem
 * on loopback takes a millisecond, a slow one minutes.
 *
 * @example
 * ```ts
 * import { DURATION_BUCKETS } from "./exposition.ts";
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
 * import { Histogram } from "./exposition.ts";
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
 * import type { Labels } from "./exposition.ts";
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
 * import type { MetricFamily } from "./exposition.ts";
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
export const PER_WORKER = new Set([
  "poetry_connections_total",
  "poetry_faults_applied_total",
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
 * import { addFamilies, type MetricFamily } from "./exposition.ts";
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
    // A series a worker has and this thread not (a fault only a worker's
    // transfers got) is added too, after this thread's own.
    const samples = new Map(family.samples.map((s) => [key(s.labels), { ...s }]));
    for (const other of theirs) {
      if (other === undefined || other.type === "histogram") continue;
      for (const { labels, value } of other.samples) {
        const same = samples.get(key(labels));
        if (same) same.value += value;
        else samples.set(key(labels), { labels, value });
      }
    }
    return { ...family, samples: [...samples.values()] };
  });
}

/**
 * Writes metric families in the Prometheus text exposition format 0.0.4.
 *
 * @example
 * ```ts
 * import { exposition } from "./exposition.ts";
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
 * import { EXPOSITION_CONTENT_TYPE } from "./exposition.ts";
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
