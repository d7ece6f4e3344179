/**
 * Logging: LogTape records to stderr, as text or one JSON object per line.
 * stdout is kept for the `Serving ...` lines alone.
 *
 * Records go through a bounded buffer, written to stderr in batches without
 * ever waiting for it: a log pipe whose reader stopped costs dropped (and
 * counted) records, never a frozen server.
 *
 * @module
 */

import {
  configureSync,
  drain,
  type Drainable,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
  resetSync,
  type TextFormatter,
} from "@logtape/logtape";

/**
 * A log level a user may choose.
 *
 * @example
 * ```ts
 * import type { LogLevelName } from "./log.ts";
 * const level: LogLevelName = "warning";
 * ```
 */
export type LogLevelName = "debug" | "info" | "warning" | "error";
/**
 * How log records are written to stderr.
 *
 * @example
 * ```ts
 * import type { LogFormat } from "./log.ts";
 * const format: LogFormat = "json";
 * ```
 */
export type LogFormat = "text" | "json";

/**
 * How to log.
 *
 * @example
 * ```ts
 * import type { LogOptions } from "./log.ts";
 * const options: LogOptions = { level: "debug", format: "json" };
 * ```
 */
export interface LogOptions {
  /** Lowest level written. @default {"info"} */
  level?: LogLevelName;
  /** `text` for people, `json` for log collectors. @default {"text"} */
  format?: LogFormat;
  /**
   * Set in a worker (`--workers`): its records are formatted and batched as
   * usual, then handed to `post` (which sends them to the main thread, where
   * {@linkcode writeForwarded} queues them) instead of written to stderr, so
   * that one thread alone writes whole lines. The records the main thread
   * writes for everyone (listeners started, poems reloaded or not, the
   * shutdown summary) are left out.
   */
  worker?: { post(bytes: Uint8Array): void };
}

let current: BufferedSink | undefined;
let droppedBefore = 0;

/**
 * Logs a record the way `logger[level](template, properties)` does, for the
 * per-connection hot path. Once {@linkcode setupLogging} has configured the
 * sink, the record goes straight to it, with the template split once and
 * cached: LogTape's own dispatch parsed the template and built a record of
 * getters and closures for every call, 10 µs of CPU per connection against
 * about 3 µs this way (same bytes out; `deno task bench` shows both levels).
 * Without setupLogging (a program that configures LogTape itself), it is
 * exactly `logger[level](template, properties)`.
 *
 * @example
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { logRecord } from "./log.ts";
 * logRecord(getLogger(["poetry", "connection"]), "info", "{peer} left.", { peer: "127.0.0.1:1" });
 * ```
 */
export function logRecord(
  logger: Logger,
  level: LogLevel,
  template: string,
  properties: Record<string, unknown>,
): void {
  if (!logger.isEnabledFor(level)) return;
  if (!current) return logger[level === "warning" ? "warn" : level](template, properties);
  let parts = templates.get(template);
  if (!parts) templates.set(template, parts = template.split(/\{([^{}]+)\}/));
  // Text, key, text, key, ..., text: the keys become their values.
  const message: unknown[] = parts.slice();
  for (let i = 1; i < message.length; i += 2) message[i] = properties[parts[i]];
  current({
    category: logger.category,
    level,
    message,
    rawMessage: template,
    timestamp: Date.now(),
    properties,
  });
}

/**
 * Writes all of `text` to `stream` without making the caller wait: a pipe
 * whose reader stopped holds the write, not the server. A failed write is
 * dropped (the stream is gone: there is nowhere to say so).
 *
 * @example
 * ```ts
 * import { writeInBackground } from "./log.ts";
 * writeInBackground(Deno.stdout, "Serving poems/a.txt on 127.0.0.1:10000.\n");
 * ```
 */
export function writeInBackground(
  stream: { write(bytes: Uint8Array): Promise<number> },
  text: string,
): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  return (async () => {
    for (let at = 0; at < bytes.length;) at += await stream.write(bytes.subarray(at));
  })().catch(() => {});
}

const templates = new Map<string, string[]>();

/**
 * Sends the `poetry` loggers to stderr. Call once, before serving; call
 * {@linkcode flushLogs} before `Deno.exit`.
 *
 * @example
 * ```ts
 * import { setupLogging } from "./log.ts";
 * setupLogging({ level: "warning", format: "json" });
 * ```
 */
export function setupLogging(options: LogOptions = {}): void {
  if (current) droppedBefore += current.dropped;
  else addEventListener("unload", () => current?.flushSync());
  const worker = options.worker;
  current = getBufferedSink(
    getLogFormatter(options.format ?? "text"),
    worker
      ? {
        // Posting never waits: the main thread's buffer is the bounded one.
        // The length is read first: post may transfer the bytes away.
        write: (bytes) => Promise.resolve(postAll(worker, bytes)),
        writeSync: (bytes) => postAll(worker, bytes),
        // A message arrives whole; the main thread cuts its own writes.
        writeBytes: Infinity,
      }
      : {},
  );
  connectionTrace.on = options.level === "debug";
  resetSync();
  configureSync({
    sinks: { stderr: current },
    loggers: [
      { category: ["poetry"], lowestLevel: options.level ?? "info" as LogLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
      ...(worker
        ? MAIN_THREAD_ONLY.map((category) => ({ category, lowestLevel: "fatal" as const }))
        : []),
    ],
  });
}

function postAll(worker: { post(bytes: Uint8Array): void }, bytes: Uint8Array): number {
  const length = bytes.length;
  worker.post(bytes);
  return length;
}

/**
 * What the main thread logs for all workers: listeners started, poems
 * loaded, skipped and re-read (and failures to), the configuration re-read,
 * the drain and its summary. Each worker does the same with the same files,
 * and N copies of each record would say nothing more.
 */
const MAIN_THREAD_ONLY = [["poetry", "server"], ["poetry", "config"], ["poetry", "poem"]];

const decoder = new TextDecoder();

/**
 * Queues a worker's formatted records (whole lines, from its
 * {@linkcode LogOptions.worker} `post`) for stderr, with the main thread's
 * own: dropped, and counted, like them when stderr does not keep up.
 *
 * @example
 * ```ts
 * import { setupLogging, writeForwarded } from "./log.ts";
 * setupLogging();
 * writeForwarded(new TextEncoder().encode("a worker's record\n"));
 * ```
 */
export function writeForwarded(bytes: Uint8Array): void {
  current?.queueText(decoder.decode(bytes));
}

/**
 * Whether the per-connection debug records are wanted: one per accepted
 * client, one per paced write. {@linkcode setupLogging} sets it for
 * `--log-level debug`. A plain field because it is read on the hot path (up
 * to 100,000 paced writes a second), where even LogTape's level check, let
 * alone building a record, would cost at the default level.
 *
 * @example
 * ```ts
 * import { connectionTrace } from "./log.ts";
 * if (connectionTrace.on) console.error("debug records for every connection");
 * ```
 */
export const connectionTrace: { on: boolean } = { on: false };

const paceLog = getLogger(["poetry", "connection", "write"]);

/**
 * The debug record for one paced write; call it only when
 * {@linkcode connectionTrace} is on.
 *
 * @example
 * ```ts
 * import { connectionTrace, logPacedWrite } from "./log.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 10000 });
 * if (connectionTrace.on) logPacedWrite(conn, 10, 30, 500);
 * conn.close();
 * ```
 */
export function logPacedWrite(
  conn: Pick<Deno.Conn, "remoteAddr">,
  bytes: number,
  sent: number,
  total: number,
): void {
  paceLog.debug("{peer} took {bytes} bytes: {sent} of {total} sent.", () => ({
    peer: peerOf(conn),
    bytes,
    sent,
    total,
  }));
}

function peerOf(conn: Pick<Deno.Conn, "remoteAddr">): string {
  const addr = conn.remoteAddr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `${host}:${addr.port}`;
}

/**
 * Waits until the buffered records are on stderr, for at most `timeoutMs`:
 * a stderr that takes nothing must not keep the process from exiting.
 * Resolves with whether everything was written.
 *
 * @example
 * ```ts
 * import { flushLogs } from "./log.ts";
 * await flushLogs(2000);
 * Deno.exit(0);
 * ```
 */
export async function flushLogs(timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([drain().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How many log records were dropped because stderr did not keep up, since
 * the process started.
 *
 * @example
 * ```ts
 * import { droppedLogRecords } from "./log.ts";
 * console.log(`poetry_log_records_dropped_total ${droppedLogRecords()}`);
 * ```
 */
export function droppedLogRecords(): number {
  return droppedBefore + (current?.dropped ?? 0);
}

/**
 * Escapes what would let text forge or garble a line of output: C0 controls,
 * DEL, C1 controls and the Unicode line and paragraph separators. `\n`, `\r`
 * and `\t` become those two-character escapes, the rest `\xNN` or `\uNNNN`,
 * and a backslash becomes two, so that every escaped text reads back to one
 * original (a newline and a backslash followed by `n` print differently).
 *
 * @example
 * ```ts
 * import { escapeControl } from "./log.ts";
 * escapeControl("x\nServing fake.txt"); // "x\\nServing fake.txt"
 * escapeControl("a\\nb.txt"); // "a\\\\nb.txt"
 * ```
 */
export function escapeControl(text: string): string {
  // LogTape's sanitizeControlSequences keeps tabs, SGR colour codes and
  // U+2028/U+2029, and its `\n` option is all or nothing per formatter.
  return CONTROL.test(text) ? text.replace(CONTROL_ALL, escapeOne) : text;
}

// Matching control characters is the point here.
// deno-lint-ignore no-control-regex
const CONTROL = /[\\\x00-\x1f\x7f-\x9f\u2028\u2029]/;
const CONTROL_ALL = new RegExp(CONTROL.source, "g");
const NAMED: Record<string, string> = {
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

function escapeOne(char: string): string {
  const code = char.charCodeAt(0);
  return NAMED[char] ??
    (code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`);
}

/**
 * The formatter for a log format: `text` is LogTape's text format with
 * values bare and control characters escaped, `json` one JSON object per line.
 *
 * @example
 * ```ts
 * import { getLogFormatter } from "./log.ts";
 * const format = getLogFormatter("text");
 * format({
 *   category: ["poetry"],
 *   level: "info",
 *   message: ["Hello, ", "world", "."],
 *   rawMessage: "Hello, {who}.",
 *   timestamp: 0,
 *   properties: { who: "world" },
 * }); // "1970-01-01 00:00:00.000 +00 [INF] poetry: Hello, world.\n"
 * ```
 */
export function getLogFormatter(format: LogFormat): TextFormatter {
  if (format === "json") return jsonLine;
  return getTextFormatter({ timestamp: utcTimestamp(), category: ".", value: plainValue });
}

/**
 * One JSON object per line, with the same fields as LogTape's JSON Lines
 * formatter; ours renders values in `message` bare (`poems/a.txt`, not
 * `"poems/a.txt"`), which LogTape's has no option for.
 */
function jsonLine(record: LogRecord): string {
  return JSON.stringify({
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: record.level.toUpperCase(),
    message: record.message.map(String).join(""),
    logger: record.category.join("."),
    ...record.properties,
  }) + "\n";
}

// Strings and numbers as they are: LogTape's "bare" option still sends
// numbers through Deno.inspect, which was a tenth of the CPU per connection.
function plainValue(value: unknown, inspect: (value: unknown) => string): string {
  if (typeof value === "number") return String(value);
  return escapeControl(typeof value === "string" ? value : inspect(value));
}

/**
 * LogTape's `date-time-tz` timestamp in UTC, `2026-11-24 21:03:19.865 +00`,
 * with the date and time worked out once a second instead of per record.
 */
function utcTimestamp(): (timestamp: number) => string {
  let second = NaN;
  let prefix = "";
  return (timestamp) => {
    const ms = Math.trunc(timestamp);
    const now = Math.floor(ms / 1000);
    if (now !== second) {
      const d = new Date(now * 1000);
      second = now;
      prefix = `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ` +
        `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}.`;
    }
    const fraction = ms - now * 1000;
    return `${prefix}${fraction < 10 ? "00" : fraction < 100 ? "0" : ""}${fraction} +00`;
  };
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

/**
 * Where and how a {@linkcode getBufferedSink} writes.
 *
 * @example
 * ```ts
 * import type { BufferedSinkOptions } from "./log.ts";
 * const options: BufferedSinkOptions = { maxChars: 64 * 1024 };
 * ```
 */
export interface BufferedSinkOptions {
  /**
   * Writes some of the bytes and resolves with how many, like
   * `Deno.stderr.write`. Must not block the event loop.
   * @default {Deno.stderr.write}
   */
  write?: (bytes: Uint8Array) => Promise<number>;
  /** Writes some of the bytes at once, for {@linkcode BufferedSink.flushSync}. @default {Deno.stderr.writeSync} */
  writeSync?: (bytes: Uint8Array) => number;
  /**
   * Most formatted text held, waiting or being written, in UTF-16 code
   * units; a record that does not fit is dropped and counted.
   * @default {1048576}
   */
  maxChars?: number;
  /** Text waiting that starts a write at once rather than on the timer. @default {16384} */
  batchChars?: number;
  /**
   * Most bytes per write, cut at record boundaries (a longer record is one
   * write of its own). A pipe takes a write of up to PIPE_BUF (4096 on
   * Linux) whole or not at all, so a process that exits with its stderr
   * stuck leaves whole records behind, never half of one.
   * @default {4096}
   */
  writeBytes?: number;
  /**
   * How long a record may wait for others to join its write. Each write to
   * stderr is an op that Deno runs on a blocking thread; at thousands of
   * connections a second, a write per event-loop turn cost more than the
   * records themselves. @default {10}
   */
  flushMs?: number;
}

/** A LogTape sink from {@linkcode getBufferedSink}. */
export interface BufferedSink extends Drainable {
  /** Formats the record and queues it, or drops it when the buffer is full. */
  (record: LogRecord): void;
  /** Records dropped so far, for a full buffer or a failed write. */
  readonly dropped: number;
  /**
   * Queues records already formatted (whole lines, e.g. from a worker),
   * dropped whole, and counted line by line, when they do not fit.
   */
  queueText(text: string): void;
  /**
   * Writes what is waiting, synchronously, for the moment of exit; does
   * nothing and returns `false` if a write is still under way, since stderr
   * may be stuck and waiting would hang the process.
   */
  flushSync(): boolean;
  /**
   * Resolves once nothing waits and nothing is being written, which takes
   * forever while stderr is stuck: bound it, as {@linkcode flushLogs} does.
   */
  drain(): Promise<void>;
}

const DROP_NOTICE = "Dropped {dropped} log records: stderr was not keeping up.";

/**
 * A LogTape sink that never waits for stderr: records are formatted at once,
 * held in a bounded buffer, and written in batches by one asynchronous write
 * at a time. When the buffer is full records are dropped and counted; after
 * the next write that succeeds, one warning record says how many.
 *
 * LogTape's own non-blocking stream sink writes one record per write and
 * bounds the buffer by records, not bytes, hence this one.
 *
 * @example
 * ```ts
 * import { configureSync } from "@logtape/logtape";
 * import { getBufferedSink, getLogFormatter } from "./log.ts";
 * const stderr = getBufferedSink(getLogFormatter("text"));
 * configureSync({ sinks: { stderr }, loggers: [{ category: ["poetry"], sinks: ["stderr"] }] });
 * ```
 */
export function getBufferedSink(
  format: TextFormatter,
  options: BufferedSinkOptions = {},
): BufferedSink {
  const write = options.write ?? ((bytes: Uint8Array) => Deno.stderr.write(bytes));
  const writeSync = options.writeSync ?? ((bytes: Uint8Array) => Deno.stderr.writeSync(bytes));
  const maxChars = options.maxChars ?? 1024 * 1024;
  const batchChars = options.batchChars ?? 16 * 1024;
  const flushMs = options.flushMs ?? 10;
  const writeBytes = options.writeBytes ?? 4096;
  const encoder = new TextEncoder();
  let waiting: string[] = [];
  let waitingChars = 0;
  let writingChars = 0;
  let writing = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let dropped = 0;
  let unreported = 0;
  let idle: PromiseWithResolvers<void> | undefined;

  const take = (): Uint8Array => {
    const bytes = encoder.encode(waiting.join(""));
    waiting = [];
    waitingChars = 0;
    return bytes;
  };

  const writeNow = () => {
    clearTimeout(timer);
    timer = undefined;
    if (writing) return;
    if (waiting.length === 0) {
      idle?.resolve();
      idle = undefined;
      return;
    }
    const records = waiting.length;
    writingChars = waitingChars;
    writing = true;
    writeAll(take()).then(
      () => {
        // The notice may overshoot maxChars by its one line: it is owed.
        if (unreported > 0) queue(format(dropNotice(unreported)));
        unreported = 0;
      },
      () => {
        dropped += records;
        unreported += records;
      },
    ).finally(() => {
      writing = false;
      writingChars = 0;
      writeNow();
    });
  };

  // Where the write that starts at `at` ends: after the last record that
  // fits in writeBytes, or after the first record if none does. Records end
  // in "\n" and hold no other (the formatters escape it), and in UTF-8 that
  // byte is never part of another character.
  const endOfWrite = (bytes: Uint8Array, at: number) => {
    if (bytes.length - at <= writeBytes) return bytes.length;
    const last = bytes.lastIndexOf(NEWLINE, at + writeBytes - 1);
    if (last >= at) return last + 1;
    const next = bytes.indexOf(NEWLINE, at + writeBytes);
    return next === -1 ? bytes.length : next + 1;
  };

  const writeAll = async (bytes: Uint8Array) => {
    for (let at = 0; at < bytes.length;) {
      const end = endOfWrite(bytes, at);
      while (at < end) at += await write(bytes.subarray(at, end));
    }
  };

  const queue = (text: string) => {
    waiting.push(text);
    waitingChars += text.length;
  };

  const accept = (text: string, records: number) => {
    if (waitingChars + writingChars + text.length > maxChars) {
      dropped += records;
      unreported += records;
      return;
    }
    queue(text);
    if (writing) return;
    if (waitingChars >= batchChars) writeNow();
    else timer ??= setTimeout(writeNow, flushMs);
  };

  const sink = (record: LogRecord) => accept(format(record), 1);
  const queueText = (text: string) => {
    let lines = 0;
    for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) lines++;
    accept(text, lines);
  };

  const flushSync = () => {
    if (writing) return false;
    clearTimeout(timer);
    timer = undefined;
    const bytes = take();
    try {
      for (let at = 0; at < bytes.length;) {
        const end = endOfWrite(bytes, at);
        while (at < end) at += writeSync(bytes.subarray(at, end));
      }
      return true;
    } catch {
      // At exit there is nowhere left to report a broken stderr.
      return false;
    }
  };

  const drainSink = () => {
    if (!writing && waiting.length === 0) return Promise.resolve();
    idle ??= Promise.withResolvers<void>();
    if (!writing) writeNow();
    return idle.promise;
  };

  return Object.defineProperties(sink, {
    dropped: { get: () => dropped },
    queueText: { value: queueText },
    flushSync: { value: flushSync },
    drain: { value: drainSink },
    // The sink formats each record the moment it gets it, so LogTape need
    // not copy the record's properties first (a copy per record was a tenth
    // of the logging cost). LogTape 2.4.2 reads this symbol but does not
    // document it: the version is pinned in deno.json, and
    // tests/log_test.ts checks that records arrive uncopied.
    [IMMEDIATE]: { value: true },
  }) as BufferedSink;
}

const NEWLINE = 0x0a;

/** Marks a sink that consumes each record at once; see getBufferedSink. */
const IMMEDIATE = Symbol.for("LogTape.sinkSnapshotPolicy.immediate");

function dropNotice(count: number): LogRecord {
  return {
    category: ["poetry", "log"],
    level: "warning",
    message: ["Dropped ", count, " log records: stderr was not keeping up."],
    rawMessage: DROP_NOTICE,
    timestamp: Date.now(),
    properties: { dropped: count },
  };
}
