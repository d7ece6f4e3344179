/**
 * Shared by the tests: start the real program as a subprocess, read its
 * `Serving` lines, fetch from it over TCP, and make poem fixtures.
 *
 * Set `POETRY_SERVER` to run the same tests against another command, such
 * as a compiled binary: `POETRY_SERVER=dist/poetry deno task test`.
 *
 * @module
 */

import { fetchPoem, type PoemAddress } from "../lib/client.ts";
import { STREAM_THRESHOLD } from "../lib/core/poem.ts";

/** A poem size just over the threshold, so the server streams it from disk. */
export const STREAMED_SIZE: number = STREAM_THRESHOLD + 64 * 1024;

/** The repository root; servers run with it as their working directory. */
export const ROOT: string = decodeURIComponent(new URL("..", import.meta.url).pathname)
  .replace(/^\/([A-Za-z]:)/, "$1");

/**
 * How long a server may take to print its `Serving` lines, or a bad command
 * line to exit, before it is killed. Only a hang reaches it: on a 2-core
 * machine under a load of 10-20 a start-up takes seconds, not a minute.
 */
export const START_TIMEOUT_MS = 60_000;

/**
 * The default deadline of `waitForStderr` and `waitForLines`: they return as
 * soon as the line is there, so the deadline only bounds a line that never
 * comes, and a busy machine must not reach it.
 */
export const WAIT_TIMEOUT_MS = 20_000;

/** Whether the tests run against a command named by `POETRY_SERVER`. */
export const CUSTOM_SERVER: boolean = Boolean(Deno.env.get("POETRY_SERVER"));

/** The command that starts the server under test, before its arguments. */
export function serverCommand(): string[] {
  const custom = Deno.env.get("POETRY_SERVER");
  if (custom) return custom.trim().split(/\s+/);
  return [Deno.execPath(), "run", "--allow-net", "--allow-read", "main.ts"];
}

/** A server started by {@linkcode startServer}. */
export interface RunningServer {
  /** The child process. */
  process: Deno.ChildProcess;
  /** Addresses from the `Serving` lines, in order. */
  addresses: PoemAddress[];
  /** The `Serving` lines as printed. */
  lines: string[];
  /** Everything on stdout after the `Serving` lines, once the process has ended. */
  restOfStdout(): Promise<string>;
  /** Everything on stderr so far. */
  stderr(): string;
  /** Waits until stderr matches, up to `timeoutMs`. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /**
   * Waits until stderr has `count` lines matching `pattern`, up to `timeoutMs`
   * (a regex like `/(x[\s\S]*){30}/` backtracks for ever when it fails).
   */
  waitForLines(pattern: RegExp, count: number, timeoutMs?: number): Promise<string>;
  /** Sends a signal (default SIGTERM) and waits for the exit. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /** Starts reading stderr, for a server started with `stallStderr`. */
  drainStderr(): void;
}

/** Options for {@linkcode startServer}. */
export interface StartOptions {
  /** How many `Serving` lines to wait for. @default {1} */
  listeners?: number;
  /** Put before the server command, e.g. `["sh", "-c", "ulimit -n 64; exec \"$0\" \"$@\""]`. */
  wrapper?: string[];
  /** Extra environment. */
  env?: Record<string, string>;
  /**
   * Leave stderr unread, like a log pipe whose reader stopped, until
   * `drainStderr()` is called. @default {false}
   */
  stallStderr?: boolean;
  /** The command instead of {@linkcode serverCommand}, e.g. with other permissions. */
  command?: string[];
}

/**
 * Starts the server with `args` and waits for its `Serving` lines.
 * Stderr is drained all along, so a chatty server never blocks on a full pipe,
 * unless `stallStderr` is set.
 */
export async function startServer(
  args: string[],
  options: StartOptions = {},
): Promise<RunningServer> {
  const [cmd, ...rest] = [
    ...(options.wrapper ?? []),
    ...(options.command ?? serverCommand()),
    ...args,
  ];
  const process = new Deno.Command(cmd, {
    args: rest,
    cwd: ROOT,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderrText = "";
  let stderrDone: Promise<void> | undefined;
  const drainStderr = () => {
    stderrDone ??= (async () => {
      for await (const text of process.stderr.pipeThrough(new TextDecoderStream())) {
        stderrText += text;
      }
    })();
  };
  if (!options.stallStderr) drainStderr();
  const lines = process.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(new LineSplitter());
  const reader = lines.getReader();
  const serving: string[] = [];
  const timeout = setTimeout(() => process.kill("SIGKILL"), START_TIMEOUT_MS);
  while (serving.length < (options.listeners ?? 1)) {
    const { value, done } = await reader.read();
    if (done) {
      clearTimeout(timeout);
      await process.status;
      drainStderr();
      await stderrDone;
      throw new Error(`server exited before listening:\n${stderrText}`);
    }
    serving.push(value);
  }
  clearTimeout(timeout);
  const restOfStdout = (async () => {
    let text = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value + "\n";
    return text;
  })();
  let stopped: Promise<Deno.CommandStatus> | undefined;
  return {
    process,
    lines: serving,
    addresses: serving.map(parseServingLine),
    restOfStdout: () => restOfStdout,
    stderr: () => stderrText,
    drainStderr,
    async waitForStderr(pattern, timeoutMs = WAIT_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(stderrText)) {
        if (Date.now() > deadline) {
          throw new Error(`stderr never matched ${pattern}:\n${stderrText}`);
        }
        await delay(20);
      }
      return stderrText;
    },
    async waitForLines(pattern, count, timeoutMs = WAIT_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      const matching = () => stderrText.split("\n").filter((line) => pattern.test(line)).length;
      while (matching() < count) {
        if (Date.now() > deadline) {
          throw new Error(
            `stderr has ${matching()} of ${count} lines matching ${pattern}:\n${stderrText}`,
          );
        }
        await delay(20);
      }
      return stderrText;
    },
    stop(signal: Deno.Signal = "SIGTERM") {
      stopped ??= (async () => {
        try {
          process.kill(signal);
        } catch {
          // Exited already.
        }
        const status = await process.status;
        // A stalled stderr is still unread: discard it rather than wait.
        if (stderrDone) await stderrDone;
        else await process.stderr.cancel();
        await restOfStdout;
        return status;
      })();
      return stopped;
    },
  };
}

/** Runs the server to completion (for bad input) and collects its output. */
export async function runServer(
  args: string[],
  options: { wrapper?: string[]; command?: string[]; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...rest] = [
    ...(options.wrapper ?? []),
    ...(options.command ?? serverCommand()),
    ...args,
  ];
  const process = new Deno.Command(cmd, {
    args: rest,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timeout = setTimeout(() => {
    try {
      process.kill("SIGKILL");
    } catch {
      // Exited just now, before `output()` settled.
    }
  }, options.timeoutMs ?? START_TIMEOUT_MS);
  const { code, stdout, stderr } = await process.output();
  clearTimeout(timeout);
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** `Serving poems/x.txt on [::1]:10001.` → `{ hostname: "::1", port: 10001 }`. */
export function parseServingLine(line: string): PoemAddress {
  const match = /^Serving .+ on (?:\[([^\]]+)\]|([^:\s]+)):(\d+)\.$/.exec(line);
  if (!match) throw new Error(`not a Serving line: ${JSON.stringify(line)}`);
  return { hostname: match[1] ?? match[2], port: Number(match[3]) };
}

/** Fetches a poem with the project's own client. */
export function fetchBytes(address: PoemAddress): Promise<Uint8Array> {
  return fetchPoem(address);
}

/**
 * Connects and reads, recording when each chunk arrived (ms since connect).
 * Stops after `maxBytes` if given, closing early like a client that leaves.
 */
export async function readTimed(
  address: PoemAddress,
  maxBytes = Infinity,
): Promise<{ bytes: Uint8Array; arrivals: number[]; ms: number }> {
  const conn = await Deno.connect({ ...address, transport: "tcp" });
  const started = performance.now();
  const parts: Uint8Array[] = [];
  const arrivals: number[] = [];
  const buffer = new Uint8Array(64 * 1024);
  let total = 0;
  try {
    while (total < maxBytes) {
      const n = await conn.read(buffer);
      if (n === null) break;
      parts.push(buffer.slice(0, n));
      arrivals.push(performance.now() - started);
      total += n;
    }
  } finally {
    conn.close();
  }
  return { bytes: concat(parts), arrivals, ms: performance.now() - started };
}

/**
 * Connects, or returns `"reset"` when the server reset the connection before
 * `Deno.connect` settled. A server that resets at once (or writes a little and
 * resets within a millisecond) can fail `Deno.connect` itself, which asks the
 * socket for its addresses once the handshake is done; under load the client's
 * task often runs only after the RST. That is the reset a test of a resetting
 * fault expects, with no byte read; any other error is thrown.
 *
 * @example
 * ```ts
 * const conn = await connectOrReset({ hostname: "127.0.0.1", port: 10000 });
 * if (conn === "reset") console.log("reset before connect settled");
 * ```
 */
export async function connectOrReset(address: PoemAddress): Promise<Deno.TcpConn | "reset"> {
  try {
    return await Deno.connect({ ...address, transport: "tcp" });
  } catch (err) {
    // ECONNRESET, or ENOTCONN from getpeername() on a socket already reset.
    if (err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.NotConnected) {
      return "reset";
    }
    throw err;
  }
}

/**
 * Like {@linkcode readTimed}, to the end of the stream, and says how the
 * stream ended: `eof`, or `reset` (ECONNRESET), a faulty server's two ends.
 * A reset before the connection was made is a reset with no byte (see
 * {@linkcode connectOrReset}).
 */
export async function readToEnd(
  address: PoemAddress,
): Promise<{ bytes: Uint8Array; arrivals: number[]; ms: number; end: "eof" | "reset" }> {
  const conn = await connectOrReset(address);
  if (conn === "reset") return { bytes: new Uint8Array(0), arrivals: [], ms: 0, end: "reset" };
  const started = performance.now();
  const parts: Uint8Array[] = [];
  const arrivals: number[] = [];
  const buffer = new Uint8Array(64 * 1024);
  let end: "eof" | "reset" = "eof";
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) {
      parts.push(buffer.slice(0, n));
      arrivals.push(performance.now() - started);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
    end = "reset";
  } finally {
    conn.close();
  }
  return { bytes: concat(parts), arrivals, ms: performance.now() - started, end };
}

/** Joins byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A temporary directory with the given files; removed by the returned cleanup. */
export async function makePoems(
  files: Record<string, string | Uint8Array>,
): Promise<{ dir: string; path: (name: string) => string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "poetry-test-" });
  for (const [name, content] of Object.entries(files)) {
    const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
    await Deno.writeFile(`${dir}/${name}`, bytes);
  }
  return {
    dir,
    path: (name) => `${dir}/${name}`,
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Deterministic pseudo-random bytes (xorshift32), so a failure can be reproduced. */
export function seededBytes(length: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Where to look for free ports: below the range the system hands out for
 * port 0 and outgoing connections (Linux: ip_local_port_range), so that a
 * port found free here is not taken by another test's `port: 0` listener
 * between the check and the server's own bind.
 */
function quietPorts(): [number, number] {
  try {
    const [low] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range")
      .trim().split(/\s+/).map(Number);
    if (low > 21_000) return [20_000, low];
  } catch {
    // Not Linux: any range will do as well as another.
  }
  return [20_000, 50_000];
}

/** A port nobody listens on now, found by trying. */
export function freePort(hostname = "127.0.0.1"): number {
  const [low, high] = quietPorts();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    try {
      Deno.listen({ hostname, port }).close();
      return port;
    } catch {
      // Taken; try another.
    }
  }
  throw new Error("no free port found");
}

/** A run of `count` consecutive free ports, found by trying. */
export function freePortRange(count: number): number {
  const [low, high] = quietPorts();
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = low + Math.floor(Math.random() * (high - low - count));
    const held: Deno.Listener[] = [];
    try {
      for (let i = 0; i < count; i++) {
        held.push(Deno.listen({ hostname: "127.0.0.1", port: first + i }));
      }
      return first;
    } catch {
      // Taken; try another run.
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

/** Whether this machine has an IPv6 loopback to listen on. */
export function hasIpv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

/** Resident memory of a process, in KiB (Linux: VmRSS from /proc). */
export function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

/** Sockets among a process's descriptors (Linux: /proc). */
export function socketCount(pid: number): number {
  let sockets = 0;
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`).startsWith("socket:")) sockets++;
    } catch {
      // Closed while we looked.
    }
  }
  return sockets;
}

/**
 * Waits until a process holds at least `count` sockets (Linux: /proc), up to
 * `timeoutMs`: e.g. until the server has accepted the clients a test
 * connected, rather than a fixed sleep that a busy machine outlasts.
 */
export async function waitForSockets(
  pid: number,
  count: number,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (socketCount(pid) < count) {
    if (Date.now() > deadline) {
      throw new Error(`process ${pid} holds ${socketCount(pid)} of ${count} sockets`);
    }
    await delay(10);
  }
}

/** A connected pair of sockets on loopback: the server's end and the client's. */
export async function connectedPair(): Promise<{ server: Deno.Conn; client: Deno.Conn }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [server, client] = await Promise.all([
    listener.accept(),
    Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
  ]);
  listener.close();
  return { server, client };
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Splits a text stream into lines. */
class LineSplitter extends TransformStream<string, string> {
  constructor() {
    let rest = "";
    super({
      transform(chunk, controller) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const line of parts) controller.enqueue(line.replace(/\r$/, ""));
      },
      flush(controller) {
        if (rest) controller.enqueue(rest);
      },
    });
  }
}

/**
 * The admin endpoint's base URL, from the server's log line
 * `Admin endpoint on http://127.0.0.1:9100/ ...` (so `--admin HOST:0` works).
 */
export async function adminUrl(server: RunningServer): Promise<string> {
  const stderr = await server.waitForStderr(/Admin endpoint on http:\/\/\S+\//);
  return /Admin endpoint on (http:\/\/\S+\/)/.exec(stderr)![1];
}

/**
 * The control endpoint's base URL without the trailing slash (as Toxiproxy
 * clients take it), from the log line `Control endpoint (Toxiproxy API) on
 * http://127.0.0.1:8474/ ...`.
 */
export async function controlUrl(server: RunningServer): Promise<string> {
  const stderr = await server.waitForStderr(/Control endpoint \(Toxiproxy API\) on http:\/\/\S+\//);
  return /Control endpoint \(Toxiproxy API\) on (http:\/\/\S+)\//.exec(stderr)![1];
}

/** GETs a URL and returns the status and body as text. */
export async function httpGet(
  url: string,
): Promise<{ status: number; body: string; type: string | null }> {
  const response = await fetch(url);
  return {
    status: response.status,
    body: await response.text(),
    type: response.headers.get("content-type"),
  };
}

/**
 * The path of a program the tests drive (promtool, chromium, tmux), or
 * undefined when it is not installed: such a test is skipped and says so.
 */
export function findProgram(...candidates: string[]): string | undefined {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").concat("/usr/bin", "/usr/local/bin");
  for (const name of candidates) {
    for (const dir of name.includes("/") ? [""] : dirs) {
      const path = name.includes("/") ? name : `${dir}/${name}`;
      try {
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // Not here.
      }
    }
  }
  return undefined;
}

/** The value of one sample in Prometheus text, or undefined when absent. */
export function sampleValue(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/**
 * A Python 3 that can import `module` (`python3` on PATH, else Debian's
 * /usr/bin/python3, where `apt-get install python3-twisted` puts Twisted),
 * or `undefined`: a test then skips and says why.
 */
export async function pythonWith(module = "socket"): Promise<string | undefined> {
  for (const python of ["python3", "/usr/bin/python3"]) {
    try {
      const { success } = await new Deno.Command(python, {
        args: ["-c", `import ${module}`],
        stdout: "null",
        stderr: "null",
      }).output();
      if (success) return python;
    } catch {
      // Not installed here; try the next.
    }
  }
  return undefined;
}

/** Runs a Python client from tests/clients/ and parses the JSON line it prints per result. */
export async function runPythonClient(
  python: string,
  script: string,
  args: string[],
): Promise<Record<string, unknown>[]> {
  const { code, stdout, stderr } = await new Deno.Command(python, {
    args: [`${ROOT}/tests/clients/${script}`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout);
  if (code !== 0) {
    throw new Error(`${script} exited ${code}:\n${text}\n${new TextDecoder().decode(stderr)}`);
  }
  return text.trim().split("\n").filter((line) => line).map((line) => JSON.parse(line));
}

/**
 * Sends raw bytes to an HTTP server (or any TCP server) and reads the whole
 * answer, until the server closes or `ms` pass; a write the server refuses
 * still returns what it answered.
 */
export async function rawExchange(
  address: { hostname: string; port: number },
  request: string | Uint8Array,
  ms = 5000,
): Promise<string> {
  const conn = await Deno.connect(address);
  const timer = setTimeout(() => conn.close(), ms);
  const decoder = new TextDecoder();
  try {
    await conn.write(typeof request === "string" ? new TextEncoder().encode(request) : request)
      .catch(() => 0);
    const parts: string[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      parts.push(decoder.decode(buf.subarray(0, n), { stream: true }));
    }
    return parts.join("");
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
}
