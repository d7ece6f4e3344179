/**
 * The benchmark: `deno task bench [--json FILE] [--only NAME] [--repeat N] [--compare DIR]
 * [--workers N]`.
 *
 * Runs each scenario against the C epoll reference (the practical limit), a
 * minimal Node `net` server, the bare-Deno floor (fast and slow scenarios) and poetry
 * with its default options (info logs to stderr, here /dev/null) and with
 * `--log-level warning`, one after another, in one invocation, `--repeat`
 * times (default 3); each figure is the median of the repeats. `--compare
 * DIR` adds the poetry checked out in DIR (e.g. a `git worktree` of an older
 * commit) with default options, for before/after side by side. `--workers N`
 * adds poetry with one worker and with N, both allowed CPUs 0 and 1. At the end,
 * each target of issues 19 and 9 is printed as met or not, with its
 * references (bench/targets.ts).
 * The server is pinned to CPU 0 and the C load generator to CPU 1 (taskset);
 * CPU time and memory are read from /proc/PID. Linux only. Talks only to
 * 127.0.0.1. A benchmark, not a test: nothing here passes or fails.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fmt } from "./format.ts";
import { issue19, issue9, type Startup, type Verdict } from "./targets.ts";

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
  /** Why the scenario cannot run on this machine, if it cannot. */
  skip?: string;
}

interface Server {
  name: string;
  command: (poem: string, pace?: Scenario["pace"]) => string[];
  /** The modes it runs (the bare-Deno floors: fetch and slow); every mode when absent. */
  modes?: Scenario["mode"][];
  /** The CPUs it may run on (taskset's list). @default {"0"} */
  cpus?: string;
}

export interface Result {
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
  /** Slow mode: CPU µs per paced write (bytes received / numBytes writes). */
  cpuUsPerWrite?: number;
}

const USAGE = `usage: deno task bench [options]

Runs every scenario against the C epoll reference, a Node net server, the
bare-Deno floor and poetry, one after another; see docs/benchmark.md.
Linux only; it takes several minutes and the whole machine.

Options:
  --json FILE      also write the results to FILE as JSON
  --only NAME      only the scenarios whose name contains NAME (repeatable)
  --repeat N       run each N times and report the median (default: 3)
  --compare DIR    also run the poetry checked out in DIR (a git worktree)
  --workers N      also run poetry with --workers N on CPUs 0-1
  -h, --help       show this help`;

const HINT = "run deno task bench --help to see the options";

/** The command line, or exit: 0 after --help, 2 with one line for a bad one. */
function parseCommandLine(args: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        json: { type: "string" },
        only: { type: "string", multiple: true },
        repeat: { type: "string", default: "3" },
        compare: { type: "string" },
        workers: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    // parseArgs says e.g. "Unknown option '--bogus'. To specify a positional
    // argument starting with a '-', ..."; its first sentence is the point.
    const message = (err as Error).message.split(/\.( |$)/)[0];
    fail(message.charAt(0).toLowerCase() + message.slice(1));
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (!/^\d+$/.test(values.repeat) || Number(values.repeat) < 1) {
    fail(`--repeat must be a whole number from 1, got '${values.repeat}'`);
  }
  if (values.workers !== undefined && !/^(\d+|auto)$/.test(values.workers)) {
    fail(`--workers must be a whole number or auto, got '${values.workers}'`);
  }
  return values;
}

function fail(message: string): never {
  console.error(`error: ${message}`);
  console.error(`  ${HINT}`);
  Deno.exit(2);
}

const flags = parseCommandLine(Deno.args);
const REPEATS = Number(flags.repeat);

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
  { name: "bare Deno", modes: ["fetch", "slow"], command: bareDeno() },
  { name: "bare Deno + linger", modes: ["fetch"], command: bareDeno(["linger"]) },
  { name: "poetry", command: poetry(`${ROOT}main.ts`) },
  { name: "poetry (warning)", command: poetry(`${ROOT}main.ts`, ["--log-level", "warning"]) },
  // V8's young generation grows to 16 MiB semi-spaces under slow mode's
  // allocation; this row shows what a 2 MiB cap (DENO_V8_FLAGS, which a
  // `deno compile --v8-flags` build can bake in) does to memory and CPU.
  {
    name: "poetry (semi-space 2 MiB)",
    modes: ["slow"],
    command: (poem, pace) => [
      "env",
      "DENO_V8_FLAGS=--max-semi-space-size=2",
      ...poetry(`${ROOT}main.ts`)(poem, pace),
    ],
  },
  ...(flags.compare
    ? [{ name: `poetry @${flags.compare}`, command: poetry(`${flags.compare}/main.ts`) }]
    : []),
  // --workers N: poetry with one worker and with N, both free to use CPUs 0
  // and 1 (the load generator is on 1: on a 2-core machine they share it).
  ...(flags.workers
    ? [
      { name: "poetry, CPUs 0-1", cpus: "0,1", command: poetry(`${ROOT}main.ts`) },
      {
        name: `poetry --workers ${flags.workers}, CPUs 0-1`,
        cpus: "0,1",
        command: poetry(`${ROOT}main.ts`, ["--workers", flags.workers]),
      },
    ]
    : []),
];

/** The bare-Deno floor (bench/ref_server_deno.ts), with `extra` arguments after the poem. */
function bareDeno(extra: string[] = []): Server["command"] {
  const script = `${ROOT}bench/ref_server_deno.ts`;
  return (poem, pace) => [
    deno,
    "run",
    "--allow-net=127.0.0.1",
    "--allow-read",
    script,
    poem,
    ...extra,
    ...(pace ? [String(pace.numBytes), String(pace.delay)] : []),
  ];
}

/** poetry with the options a user runs: default logging (info), to stderr. */
function poetry(main: string, extra: string[] = []): Server["command"] {
  return (poem, pace) => [
    deno,
    "run",
    "--allow-net=127.0.0.1",
    "--allow-read",
    main,
    "--iface",
    "127.0.0.1",
    ...extra,
    ...(pace ? ["--num-bytes", String(pace.numBytes), "--delay", String(pace.delay)] : []),
    poem,
  ];
}

async function main(): Promise<void> {
  if (Deno.build.os !== "linux") {
    console.error("error: the benchmark reads /proc and runs on Linux only");
    Deno.exit(2);
  }
  await build();
  const dir = await Deno.makeTempDir({ prefix: "poetry-bench-" });
  try {
    const poems = await makePoems(dir);
    const fileLimit = openFileLimit();
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
      {
        name: "slow 500 B, 19k clients at 1 s",
        poem: poems.p500,
        clients: 19_000,
        mode: "slow",
        seconds: 5,
        pace: { numBytes: 10, delay: 1 },
        skip: fileLimit < 20_000
          ? `the open-file limit is ${fileLimit}; 19,000 clients need 20,000`
          : undefined,
      },
      { name: "16 MB, 200 never read", poem: poems.p16m, clients: 200, mode: "stall", seconds: 3 },
      { name: "1 GiB, 4 clients", poem: poems.p1g, clients: 4, mode: "once", seconds: 120 },
    ];
    const results: Result[] = [];
    for (const scenario of scenarios) {
      if (flags.only && !flags.only.some((only) => scenario.name.includes(only))) continue;
      if (scenario.skip) {
        console.error(`  ${scenario.name}: skipped, ${scenario.skip}`);
        continue;
      }
      for (const server of servers) {
        if (server.modes && !server.modes.includes(scenario.mode)) continue;
        const runs: Result[] = [];
        for (let i = 0; i < REPEATS; i++) runs.push(await run(scenario, server));
        const result = median(runs);
        results.push(result);
        console.error(`  ${scenario.name} / ${server.name}: ${summary(result)}`);
      }
    }
    const startup = await startupMs(poems.p3k, dir);
    printTable(results, startup);
    const verdicts: Record<string, Verdict[]> = {
      "issue 19": issue19(results, startup),
      "issue 9": issue9(results),
    };
    for (const [issue, list] of Object.entries(verdicts)) {
      console.log(`\nTargets (${issue}):`);
      for (const v of list) console.log(`- ${v.met ? "met" : "NOT met"}: ${v.target} (${v.seen})`);
    }
    if (flags.json) {
      await Deno.writeTextFile(
        flags.json,
        JSON.stringify(
          {
            date: new Date().toISOString(),
            machine: machine(),
            repeats: REPEATS,
            startupMs: startup,
            results,
            targets: verdicts,
          },
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

function pinned(cpu: number | string, command: string[]): string[] {
  return hasTaskset ? ["taskset", "-c", String(cpu), ...command] : command;
}

const hasTaskset = await new Deno.Command("taskset", {
  args: ["-V"],
  stdout: "null",
  stderr: "null",
})
  .output().then((o) => o.success, () => false);

async function run(scenario: Scenario, server: Server): Promise<Result> {
  const [cmd, ...args] = pinned(server.cpus ?? 0, server.command(scenario.poem, scenario.pace));
  const process = new Deno.Command(cmd, { args, stdout: "piped", stderr: "null", stdin: "null" })
    .spawn();
  await sleep(100); // let the previous server's sockets go
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
    // The peak is the measured run's: VmHWM would otherwise keep the
    // warm-up's (a cold server's JIT and heap growth, which the idle figure
    // below already leaves out), and per-client memory would mix the two.
    resetPeak(pid);
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
      const writes = load.bytes / scenario.pace.numBytes;
      result.cpuUsPerWrite = writes ? (cpu * 1e6 / CLK_TCK) / writes : 0;
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

/**
 * Start-up, cached, side by side: poetry from spawn to its first Serving
 * line, and `deno run` of a one-line script from spawn to its exit,
 * alternating, 11 of each; the medians.
 */
async function startupMs(poem: string, dir: string): Promise<Startup> {
  const script = `${dir}/one_line.ts`;
  await Deno.writeTextFile(script, "console.log(1);\n");
  const [cmd, ...args] = servers.find((s) => s.name === "poetry")!.command(poem);
  const poetry: number[] = [];
  const oneLine: number[] = [];
  for (let i = 0; i < 12; i++) {
    let started = performance.now();
    const process = new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).spawn();
    await servingPort(process);
    // The first of each is the cache's warm-up, not counted.
    if (i > 0) poetry.push(performance.now() - started);
    process.kill("SIGKILL");
    await process.status;
    started = performance.now();
    await new Deno.Command(deno, { args: ["run", script], stdout: "null" }).output();
    if (i > 0) oneLine.push(performance.now() - started);
  }
  const mid = (times: number[]) => times.sort((a, b) => a - b)[times.length >> 1];
  return { poetry: mid(poetry), script: mid(oneLine) };
}

function cpuTicks(pid: number): number {
  // Fields after the parenthesised command name; utime and stime are 14 and 15.
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return NaN; // the server died
  }
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0);
  } catch {
    return 0; // the server died (a reference without an EMFILE guard): its run shows the errors
  }
}

/** Resets VmHWM to the current RSS (`clear_refs` value 5, Linux 4.0+). */
function resetPeak(pid: number): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // An older kernel: the peak then includes the warm-up.
  }
}

function hwmKiB(pid: number): number | undefined {
  try {
    const hwm = /VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1];
    return hwm ? Number(hwm) : undefined;
  } catch {
    return undefined; // the server died
  }
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
  if (r.cpuUsPerWrite !== undefined) parts.push(`${fmt(r.cpuUsPerWrite)} µs CPU/paced write`);
  return parts.join(", ");
}

function printTable(results: Result[], startup: Startup): void {
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
    `\nStart-up, cached, medians of 11 side by side: poetry to its first Serving line ${
      fmt(startup.poetry)
    } ms; deno run of a one-line script ${fmt(startup.script)} ms`,
  );
  console.log(`${machine()}; ${new Date().toISOString()}`);
}

function machine(): string {
  const cpu = /model name\s*:\s*(.+)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ??
    "unknown CPU";
  return `${cpu}, ${navigator.hardwareConcurrency} cores, Linux ${Deno.osRelease()}, Deno ${Deno.version.deno}`;
}

/** Each figure the median of the repeats (figure by figure, not one whole run). */
function median(runs: Result[]): Result {
  const mid = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const out: Result = { ...runs[0] };
  for (const key of Object.keys(out) as (keyof Result)[]) {
    if (typeof out[key] === "number") {
      (out as unknown as Record<string, number>)[key] = mid(
        runs.map((r) => r[key] as number),
      );
    }
  }
  return out;
}

function openFileLimit(): number {
  const limits = Deno.readTextFileSync("/proc/self/limits");
  return Number(/Max open files\s+(\d+)/.exec(limits)?.[1] ?? 0);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

if (import.meta.main) await main();
