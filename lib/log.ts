/**
 * Logging: LogTape records to stderr, as text or one JSON object per line.
 * stdout is kept for the `Serving ...` lines alone.
 *
 * @module
 */

import {
  configureSync,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";
import type { LogFormat, LogLevelName } from "./options.ts";

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
}

/**
 * Sends the `poetry` loggers to stderr. Call once, before serving.
 *
 * @example
 * ```ts
 * import { setupLogging } from "./log.ts";
 * setupLogging({ level: "warning", format: "json" });
 * ```
 */
export function setupLogging(options: LogOptions = {}): void {
  const format = options.format === "json"
    ? jsonLine
    : getTextFormatter({ timestamp: "date-time-tz", category: ".", value: plainValue });
  const encoder = new TextEncoder();
  // A synchronous sink: a record is on stderr before the next line of code
  // runs, nothing is lost at exit, and no queue grows when stderr is slow.
  const stderr = (record: LogRecord) => writeAllSync(encoder.encode(format(record)));
  resetSync();
  configureSync({
    sinks: { stderr },
    loggers: [
      { category: ["poetry"], lowestLevel: options.level ?? "info" as LogLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
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
  return typeof value === "string" || typeof value === "number" ? String(value) : inspect(value);
}

function writeAllSync(bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length;) at += Deno.stderr.writeSync(bytes.subarray(at));
}
