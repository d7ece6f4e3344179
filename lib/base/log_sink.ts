/**
 * The log's sink: records go through a bounded buffer and are written to
 * stderr in batches without ever waiting for it, so a log pipe whose reader
 * stopped costs dropped (and counted) records, never a frozen server.
 *
 * @module
 */

import type { Drainable, LogRecord, TextFormatter } from "@logtape/logtape";

/**
 * Where and how a {@linkcode getBufferedSink} writes.
 *
 * @example
 * ```ts
 * import type { BufferedSinkOptions } from "./log_sink.ts";
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
 * import { getLogFormatter } from "./log_format.ts";
 * import { getBufferedSink } from "./log_sink.ts";
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
