/**
 * How a log record is written: one line of text (UTC timestamps, control
 * characters escaped so no value can forge a second line) or one JSON
 * object per line.
 *
 * @module
 */

import { getTextFormatter, type LogRecord, type TextFormatter } from "@logtape/logtape";

/**
 * How log records are written to stderr.
 *
 * @example
 * ```ts
 * import type { LogFormat } from "./log_format.ts";
 * const format: LogFormat = "json";
 * ```
 */
export type LogFormat = "text" | "json";

/**
 * Escapes what would let text forge or garble a line of output: C0 controls,
 * DEL, C1 controls and the Unicode line and paragraph separators. `\n`, `\r`
 * and `\t` become those two-character escapes, the rest `\xNN` or `\uNNNN`,
 * and a backslash becomes two, so that every escaped text reads back to one
 * original (a newline and a backslash followed by `n` print differently).
 *
 * @example
 * ```ts
 * import { escapeControl } from "./log_format.ts";
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
 * import { getLogFormatter } from "./log_format.ts";
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
