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
  getLogger,
  type Logger,
  type LogLevel,
  resetSync,
} from "@logtape/logtape";
import { getLogFormatter, type LogFormat } from "./log_format.ts";
import { type BufferedSink, getBufferedSink } from "./log_sink.ts";

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
