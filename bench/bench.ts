/**
 * The benchmark: `deno task bench [--json FILE] [--only NAME]`.
 *
 * Runs each scenario against the C epoll reference (the practical limit), a
 * minimal Node `net` server and poetry, one after another, in one invocation.
 * The server is pinned to CPU 0 and the C load generator to CPU 1 (taskset);
 * CPU time and memory are read from /proc/PID. Linux only. Talks only to
 * 127.0.0.1. A benchmark, not a test: nothing here passes or fails.
 *
 * @module
 */

import { parseArgs } from "node:util";

const ROOT = new URL("..", import.meta.url).pathname;
const BUILD = `${ROOT}bench/build`;
const CLK_TCK = 100; // Linux's USER_HZ for /proc/PID/stat, fixed at 100 on every common build

interface Scenario {
  name: string;
  poem: string;
  clients: number;
  mode: "fetch" | "once" | "slow" | "stall";
  seconds: number;
  pace?: { numBytes: number; delay: number };
}

interface Server {
  name: string;
  command: (poem: string, pace?: Scenario["pace"]) => string[];
}

interface Result {
  scenario: string;
  server: string;
  connsPerSec: number;
  mbPerSec: number;
  cpuUsPerConn: number;
  rssIdleKiB: number;
  rssPeakKiB: number;
  perClientBytes: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  completed: number;
  delivered?: number;
  allServedSec?: number;
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: { json: { type: "string" }, only: { type: "string" } },
});

const deno = Deno.execPath();
const servers: Server[] = [
  {
    name: "C epoll",
    command: (
      poem,
      pace,
    ) => [
      `${BUILD}/ref_server`,
      poem,
      ...(pace ? [String(pace.numBytes), String(pace.delay)] : []),
    ],
  },
  {
    name: "Node net",
    command: (poem, pace) => [
      "node",
      `${ROOT}bench/ref_server_node.mjs`,
      poem,
      ...(pace ? [String(pace.numBytes), String(pace.delay)] : []),
    ],
  },
  {
    name: "poetry",
    command: (poem, pace) => [
      deno,
      "run",
      "--allow-net=127.0.0.1",
      "--allow-read",
      `${ROOT}main.ts`,
      "--iface",
      "127.0.0.1",
      "--log-level",
      "warning",
      ...(pace ? ["--num-bytes", String(pace.numBytes), "--delay", String(pace.delay)] : []),
      poem,
    ],
  },
];

async function main(): Promise<void> {
  if (Deno.build.os !== "linux") {
    console.error("error: the benchmark reads /proc and runs on Linux only");
    Deno.exit(2);
  }
  await build();
  const dir = await Deno.makeTempDir({ prefix: "poetry-bench-" });
  try {
    const poems = await makePoems(dir);
    const scenarios: Scenario[] = [
      { name: "3 KB, 50 clients", poem: poems.p3k, clients: 50, mode: "fetch", seconds: 5 },
      { name: "1 MB, 20 clients", poem: poems.p1m, clients: 20, mode: "fetch", seconds: 5 },
      {
        name: "slow 500 B, 10k clients",
        poem: poems.p500,
        clients: 10_000,
        mode: "slow",
        seconds: 5,
        pace: { numBytes: 10, delay: 0.1 },
      },
      { name: "16 MB, 200 never read", poem: poems.p16m, clients: 200, mode: "stall", seconds: 3 },
      { name: "1 GiB, 4 clients", poem: poems.p1g, clients: 4, mode: "once", seconds: 120 },
    ];
    const results: Result[] = [];
    for (const scenario of scenarios) {
      if (flags.only && !scenario.name.includes(flags.only)) continue;
      for (const server of servers) {
        const result = await run(scenario, server);
        results.push(result);
        console.error(`  ${scenario.name} / ${server.name}: ${summary(result)}`);
      }
    }
    const startup = await startupMs(poems.p3k);
    printTable(results, startup);
    if (flags.json) {
      await Deno.writeTextFile(
        flags.json,
        JSON.stringify(
          { date: new Date().toISOString(), machine: machine(), startupMs: startup, results },
          null,
          2,
        ),
      );
      console.error(`wrote ${flags.json}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Compiles the load generator and the C reference with the system's cc. */
async function build(): Promise<void> {
  await Deno.mkdir(BUILD, { recursive: true });
  for (const name of ["loadgen", "ref_server"]) {
    const { success, stderr } = await new Deno.Command("cc", {
      args: ["-O2", "-o", `${BUILD}/${name}`, `${ROOT}bench/${name}.c`],
      stderr: "piped",
    }).output();
    if (!success) throw new Error(`cc ${name}.c failed:\n${new TextDecoder().decode(stderr)}`);
  }
}

async function makePoems(dir: string): Promise<Record<string, string>> {
  const line = "The loop goes round and asks each file: are you ready? ";
  const text = (size: number) =>
    new TextEncoder().encode(line.repeat(Math.ceil(size / line.length)).slice(0, size));
  const write = async (name: string, bytes: Uint8Array) => {
    await Deno.writeFile(`${dir}/${name}`, bytes);
    return `${dir}/${name}`;
  };
  const block = (seed: number) => {
    const out = new Uint8Array(1 << 20);
    let x = seed || 1;
    for (let i = 0; i < out.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  };
  const p1g = `${dir}/1g.bin`;
  // Each MiB differs, so a misplaced block shows up as wrong bytes.
  using file = await Deno.open(p1g, { write: true, create: true });
  const base = block(12345);
  for (let i = 0; i < 1024; i++) {
    const chunk = base.slice();
    new DataView(chunk.buffer).setUint32(0, i);
    for (let at = 0; at < chunk.length;) at += await file.write(chunk.subarray(at));
  }
  return {
    p3k: await write("3k.txt", text(3000)),
    p500: await write("500.txt", text(500)),
    p1m: await write("1m.bin", block(7)),
    p16m: await write("16m.bin", new Uint8Array(16 << 20).map((_, i) => (i * 31) & 0xff)),
    p1g,
  };
}

function pinned(cpu: number, command: string[]): string[] {
  return hasTaskset ? ["taskset", "-c", String(cpu), ...command] : command;
}

const hasTaskset = await new Deno.Command("taskset", {
  args: ["-V"],
  stdout: "null",
  stderr: "null",
})
  .output().then((o) => o.success, () => false);

async function run(scenario: Scenario, server: Server): Promise<Result> {
  const [cmd, ...args] = pinned(0, server.command(scenario.poem, scenario.pace));
  const process = new Deno.Command(cmd, { args, stdout: "piped", stderr: "null", stdin: "null" })
    .spawn();
  try {
    const port = await servingPort(process);
    // Warm up with the same load for a second, so that "idle" is a warm
    // server and a client's memory is not charged with JIT and heap growth
    // (for poetry, 200 stalled clients: 58 KB each cold, 14 KB each warm).
    const [wcmd, ...wargs] = pinned(1, [
      `${BUILD}/loadgen`,
      scenario.mode,
      String(port),
      String(scenario.clients),
      "1",
      scenario.poem,
    ]);
    if (scenario.mode !== "once") {
      await new Deno.Command(wcmd, { args: wargs, stdout: "null" }).output();
    }
    await sleep(300);
    const pid = process.pid;
    const rssIdle = rssKiB(pid);
    const cpu0 = cpuTicks(pid);
    let peak = rssIdle;
    const sampler = setInterval(() => peak = Math.max(peak, rssKiB(pid)), 100);
    const [lg, ...lgArgs] = pinned(1, [
      `${BUILD}/loadgen`,
      scenario.mode,
      String(port),
      String(scenario.clients),
      String(scenario.seconds),
      scenario.poem,
    ]);
    const out = await new Deno.Command(lg, { args: lgArgs, stdout: "piped" }).output();
    clearInterval(sampler);
    peak = Math.max(peak, rssKiB(pid), hwmKiB(pid) ?? 0);
    const cpu = cpuTicks(pid) - cpu0;
    const load = JSON.parse(new TextDecoder().decode(out.stdout));
    const completed = load.completed as number;
    const result: Result = {
      scenario: scenario.name,
      server: server.name,
      completed,
      connsPerSec: completed / load.seconds,
      mbPerSec: load.bytes / load.seconds / 1e6,
      cpuUsPerConn: completed ? (cpu * 1e6 / CLK_TCK) / completed : 0,
      rssIdleKiB: rssIdle,
      rssPeakKiB: peak,
      perClientBytes: (peak - rssIdle) * 1024 / scenario.clients,
      p50Ms: load.p50_us / 1000,
      p99Ms: load.p99_us / 1000,
      errors: load.errors,
    };
    if (scenario.pace) {
      const ideal = scenario.clients * scenario.pace.numBytes / scenario.pace.delay *
        scenario.seconds;
      result.delivered = load.bytes_in_window / ideal;
      result.allServedSec = load.all_served_s;
    }
    return result;
  } finally {
    process.kill("SIGKILL");
    await process.status;
  }
}

async function servingPort(process: Deno.ChildProcess): Promise<number> {
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("server exited before listening");
    text += value;
  }
  reader.releaseLock();
  process.stdout.cancel().catch(() => {});
  return Number(/:(\d+)\.\s*$/m.exec(text)![1]);
}

/** Median time from spawn to the first Serving line of a cached `deno run`. */
async function startupMs(poem: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const started = performance.now();
    const [cmd, ...args] = servers[2].command(poem);
    const process = new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).spawn();
    await servingPort(process);
    times.push(performance.now() - started);
    process.kill("SIGKILL");
    await process.status;
  }
  return times.sort((a, b) => a - b)[3];
}

function cpuTicks(pid: number): number {
  // Fields after the parenthesised command name; utime and stime are 14 and 15.
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0);
}

function hwmKiB(pid: number): number | undefined {
  const hwm = /VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1];
  return hwm ? Number(hwm) : undefined;
}

function summary(r: Result): string {
  const parts = [
    `${fmt(r.connsPerSec)} conn/s`,
    `${fmt(r.mbPerSec)} MB/s`,
    `${fmt(r.cpuUsPerConn)} µs CPU/conn`,
    `RSS ${fmt(r.rssIdleKiB / 1024)} → ${fmt(r.rssPeakKiB / 1024)} MiB`,
    `${fmt(r.perClientBytes)} B/client`,
    `p50 ${fmt(r.p50Ms)} ms, p99 ${fmt(r.p99Ms)} ms`,
    `${r.errors} errors`,
  ];
  if (r.delivered !== undefined) parts.push(`${(r.delivered * 100).toFixed(1)}% of ideal rate`);
  return parts.join(", ");
}

function printTable(results: Result[], startup: number): void {
  const header = [
    "scenario",
    "server",
    "conn/s",
    "MB/s",
    "CPU µs/conn",
    "× C",
    "RSS idle MiB",
    "RSS peak MiB",
    "B/client",
    "p50 ms",
    "p99 ms",
    "rate",
    "errors",
  ];
  const rows = results.map((r) => {
    const c = results.find((x) => x.scenario === r.scenario && x.server === "C epoll");
    const ratio = c && c.cpuUsPerConn > 0 && r.cpuUsPerConn > 0
      ? (r.cpuUsPerConn / c.cpuUsPerConn).toFixed(2)
      : "-";
    return [
      r.scenario,
      r.server,
      fmt(r.connsPerSec),
      fmt(r.mbPerSec),
      r.completed ? fmt(r.cpuUsPerConn) : "-",
      r.completed && r.scenario.includes("never read") ? "-" : ratio,
      fmt(r.rssIdleKiB / 1024),
      fmt(r.rssPeakKiB / 1024),
      fmt(r.perClientBytes),
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      r.delivered === undefined ? "-" : `${(r.delivered * 100).toFixed(1)}%`,
      String(r.errors),
    ];
  });
  console.log(`| ${header.join(" | ")} |`);
  console.log(`| ${header.map(() => "---").join(" | ")} |`);
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
  console.log(
    `\npoetry start-up to first Serving line (cached deno run, median of 7): ${fmt(startup)} ms`,
  );
  console.log(`${machine()}; ${new Date().toISOString()}`);
}

function machine(): string {
  const cpu = /model name\s*:\s*(.+)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ??
    "unknown CPU";
  return `${cpu}, ${navigator.hardwareConcurrency} cores, Linux ${Deno.osRelease()}, Deno ${Deno.version.deno}`;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return "-";
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString("en-US");
  return n.toFixed(Math.abs(n) >= 10 ? 1 : 2);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

if (import.meta.main) await main();
