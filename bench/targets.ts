/**
 * The performance issues' targets, each checked against one bench run's
 * figures and printed with the references it is measured against: issue 9's
 * (fast mode, memory) and issue 19's (slow mode ahead of Node, the streamed
 * poem, start-up).
 *
 * @module
 */

import type { Result } from "./bench.ts";
import { fmt } from "./format.ts";

/** One target: what it asks, whether this run met it, and the figures it was judged on. */
export interface Verdict {
  target: string;
  met: boolean;
  seen: string;
}

/** Start-up, median ms: poetry to its first Serving line, and `deno run` of a one-line script. */
export interface Startup {
  poetry: number;
  script: number;
}

type Get = (scenario: string, server: string) => Result | undefined;

function finder(results: Result[]): Get {
  return (scenario, server) =>
    results.find((r) => r.scenario.startsWith(scenario) && r.server === server);
}

const pct = (x = 0) => `${(x * 100).toFixed(1)}%`;
const mib = (kib: number) => `${fmt(kib / 1024)} MiB`;

/** The targets of issue 9 (fast mode at the bare-Deno floor, memory per client). */
export function issue9(results: Result[]): Verdict[] {
  const get = finder(results);
  const out: Verdict[] = [];
  for (const scenario of ["3 KB", "1 MB"]) {
    const [p, bare, node] = ["poetry", "bare Deno", "Node net"].map((s) => get(scenario, s));
    if (!p || !bare || !node) continue;
    const ratio = p.cpuUsPerConn / bare.cpuUsPerConn;
    const lingering = get(scenario, "bare Deno + linger");
    const lingerRatio = lingering ? p.cpuUsPerConn / lingering.cpuUsPerConn : NaN;
    out.push({
      target: `${scenario}: CPU per connection within 1.10x of bare Deno and below Node net`,
      met: ratio <= 1.10 && p.cpuUsPerConn < node.cpuUsPerConn,
      seen: `${ratio.toFixed(2)}x bare Deno, ${
        lingerRatio.toFixed(2)
      }x bare Deno with the lingering close; poetry ${fmt(p.cpuUsPerConn)} µs, Node ${
        fmt(node.cpuUsPerConn)
      } µs`,
    });
  }
  const slow = get("slow 500 B, 10k", "poetry");
  if (slow) {
    out.push({
      target: "slow 10k: at most 3 KB per client",
      met: slow.perClientBytes <= 3072,
      seen: `${fmt(slow.perClientBytes)} B`,
    });
  }
  const stall = get("16 MB", "poetry");
  if (stall) {
    out.push({
      target: "200 clients never reading 16 MB: <= 16 KB per client",
      met: stall.perClientBytes <= 16 * 1024,
      seen: `${fmt(stall.perClientBytes)} B`,
    });
  }
  for (const scenario of ["3 KB", "1 MB"]) {
    const [info, warning] = ["poetry", "poetry (warning)"].map((s) => get(scenario, s));
    if (!info || !warning) continue;
    const cost = info.cpuUsPerConn / warning.cpuUsPerConn - 1;
    out.push({
      target: `${scenario}: info logging costs <= 10% CPU per connection over warning`,
      met: cost <= 0.10,
      seen: `+${(cost * 100).toFixed(1)}%`,
    });
  }
  return out;
}

/**
 * The targets of issue 19: slow mode ahead of Node with the default (info)
 * logging, 19k slow clients in no more memory than Node, a streamed poem at
 * 0.8x Node's throughput in at most 64 MiB, and a start-up within 1.3x of a
 * one-line script. Each names its references, with the bare-Deno floor.
 */
export function issue19(results: Result[], startup: Startup): Verdict[] {
  const get = finder(results);
  const out: Verdict[] = [];
  const slow = "slow 500 B, 10k";
  const [p, warn, node, bare, c] = [
    "poetry",
    "poetry (warning)",
    "Node net",
    "bare Deno",
    "C epoll",
  ]
    .map((s) => get(slow, s));
  if (p && node) {
    const floor = bare ? `; bare Deno ${fmt(bare.cpuUsPerWrite ?? NaN)} µs` : "";
    const ref = c ? `; C ${fmt(c.cpuUsPerWrite ?? NaN)} µs` : "";
    out.push({
      target: "slow 10k at 10 B / 0.1 s: CPU per paced write <= 0.9x Node's (info logging)",
      met: (p.cpuUsPerWrite ?? Infinity) <= 0.9 * (node.cpuUsPerWrite ?? 0),
      seen: `${((p.cpuUsPerWrite ?? NaN) / (node.cpuUsPerWrite ?? NaN)).toFixed(2)}x: poetry ${
        fmt(p.cpuUsPerWrite ?? NaN)
      } µs, Node ${fmt(node.cpuUsPerWrite ?? NaN)} µs${floor}${ref}`,
    });
    out.push({
      target: "slow 10k at 10 B / 0.1 s: rate of the ideal >= Node's (info logging)",
      met: (p.delivered ?? 0) >= (node.delivered ?? Infinity),
      seen: `poetry ${pct(p.delivered)}, Node ${pct(node.delivered)}${
        warn ? `; poetry at warning ${pct(warn.delivered)}` : ""
      }${bare ? `; bare Deno ${pct(bare.delivered)}` : ""}${c ? `; C ${pct(c.delivered)}` : ""}`,
    });
  }
  const big = "slow 500 B, 19k";
  const [bp, bnode, bbare, bc, bsemi] = [
    "poetry",
    "Node net",
    "bare Deno",
    "C epoll",
    "poetry (semi-space 2 MiB)",
  ].map((s) => get(big, s));
  if (bp && bnode) {
    out.push({
      target: "19k slow clients at 10 B / 1 s: 100% of the rate, peak RSS <= Node's",
      met: (bp.delivered ?? 0) >= 0.995 && bp.rssPeakKiB <= bnode.rssPeakKiB,
      seen: `poetry ${pct(bp.delivered)}, ${mib(bp.rssPeakKiB)}; Node ${pct(bnode.delivered)}, ${
        mib(bnode.rssPeakKiB)
      }${bbare ? `; bare Deno ${pct(bbare.delivered)}, ${mib(bbare.rssPeakKiB)}` : ""}${
        bc ? `; C ${mib(bc.rssPeakKiB)}` : ""
      }${
        bsemi
          ? `; poetry with 2 MiB semi-spaces ${pct(bsemi.delivered)}, ${mib(bsemi.rssPeakKiB)}`
          : ""
      }`,
    });
  }
  const [hp, hnode, hc] = ["poetry", "Node net", "C epoll"].map((s) => get("1 GiB", s));
  if (hp && hnode) {
    const ratio = hp.mbPerSec / hnode.mbPerSec;
    out.push({
      target: "1 GiB streamed to 4 clients: >= 0.8x Node's MB/s, peak RSS <= 64 MiB",
      met: ratio >= 0.8 && hp.rssPeakKiB <= 64 * 1024 && hp.completed === 4,
      seen: `${ratio.toFixed(2)}x: poetry ${fmt(hp.mbPerSec)} MB/s in ${
        mib(hp.rssPeakKiB)
      } (${hp.completed} of 4 completed), Node ${fmt(hnode.mbPerSec)} MB/s in ${
        mib(hnode.rssPeakKiB)
      }${hc ? `, C ${fmt(hc.mbPerSec)} MB/s` : ""}`,
    });
  }
  const ratio = startup.poetry / startup.script;
  out.push({
    target: "start-up to the first Serving line <= 1.3x a deno run of a one-line script",
    met: ratio <= 1.3,
    seen: `${ratio.toFixed(2)}x: ${fmt(startup.poetry)} ms vs ${fmt(startup.script)} ms`,
  });
  return out;
}
